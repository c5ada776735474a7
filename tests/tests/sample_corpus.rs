//! The README's main job: the embedded sample corpus indexed with `jobs/examples/sample.toml`,
//! then opened from Python with pylance (`infra/check_output.py`), as a notebook user would.

use std::path::Path;

use arrow_array::Float32Array;
use arrow_array::cast::AsArray;
use futures_util::TryStreamExt;
use vemo_operators::bundle::Bundle;
use vemo_operators::models::bert::default_device;
use vemo_operators::models::text_encoder::TextEncoder;
use vemo_tests::{bundle_or_skip, vemo_home, vemo_ok};

/// Paraphrased queries (not the captions themselves) and the image each must rank first.
const QUERIES: &[(&str, &str)] = &[
    ("a photo of a cat", "chelsea"),
    ("an astronaut", "astronaut"),
    ("espresso cup", "coffee"),
    ("rocket launch", "rocket"),
    ("galaxies in deep space", "hubble"),
    ("old money", "coins"),
    ("a motorbike", "motorcycle"),
];

/// Text -> image search over the written `text_emb_e6` column with Lance's own nearest-neighbour
/// scan, the query embedded by vemo's text tower.
fn text_queries_find_their_images(bundle: &Path, items_uri: &str) {
    let bundle = Bundle::open(bundle).expect("bundle");
    let encoder = TextEncoder::load(&bundle, &[6], &default_device()).expect("encoder");
    let queries: Vec<&str> = QUERIES.iter().map(|(q, _)| *q).collect();
    let embedded = encoder.encode_all(&queries, 8).expect("embed queries");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dataset = lance::Dataset::open(items_uri).await.expect("open items");
        for ((query, expected), vector) in QUERIES.iter().zip(&embedded[0]) {
            let mut scan = dataset.scan();
            scan.nearest("text_emb_e6", &Float32Array::from(vector.clone()), 3)
                .expect("nearest");
            scan.project(&["id"]).expect("project");
            let batches: Vec<_> = scan
                .try_into_stream()
                .await
                .expect("scan")
                .try_collect()
                .await
                .expect("rows");
            let top = batches[0]
                .column_by_name("id")
                .expect("id")
                .as_string::<i32>()
                .value(0);
            assert_eq!(top, *expected, "query {query:?} ranked {top} first");
        }
    });
}

#[test]
fn sample_job_output_opens_in_pylance_and_finds_each_caption_first() {
    let Some(bundle) = bundle_or_skip("sample_job_output_opens_in_pylance") else {
        return;
    };
    let corpus = vemo_home().join("corpus/sample/manifest.jsonl");
    if !corpus.is_file() {
        assert!(
            std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
            "no sample corpus: run `vemo corpus sample`"
        );
        eprintln!("SKIPPED: no sample corpus at {}", corpus.display());
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("sample-out").display().to_string();
    let job = root.join("jobs/examples/sample.toml").display().to_string();
    vemo_ok(&["index", "--job", &job, "--output", &output, "-w", "2"]);
    text_queries_find_their_images(&bundle, &format!("{output}/items.lance"));

    let has_lance = std::process::Command::new("python3")
        .args(["-c", "import lance, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_lance {
        assert!(
            std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
            "pylance missing"
        );
        eprintln!("SKIPPED pylance check: `pip install pylance pyarrow`");
        return;
    }
    let script = root.join("infra/check_output.py");
    let check = std::process::Command::new("python3")
        .arg(&script)
        .arg(&output)
        .arg("16")
        .output()
        .expect("run check_output.py");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "pylance check failed: {report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("report JSON");
    assert_eq!(report["rows"], 16);
    assert_eq!(report["embedding_columns"]["text_emb_e6"], 384);
    assert_eq!(report["schema_version"], "1");
}
