//! The README's main job, with every task. On the tiny bundle and a synthetic corpus: every
//! search mode answers, and the output opens from Python with pylance (`infra/check_output.py`)
//! as a notebook user would open it. With the pulled bundle: the embedded sample corpus
//! indexed with `jobs/examples/sample.toml` is searched with `vemo search` (by sentence and by
//! image, at both image exits, and by the words spotted in the images), each query finding its
//! photo first, then opened with pylance.

use std::path::Path;

use arrow_array::Float32Array;
use arrow_array::cast::AsArray;
use futures_util::TryStreamExt;
use vemo_models::bundle::Bundle;
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::tiny_bundle::{
    FEATURE_DIM, TEXT_DIM, bundle_required, pulled_bundle, sample_corpus,
};
use vemo_tests::{synth_corpus, tiny_bundle, vemo_ok};

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

/// Text -> image search goes through the image tower's columns (the aligned head at exit 7),
/// never the captions; image -> image through the pooled feature.
fn vemo_search_finds_the_photos(output: &str, corpus: &Path) {
    for (query, expected) in [("a cat", "chelsea"), ("a rocket launch", "rocket")] {
        let ids = search_ids(output, &["--text", query]);
        assert_eq!(ids[0], expected, "--text {query:?} ranked {ids:?}");
    }
    for photo in ["chelsea.png", "coffee.png", "rocket.jpg"] {
        let path = corpus.join(photo);
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

/// `infra/check_output.py` on `output` (`rows` items, caption width `text_dim`): its report,
/// or `None` (after saying so) when pylance is not installed and not required.
fn pylance_report(output: &str, rows: usize, text_dim: usize) -> Option<serde_json::Value> {
    let has_lance = std::process::Command::new("python3")
        .args(["-c", "import lance, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_lance {
        assert!(!bundle_required(), "pylance missing");
        eprintln!("SKIPPED pylance check: `pip install pylance pyarrow`");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let check = std::process::Command::new("python3")
        .arg(root.join("infra/check_output.py"))
        .args([output, &rows.to_string(), &text_dim.to_string()])
        .output()
        .expect("run check_output.py");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "pylance check failed: {report}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(report.trim()).expect("report JSON");
    assert_eq!(report["rows"], rows);
    assert_eq!(
        report["towers"]["image_emb_e7"], "image",
        "field metadata names the tower"
    );
    assert_eq!(report["schema_version"], "2");
    Some(report)
}

/// `(id, spotted_text)` of every `items` row of `output`.
fn spotted_texts(output: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for batch in vemo_tests::read_lance(&format!("{output}/items.lance")) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let texts = batch
            .column_by_name("spotted_text")
            .expect("spotted_text")
            .as_string::<i32>();
        for row in 0..batch.num_rows() {
            rows.push((ids.value(row).to_string(), texts.value(row).to_string()));
        }
    }
    rows
}

/// Every task on the tiny bundle: each search mode answers (a photo's own image ranks it
/// first; a word spotted in a photo finds a photo that has it, with the word's polygon), a
/// missing exit is a usage error, the spotted words are in Parquet, and pylance opens the
/// output with the widths vemo wrote.
#[test]
fn an_output_of_every_task_answers_every_search_and_opens_in_pylance() {
    let bundle = tiny_bundle();
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    let items = 12;
    synth_corpus(&corpus, items, 64);
    let output = dir.path().join("out").display().to_string();
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[input]\nuri = \"{}\"\n[output]\nuri = \"{output}\"\n[model]\nbundle = \"{}\"\n\
             tasks = [\"semantic\", \"entities\", \"spotting\"]\n[model.exits]\n\
             text = [3, 6]\nimage = [4, 7]\n[run]\nbatch_size = 8\nshard_size = 5\n",
            corpus.display(),
            bundle.display()
        ),
    )
    .expect("job");
    vemo_ok(&["index", "--job", &job.display().to_string(), "-w", "2"]);

    // Queries are encoded with the tiny bundle (the rows name it, but it is not in VEMO_HOME).
    let tiny = bundle.display().to_string();
    let search = |query: &[&str]| {
        let mut args = query.to_vec();
        args.extend(["--bundle", &tiny]);
        search_ids(&output, &args)
    };
    assert_eq!(search(&["--text", "a red square"]).len(), 3);
    for i in [0, 7] {
        let photo = corpus
            .join(format!("images/{i:07}.jpg"))
            .display()
            .to_string();
        let ids = search(&["--image", &photo]);
        assert_eq!(ids[0], format!("synth-{i:07}"), "--image {i}: {ids:?}");
    }
    assert_eq!(search(&["--text", "a red square", "--exit", "4"]).len(), 3);
    let mut missing = vec!["search", "--index", &output, "--text", "x", "--exit", "5"];
    missing.extend(["--bundle", &tiny]);
    let missing = vemo_tests::vemo(&missing);
    assert_eq!(missing.status.code(), Some(2), "no column at exit 5");

    let spotted = spotted_texts(&output);
    assert_eq!(spotted.len(), items);
    let (_, text) = spotted
        .iter()
        .find(|(_, text)| !text.is_empty())
        .expect("the tiny recognizer reads something");
    let word = text.split_whitespace().next().expect("a word");
    let out = vemo_ok(&["search", "--index", &output, "--chars", word, "--json"]);
    // (`--chars` reads the spotted words alone: no bundle.)
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let first = hits[0]["id"].as_str().expect("a hit");
    assert!(
        spotted
            .iter()
            .any(|(id, text)| id == first && text.contains(word)),
        "--chars {word:?}: {hits}"
    );
    let words = hits[0]["words"].as_array().expect("matched words");
    assert!(
        !words.is_empty()
            && words
                .iter()
                .all(|w| w["polygon"].as_array().map(Vec::len) == Some(8)),
        "polygons of 8 values: {hits}"
    );
    let batches = vemo_tests::read_lance(&format!("{output}/items.lance"));
    for column in ["spotted", "spotted_text", "spotted_entities", "entity_keys"] {
        assert!(
            batches[0].column_by_name(column).is_some(),
            "items lacks {column}"
        );
    }
    let parts = Path::new(&output).join("parquet/spotted_text");
    assert!(
        std::fs::read_dir(&parts).map(|d| d.count()).unwrap_or(0) > 0,
        "spotted-text parts in {}",
        parts.display()
    );

    let Some(report) = pylance_report(&output, items, TEXT_DIM) else {
        return;
    };
    for column in ["text_emb_e3", "text_emb_e6", "image_emb_e4", "image_emb_e7"] {
        assert_eq!(report["embedding_columns"][column], TEXT_DIM, "{column}");
    }
    assert_eq!(report["embedding_columns"]["image_feat_e7"], FEATURE_DIM);
}

#[test]
fn sample_job_output_opens_in_pylance_and_finds_each_caption_first() {
    let test = "sample_job_output_opens_in_pylance";
    let (Some(bundle), Some(corpus)) = (pulled_bundle(test), sample_corpus(test)) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("sample-out").display().to_string();
    let job = root.join("jobs/examples/sample.toml").display().to_string();
    vemo_ok(&["index", "--job", &job, "--output", &output, "-w", "2"]);
    text_queries_find_their_images(&bundle, &format!("{output}/items.lance"));
    vemo_search_finds_the_photos(&output, &corpus);
    the_printed_page_is_found_by_its_words(&output);

    let Some(report) = pylance_report(&output, 16, 384) else {
        return;
    };
    assert_eq!(report["embedding_columns"]["text_emb_e6"], 384);
    assert_eq!(report["embedding_columns"]["image_emb_e7"], 384);
    assert_eq!(report["embedding_columns"]["image_emb_e4"], 384);
    assert_eq!(report["embedding_columns"]["image_feat_e7"], 1280);
}
