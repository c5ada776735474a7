//! The README's main job: the embedded sample corpus indexed with `jobs/examples/sample.toml`,
//! searched with `vemo search` (by sentence and by image, at both image exits, and by the words
//! spotted in the images), then opened
//! from Python with pylance (`infra/check_output.py`), as a notebook user would.

use std::path::Path;

use arrow_array::Float32Array;
use arrow_array::cast::AsArray;
use futures_util::TryStreamExt;
use vemo_models::bundle::Bundle;
use vemo_models::bundle::vemo_home;
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_tests::{bundle_or_skip, vemo_ok};

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

/// `vemo search --json`: the ids, best first.
fn search_ids(output: &str, query: &[&str]) -> Vec<String> {
    let mut args = vec!["search", "--index", output, "--json", "-k", "3"];
    args.extend_from_slice(query);
    let out = vemo_ok(&args);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("search JSON");
    let hits = hits.as_array().expect("a JSON array");
    for hit in hits {
        for key in ["id", "score", "image", "caption"] {
            assert!(hit.get(key).is_some(), "hit lacks {key}: {hit}");
        }
    }
    hits.iter()
        .map(|h| h["id"].as_str().expect("id").to_string())
        .collect()
}

/// Text -> image search goes through the image tower's columns (ConSE at exit 7), never the
/// captions; image -> image through the pooled feature.
fn vemo_search_finds_the_photos(output: &str) {
    for (query, expected) in [("a cat", "chelsea"), ("a rocket launch", "rocket")] {
        let ids = search_ids(output, &["--text", query]);
        assert_eq!(ids[0], expected, "--text {query:?} ranked {ids:?}");
    }
    for photo in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let path = vemo_home().join("corpus/sample").join(photo);
        let ids = search_ids(output, &["--image", &path.display().to_string()]);
        let stem = photo.split('.').next().expect("stem");
        assert_eq!(ids[0], stem, "--image {photo} ranked {ids:?}");
    }
    // The lower image exit answers through its trained head.
    let ids = search_ids(output, &["--text", "a cat", "--exit", "4"]);
    assert_eq!(ids.len(), 3);
    let missing = vemo_tests::vemo(&["search", "--index", output, "--text", "x", "--exit", "5"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "no column at exit 5 is a usage error"
    );
}

/// The spotting task read the printed page (skimage's `page.png`): `--chars` finds it first,
/// exactly and with a recognizer-style typo, with the matched words' polygons; the spotted
/// words are in Parquet too, and their entities in `items`.
fn the_printed_page_is_found_by_its_words(output: &str) {
    for query in ["segmentation", "segmentatoin", "Region-based segmentation"] {
        let out = vemo_ok(&["search", "--index", output, "--chars", query, "--json"]);
        let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(hits[0]["id"], "page", "--chars {query:?}: {hits}");
        let words = hits[0]["words"].as_array().expect("matched words");
        assert!(
            words
                .iter()
                .all(|w| w["polygon"].as_array().map(Vec::len) == Some(8)),
            "polygons of 8 values: {hits}"
        );
    }
    // Both tasks on: the spotted text's entities have a column of their own.
    let batches = vemo_tests::read_lance(&format!("{output}/items.lance"));
    for column in ["spotted", "spotted_text", "spotted_entities", "entity_keys"] {
        assert!(
            batches[0].column_by_name(column).is_some(),
            "items lacks {column}"
        );
    }
    let parts = Path::new(output).join("parquet/spotted_text");
    assert!(
        std::fs::read_dir(&parts).map(|d| d.count()).unwrap_or(0) > 0,
        "spotted-text parts in {}",
        parts.display()
    );
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
    vemo_search_finds_the_photos(&output);
    the_printed_page_is_found_by_its_words(&output);

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
    assert_eq!(report["embedding_columns"]["image_emb_e7"], 384);
    assert_eq!(report["embedding_columns"]["image_emb_e4"], 384);
    assert_eq!(report["embedding_columns"]["image_feat_e7"], 1280);
    assert_eq!(
        report["towers"]["image_emb_e7"], "image",
        "field metadata names the tower"
    );
    assert_eq!(report["schema_version"], "2");
}
