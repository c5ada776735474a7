//! `vemo eval spotting` end to end on a one-scene ICDAR 2015 style set: the drawn scene of
//! `models/tests/fixtures/spotting/rotated.png` (signs, two of them rotated), its ground
//! truth taken from easyocr 1.7.2's `readtext` (`models/tests/golden/spotting_glue.json`),
//! plus a don't-care box. Scored from a predictions file (the protocol and the image-level
//! word figures alone), with the tiny bundle (the figures' form only), then with the pulled
//! bundle's easyocr module, which must find every word as easyocr did, and its PP-OCR module,
//! which must read every word.

use std::path::Path;

use vemo_models::tiny_bundle::pulled_bundle;
use vemo_tests::{tiny_bundle, vemo_ok};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// easyocr's words for the scene: (8 coordinates, text).
fn reference_words() -> Vec<(Vec<f64>, String)> {
    let golden = root().join("models/tests/golden/spotting_glue.json");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden).expect("golden")).expect("JSON");
    let image = golden["images"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == "rotated"))
        .expect("the rotated scene");
    image["readtext"]
        .as_array()
        .expect("readtext")
        .iter()
        .map(|word| {
            let corners: Vec<f64> = word["box"]
                .as_array()
                .expect("box")
                .iter()
                .flat_map(|p| {
                    p.as_array()
                        .expect("point")
                        .iter()
                        .map(|v| v.as_f64().expect("number"))
                })
                .collect();
            (corners, word["text"].as_str().expect("text").to_string())
        })
        .collect()
}

/// A scenes folder with the drawn scene and its ground truth.
fn scene_set(dir: &Path, words: &[(Vec<f64>, String)]) {
    std::fs::create_dir_all(dir.join("images")).expect("images/");
    std::fs::create_dir_all(dir.join("gt")).expect("gt/");
    std::fs::copy(
        root().join("models/tests/fixtures/spotting/rotated.png"),
        dir.join("images/img_1.png"),
    )
    .expect("scene");
    let mut gt = String::from("\u{feff}");
    for (corners, text) in words {
        let ints: Vec<String> = corners.iter().map(|v| format!("{}", v.round())).collect();
        gt.push_str(&format!("{},{text}\r\n", ints.join(",")));
    }
    gt.push_str("600,380,630,380,630,395,600,395,###\r\n");
    std::fs::write(dir.join("gt/gt_img_1.txt"), gt).expect("gt");
}

fn figures(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("eval JSON")
}

#[test]
fn predictions_are_scored_by_the_icdar_protocol() {
    let words = reference_words();
    assert_eq!(words.len(), 6, "{words:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    scene_set(dir.path(), &words);
    // Every box found, one word misread, one false positive, one box inside the don't care.
    let mut predicted: Vec<serde_json::Value> = words
        .iter()
        .map(|(corners, text)| serde_json::json!({"polygon": corners, "text": text}))
        .collect();
    predicted[0]["text"] = "0PEN 24H".into();
    predicted.push(
        serde_json::json!({"polygon": [500, 300, 560, 300, 560, 320, 500, 320], "text": "x"}),
    );
    predicted.push(
        serde_json::json!({"polygon": [601, 381, 629, 381, 629, 394, 601, 394], "text": "y"}),
    );
    let file = dir.path().join("predictions.json");
    std::fs::write(
        &file,
        serde_json::json!({"scenes": {"img_1": predicted}}).to_string(),
    )
    .expect("predictions");
    let scenes = dir.path().display().to_string();
    let out = vemo_ok(&[
        "eval",
        "spotting",
        "--scenes",
        &scenes,
        "--predictions",
        &file.display().to_string(),
        "--json",
    ]);
    let report = figures(&out);
    let close =
        |v: &serde_json::Value, want: f64| (v.as_f64().expect("number") - want).abs() < 1e-9;
    assert!(close(&report["detection"]["recall"], 1.0), "{report}");
    assert!(
        close(&report["detection"]["precision"], 6.0 / 7.0),
        "{report}"
    );
    assert!(
        close(&report["end_to_end"]["recall"], 5.0 / 6.0),
        "{report}"
    );
    // Image-level words, boxes ignored: "open" missed (read "0pen"), "x" and "y" too short.
    assert_eq!(report["words"]["gt_words"], 7, "{report}");
    assert_eq!(report["words"]["gt_words_found"], 6, "{report}");
    assert_eq!(report["words"]["spotted_words"], 7, "{report}");
    assert_eq!(report["words"]["spotted_words_right"], 6, "{report}");
    assert!(close(&report["words"]["recall"], 6.0 / 7.0), "{report}");
}

/// The whole chain on the tiny bundle, which finds one region per image: figures in [0, 1],
/// a throughput.
#[test]
fn eval_spotting_runs_a_bundle_and_reports_its_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    scene_set(dir.path(), &reference_words());
    let scenes = dir.path().display().to_string();
    let bundle = tiny_bundle().display().to_string();
    let report = figures(&vemo_ok(&[
        "eval", "spotting", "--scenes", &scenes, "--bundle", &bundle, "--json",
    ]));
    for part in ["detection", "end_to_end"] {
        for figure in ["precision", "recall", "hmean"] {
            let value = report[part][figure].as_f64().expect("a number");
            assert!((0.0..=1.0).contains(&value), "{part} {figure}: {report}");
        }
    }
    assert!(
        report["images_per_s"].as_f64().is_some_and(|v| v > 0.0),
        "{report}"
    );
}

