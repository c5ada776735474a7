//! The synthetic test corpus with broken items, and reading an output back as rows keyed by id
//! (asserting no id appears twice), shared by the end-to-end and crash tests.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;

use crate::{read_lance, vemo_ok};

/// Items in the synthetic corpus before the two broken ones are added.
pub const ITEMS: usize = 40;

/// Makes the corpus: `ITEMS` synthetic items plus a corrupt JPEG, a missing image and a caption
/// over the `max_caption_bytes = 100` of [`crate::write_job`].
pub fn make_corpus(dir: &Path) -> String {
    let corpus = dir.join("corpus");
    let corpus_str = corpus.display().to_string();
    vemo_ok(&[
        "corpus",
        "synth",
        "--items",
        &ITEMS.to_string(),
        "--output",
        &corpus_str,
        "--size",
        "64",
    ]);
    std::fs::write(
        corpus.join("images/corrupt.jpg"),
        b"\xff\xd8\xff\xe0 this is not a jpeg",
    )
    .expect("write corrupt image");
    let mut manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).expect("manifest");
    manifest.push_str(
        r#"{"id":"broken-corrupt","image":"images/corrupt.jpg","caption":"A corrupt file."}"#,
    );
    manifest.push('\n');
    manifest.push_str(r#"{"id":"broken-missing","image":"images/nowhere.jpg","caption":"Gone."}"#);
    manifest.push('\n');
    manifest.push_str(concat!(
        r#"{"id":"broken-long-caption","image":"images/0000000.jpg","caption":""#,
        "A caption far longer than the test job allows, which sets max_caption_bytes = 100 so that this one item is refused.",
        r#""}"#
    ));
    manifest.push('\n');
    std::fs::write(corpus.join("manifest.jsonl"), manifest).expect("manifest");
    corpus_str
}

/// Rows of an output written with the tiny bundle as id -> (content hash, exit-6 embedding);
/// errors as id -> stage.
pub struct Output {
    pub items: BTreeMap<String, (String, Vec<f32>)>,
    pub errors: BTreeMap<String, String>,
}

pub fn read_output(root: &Path) -> Output {
    let mut items = BTreeMap::new();
    for batch in read_lance(&root.join("items.lance").display().to_string()) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let hashes = batch
            .column_by_name("content_hash")
            .expect("hash")
            .as_string::<i32>();
        let emb = batch
            .column_by_name("text_emb_e6")
            .expect("e6")
            .as_fixed_size_list();
        assert_eq!(
            emb.value_length() as usize,
            vemo_models::tiny_bundle::TEXT_DIM
        );
        for row in 0..batch.num_rows() {
            let vector = emb
                .value(row)
                .as_primitive::<Float32Type>()
                .values()
                .to_vec();
            let previous = items.insert(
                ids.value(row).to_string(),
                (hashes.value(row).to_string(), vector),
            );
            assert!(previous.is_none(), "id {} twice in items", ids.value(row));
        }
        assert!(batch.column_by_name("text_emb_e3").is_some());
    }
    let mut errors = BTreeMap::new();
    for batch in read_lance(&root.join("errors.lance").display().to_string()) {
        let ids = batch.column_by_name("id").expect("id").as_string::<i32>();
        let stages = batch
            .column_by_name("stage")
            .expect("stage")
            .as_string::<i32>();
        for row in 0..batch.num_rows() {
            let previous = errors.insert(ids.value(row).to_string(), stages.value(row).to_string());
            assert!(previous.is_none(), "id {} twice in errors", ids.value(row));
        }
    }
    Output { items, errors }
}

pub fn assert_complete(out: &Output) {
    assert_eq!(out.items.len(), ITEMS, "every good item in items");
    assert_eq!(
        out.errors.get("broken-corrupt").map(String::as_str),
        Some("decode")
    );
    assert_eq!(
        out.errors.get("broken-missing").map(String::as_str),
        Some("read")
    );
    assert_eq!(
        out.errors.get("broken-long-caption").map(String::as_str),
        Some("caption")
    );
    assert_eq!(out.errors.len(), 3);
    assert!(
        out.items.keys().all(|id| !out.errors.contains_key(id)),
        "an id in both tables"
    );
}

pub fn assert_same_rows(a: &Output, b: &Output, what: &str) {
    assert_eq!(a.errors, b.errors, "{what}: errors differ");
    assert_eq!(
        a.items.keys().collect::<Vec<_>>(),
        b.items.keys().collect::<Vec<_>>(),
        "{what}: ids"
    );
    assert_items_as(b, a, what);
}

/// Every item of `got` is in `expected` with the same content hash and an embedding equal
/// within 1e-5: shards batch captions differently per layout (padding length), f32 noise only.
pub fn assert_items_as(got: &Output, expected: &Output, what: &str) {
    for (id, (hash, vector)) in &got.items {
        let (want_hash, want) = expected
            .items
            .get(id)
            .unwrap_or_else(|| panic!("{what}: {id} not expected"));
        assert_eq!(hash, want_hash, "{what}: content hash of {id}");
        let worst = max_abs_diff(vector, want);
        assert!(worst < 1e-5, "{what}: embedding of {id} differs by {worst}");
    }
}

/// The largest |a - b| over two vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

/// The `id` column of every Parquet file below `dir`.
pub fn parquet_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for path in walk(dir) {
        let file = std::fs::File::open(&path).expect("open part");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let col = batch.column_by_name("id").expect("id").as_string::<i32>();
            ids.extend((0..col.len()).map(|i| col.value(i).to_string()));
        }
    }
    ids
}
