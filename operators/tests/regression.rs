//! Regression tests of vemo-operators: one test per bug fixed so far, named after what broke,
//! each with the commit that fixed it (as ripgrep's `tests/regression.rs`). Bugs whose test
//! already exists elsewhere are indexed here instead of repeated:
//!
//! - A manifest or image path climbing out of its folder with `..` spelled as the URL parser
//!   reads it (`.%2e`, `%2e.`, `.\t.`, `\..\`) was read (180a3f2; relative paths leaving the
//!   manifest folder, 96bacf9) ->
//!   `src/images.rs` `tests::the_read_policy_keeps_reads_where_the_manifest_means_them`.
//! - An image object over the byte limit was downloaded before being refused (96bacf9) ->
//!   `src/images.rs` `tests::an_object_over_the_byte_limit_is_refused_before_its_body_is_read`.
//! - A Parquet manifest whose `ARROW:schema` metadata is corrupt made arrow-ipc panic (96bacf9)
//!   -> `tests/fuzz_manifest.rs` `fuzz_parquet_manifest_mutated_file` (fixed seed).
//!
//! Not tested: the decode permit was released when a read was cancelled, before its decode on
//! the blocking pool ended (180a3f2); only a timing-dependent test could show it.
//!
//! Fixed in crates whose tests live elsewhere: the ledger, job and pending-column records
//! (`output/tests/regression.rs`), the image decoders and the `.pth` reader
//! (`models/tests/regression.rs`).

use std::sync::Arc;

use arrow::buffer::NullBuffer;
use arrow_array::{FixedSizeListArray, Float32Array};
use arrow_schema::DataType;
use vemo_operators::batches::{RowStamp, item_rows, items_batch, with_column};
use vemo_operators::images::{DecodedImage, ReadPolicy, spotting_image};
use vemo_operators::lance_io::{commit_fragments, write_fragments_uncommitted};
use vemo_operators::manifest::read_manifest;
use vemo_operators::store;
use vemo_operators::vector_search::{IndexOutcome, build_indexes};
use vemo_schemas::{EmbeddingColumn, ManifestEntry, Tower, embedding_type, items_schema};

// Fixed in 180a3f2.
#[test]
fn spotted_polygons_were_rescaled_by_the_long_side_instead_of_per_axis() {
    // 1000 x 3 at a long side of 100 is 100 x 1 (the short side rounds up to one pixel): x
    // shrank 10 times but y only 3 times, and one factor for both put polygons 10/3 too low.
    let image = image::DynamicImage::ImageRgb8(image::RgbImage::new(1000, 3));
    let (small, scale) = spotting_image(image, 100);
    assert_eq!(small.dimensions(), (100, 1));
    assert!((scale[0] - 10.0).abs() < 1e-6, "x: {scale:?}");
    assert!((scale[1] - 3.0).abs() < 1e-6, "y: {scale:?}");
}

// Fixed in 180a3f2.
#[test]
fn allowed_prefixes_compared_unnormalised_refused_a_folder_with_a_space() {
    // The file URI of `my corpus/a.png` is `.../my%20corpus/a.png`; the prefix the job names
    // may be written with the space. Both are compared as the URL parser writes them.
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("my corpus");
    std::fs::create_dir(&corpus).expect("mkdir");
    std::fs::write(corpus.join("a.png"), b"x").expect("write");
    let root = store::normalize_uri(corpus.to_str().expect("utf-8")).expect("uri");
    assert!(root.contains("%20"), "{root}");
    let policy = ReadPolicy {
        root: Some(root.clone()),
        allowed_prefixes: vec![format!("file://{}/", corpus.display())],
    };
    policy
        .check(&format!("{root}/a.png"))
        .expect("a file under the allowed prefix is allowed");
    assert!(policy.check("file:///etc/hostname").is_err());
}

// Fixed in 96bacf9.
#[tokio::test]
async fn a_jsonl_manifest_starting_with_a_byte_order_mark_was_not_json() {
    let uri = "memory://regression-bom/corpus/manifest.jsonl";
    let lines = concat!(
        "\u{feff}",
        r#"{"id":"a","image":"a.jpg","caption":"A cat."}"#,
        "\n",
        r#"{"id":"b","image":"b.jpg"}"#,
        "\n"
    );
    store::resolve(uri)
        .expect("uri")
        .write(lines.as_bytes().to_vec())
        .await
        .expect("write");
    let manifest = read_manifest(uri).await.expect("a BOM is no error");
    let ids: Vec<&str> = manifest.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
}

// Fixed in 180a3f2.
#[tokio::test]
async fn a_vector_index_counted_rows_instead_of_the_column_s_non_null_vectors() {
    // 300 rows, 100 of them with a caption: the caption column holds 100 vectors, too few to
    // train PQ's 256 centroids, so it stays flat (the row count, 300, said otherwise).
    const DIM: usize = 8;
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().join("items.lance").display().to_string();
    let columns = [EmbeddingColumn::joint(Tower::Text, 6, DIM)];
    let entries: Vec<ManifestEntry> = (0..300usize)
        .map(|i| ManifestEntry {
            id: format!("item-{i:04}"),
            image: format!("memory://corpus/{i}.jpg"),
            caption: i.is_multiple_of(3).then(|| format!("caption {i}")),
            metadata: None,
        })
        .collect();
    let image = DecodedImage {
        width: 1,
        height: 1,
        content_hash: "00".into(),
        crop: None,
        full: None,
        full_scale: [1.0, 1.0],
    };
    let mut values = vec![0.0f32; 300 * DIM];
    for i in 0..300 {
        values[i * DIM + i % DIM] = 1.0;
    }
    let valid: Vec<bool> = entries.iter().map(|e| e.caption.is_some()).collect();
    let DataType::FixedSizeList(field, size) = embedding_type(DIM) else {
        panic!("an embedding is a fixed-size list");
    };
    let embeddings = FixedSizeListArray::try_new(
        field,
        size,
        Arc::new(Float32Array::from(values)),
        Some(NullBuffer::from(valid)),
    )
    .expect("embeddings");
    let rows = item_rows(&entries, &vec![image; entries.len()]).expect("rows");
    let rows = with_column(&rows, columns[0].field(), Arc::new(embeddings)).expect("column");
    let stamp = RowStamp {
        bundle: "test@1".into(),
        job_id: "j".into(),
        indexed_at_us: 0,
    };
    let schema = items_schema(&columns);
    let batch = items_batch(&schema, &rows, &stamp).expect("batch");
    let fragments = write_fragments_uncommitted(&uri, vec![batch])
        .await
        .expect("write");
    commit_fragments(&uri, &schema, fragments)
        .await
        .expect("commit");

    let outcomes = build_indexes(&uri, 256).await.expect("indexes");
    assert!(
        matches!(&outcomes[..], [IndexOutcome::Flat { rows: 100, .. }]),
        "{outcomes:?}"
    );
}

// Fixed in a848901.
#[tokio::test]
async fn an_error_chain_printed_its_cause_twice() {
    // `{:#}` (anyhow) prints an error, then each `source()`: a variant that showed its cause in
    // its message and also returned it as its source printed it twice.
    let err = store::resolve("memory://regression-chain/missing.json")
        .expect("uri")
        .read()
        .await
        .expect_err("no such object");
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push(cause.to_string());
        source = cause.source();
    }
    let printed = chain.join(": ");
    for (i, link) in chain.iter().enumerate() {
        for earlier in &chain[..i] {
            assert!(!earlier.contains(link.as_str()), "printed twice: {printed}");
        }
    }
    assert!(printed.contains("regression-chain"), "{printed}");
}