/// Spotting scenes concurrently (each on its own thread pool) pairs every scene's spotted
/// words with its own ground truth: three scenes with different ground truths and different
/// predictions score the same with `--concurrent 2` (a pair, then one left) as one at a
/// time, and the tiny bundle's chain runs that way too.
#[test]
fn concurrent_scenes_score_as_sequential_ones() {
    let words = reference_words();
    let dir = tempfile::tempdir().expect("tempdir");
    scene_set(dir.path(), &words);
    let path = |part: &str, name: String| dir.path().join(part).join(name);
    for (n, kept) in [(2, &words[..2]), (3, &words[3..])] {
        std::fs::copy(
            path("images", "img_1.png".into()),
            path("images", format!("img_{n}.png")),
        )
        .expect("scene");
        let gt: String = kept
            .iter()
            .map(|(corners, text)| {
                let ints: Vec<String> = corners.iter().map(|v| format!("{}", v.round())).collect();
                format!("{},{text}\n", ints.join(","))
            })
            .collect();
        std::fs::write(path("gt", format!("gt_img_{n}.txt")), gt).expect("gt");
    }
    let all: Vec<serde_json::Value> = words
        .iter()
        .map(|(corners, text)| serde_json::json!({"polygon": corners, "text": text}))
        .collect();
    let predictions = path(".", "predictions.json".into());
    let scenes_json = serde_json::json!({"img_1": all, "img_2": [], "img_3": all});
    std::fs::write(
        &predictions,
        serde_json::json!({ "scenes": scenes_json }).to_string(),
    )
    .expect("predictions");
    let scenes = dir.path().display().to_string();
    let bundle = tiny_bundle().display().to_string();
    let run = |source: [&str; 2], concurrent: &str| {
        let mut report = figures(&vemo_ok(&[
            "eval",
            "spotting",
            "--scenes",
            &scenes,
            source[0],
            source[1],
            "--concurrent",
            concurrent,
            "--json",
        ]));
        report["images_per_s"] = serde_json::Value::Null;
        report
    };
    let file = ["--predictions", predictions.to_str().expect("a UTF-8 path")];
    let (one, two) = (run(file, "1"), run(file, "2"));
    assert_eq!(one["scenes"], 3, "{one}");
    // img_1 finds its 7 words, img_2 none of its 3, img_3 its 3 (and 4 more, not in its truth).
    assert_eq!(one["words"]["gt_words"], 13, "{one}");
    assert_eq!(one["words"]["gt_words_found"], 10, "{one}");
    assert_eq!(one["words"]["spotted_words"], 14, "{one}");
    assert_eq!(one, two);
    let tiny = ["--bundle", bundle.as_str()];
    assert_eq!(run(tiny, "1"), run(tiny, "3"));
}

/// `vemo eval spotting --json` of the pulled bundle's `module` on the drawn scene.
fn pulled_bundle_report(module: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    scene_set(dir.path(), &reference_words());
    let scenes = dir.path().display().to_string();
    figures(&vemo_ok(&[
        "eval", "spotting", "--scenes", &scenes, "--module", module, "--json",
    ]))
}

#[test]
fn the_bundle_spots_every_word_easyocr_spots() {
    if pulled_bundle("the_bundle_spots_every_word_easyocr_spots").is_none() {
        return;
    }
    let report = pulled_bundle_report("easyocr");
    assert_eq!(report["detection"]["hmean"], 1.0, "{report}");
    assert_eq!(report["end_to_end"]["hmean"], 1.0, "{report}");
    assert!(
        report["images_per_s"].as_f64().is_some_and(|v| v > 0.0),
        "{report}"
    );
}

/// PP-OCR, the bundle's default module, reads every word of the drawn scenes (its regions are
/// lines, so the figure is the image-level word recall, not the word-box H-mean).
#[test]
fn the_ppocr_module_reads_every_word_of_the_drawn_scenes() {
    if pulled_bundle("the_ppocr_module_reads_every_word_of_the_drawn_scenes").is_none() {
        return;
    }
    let report = pulled_bundle_report("ppocr");
    assert_eq!(report["words"]["recall"], 1.0, "{report}");
    assert_eq!(report["words"]["precision"], 1.0, "{report}");
}
