//! `vemo eval retrieval` on a COCO-format caption set made from the embedded sample corpus
//! (16 photos, one caption each): every exit is reported, recalls are fractions, and the last
//! image exit finds most photos from their captions. The figures on coco-mini-train are in the
//! README (that data is not available to a fresh clone).

use vemo_models::bundle::vemo_home;
use vemo_tests::{bundle_or_skip, vemo_ok};

#[test]
fn eval_retrieval_reports_every_exit_as_json() {
    let Some(bundle) = bundle_or_skip("eval_retrieval_reports_every_exit_as_json") else {
        return;
    };
    let corpus = vemo_home().join("corpus/sample");
    let manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).expect("sample corpus");
    let (mut images, mut annotations) = (Vec::new(), Vec::new());
    for (i, line) in manifest.lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).expect("manifest line");
        let path = corpus.join(row["image"].as_str().expect("image"));
        images.push(serde_json::json!({"id": i, "file_name": path.display().to_string()}));
        annotations.push(serde_json::json!({"image_id": i, "caption": row["caption"]}));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let coco = serde_json::json!({"images": images, "annotations": annotations});
    std::fs::write(dir.path().join("captions_sample.json"), coco.to_string()).expect("write");

    let out = vemo_ok(&[
        "eval",
        "retrieval",
        "--corpus",
        &dir.path().display().to_string(),
        "--bundle",
        &bundle.display().to_string(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["images"], 16);
    assert_eq!(report["captions"], 16);
    let exits = report["exits"].as_object().expect("exits");
    for name in ["image_e4", "image_e6", "image_e7", "text_e3"] {
        let exit = &exits[name];
        for direction in ["text_to_image", "image_to_text"] {
            let r = &exit[direction];
            let (r1, r5, r10) = (
                r["r1"].as_f64().expect("r1"),
                r["r5"].as_f64().expect("r5"),
                r["r10"].as_f64().expect("r10"),
            );
            assert!(
                (0.0..=1.0).contains(&r1) && r1 <= r5 && r5 <= r10,
                "{name}: {r}"
            );
        }
        assert!(exit["items_per_s"].as_f64().expect("speed") > 0.0);
    }
    let last = &exits["image_e7"]["text_to_image"];
    assert!(last["r1"].as_f64().expect("r1") >= 0.5, "image_e7: {last}");
    assert!(
        last["r10"].as_f64().expect("r10") >= 0.9,
        "image_e7: {last}"
    );
}
