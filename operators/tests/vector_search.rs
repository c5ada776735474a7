//! Vector indexes and k-nearest search on a real Lance `items` dataset: 320 rows of random unit
//! vectors, an IVF_PQ index per embedding column once the row threshold is met, and queries
//! that find each probed row first (the index re-ranks on the full vectors).

use std::sync::Arc;

use arrow_array::RecordBatch;
use vemo_models::models::columns::embedding_array;
use vemo_operators::batches::{RowStamp, item_rows, items_batch, with_column};
use vemo_operators::images::DecodedImage;
use vemo_operators::lance_io::{commit_fragments, write_fragments_uncommitted};
use vemo_operators::vector_search::{IndexOutcome, build_indexes, embedding_columns, nearest};
use vemo_schemas::{EmbeddingColumn, ManifestEntry, Tower, items_schema};

const ROWS: usize = 320;
const DIM: usize = 32;

/// Deterministic pseudo-random unit vectors.
fn vector(seed: usize) -> Vec<f32> {
    let mut state = (seed as u64).wrapping_mul(6364136223846793005) ^ 1442695040888963407;
    let raw: Vec<f32> = (0..DIM)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / u32::MAX as f32) - 0.25
        })
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
    raw.iter().map(|v| v / norm).collect()
}

/// The `items` batch of `ROWS` rows: for column `c`, row `i` holds `vector(i + c * 10_000)`.
fn items(columns: &[EmbeddingColumn], stamp: &RowStamp) -> RecordBatch {
    let entries: Vec<ManifestEntry> = (0..ROWS)
        .map(|i| ManifestEntry {
            id: format!("item-{i:04}"),
            image: format!("memory://corpus/{i}.jpg"),
            caption: Some(format!("caption {i}")),
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
    let mut rows = item_rows(&entries, &vec![image; ROWS]).expect("rows");
    for (c, column) in columns.iter().enumerate() {
        let values: Vec<f32> = (0..ROWS).flat_map(|i| vector(i + c * 10_000)).collect();
        let array = embedding_array(DIM, values).expect("embeddings");
        rows = with_column(&rows, column.field(), Arc::new(array)).expect("column");
    }
    items_batch(&items_schema(columns), &rows, stamp).expect("batch")
}

#[tokio::test]
async fn an_ivf_pq_index_is_built_past_the_threshold_and_queries_find_their_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().join("items.lance").display().to_string();
    let columns = [
        EmbeddingColumn::joint(Tower::Text, 6, DIM),
        EmbeddingColumn::joint(Tower::Image, 7, DIM),
    ];
    let stamp = RowStamp {
        bundle: "test@1".into(),
        job_id: "j".into(),
        indexed_at_us: 0,
    };
    let batch = items(&columns, &stamp);
    let fragments = write_fragments_uncommitted(&uri, vec![batch])
        .await
        .expect("write");
    commit_fragments(&uri, &items_schema(&columns), fragments)
        .await
        .expect("commit");

    // Below the threshold: flat search, no index.
    let flat = build_indexes(&uri, 1000).await.expect("flat");
    assert!(
        matches!(flat[0], IndexOutcome::Flat { rows: ROWS, .. }),
        "{flat:?}"
    );

    let built = build_indexes(&uri, 256).await.expect("index");
    assert_eq!(built.len(), 2);
    for outcome in &built {
        assert!(matches!(outcome, IndexOutcome::Built { .. }), "{outcome:?}");
    }
    let dataset = lance::Dataset::open(&uri).await.expect("open");
    let indices = lance::index::DatasetIndexExt::load_indices(&dataset)
        .await
        .expect("indices");
    assert_eq!(indices.len(), 2, "one index per embedding column");
    assert_eq!(embedding_columns(&dataset), columns.to_vec());

    for probe in [0usize, 77, 319] {
        let hits = nearest(&dataset, "image_emb_e7", &vector(probe + 10_000), 5, None)
            .await
            .expect("search");
        assert_eq!(hits[0].id, format!("item-{probe:04}"), "{hits:?}");
        assert!(
            (hits[0].score - 1.0).abs() < 1e-3,
            "cosine of a row with itself"
        );
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
        assert_eq!(
            hits[0].caption.as_deref(),
            Some(format!("caption {probe}").as_str())
        );
    }
}
