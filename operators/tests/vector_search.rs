//! Vector indexes and k-nearest search on a real Lance `items` dataset: 320 rows of random unit
//! vectors, an IVF_PQ index per embedding column once the row threshold is met, and queries
//! that find each probed row first (the index re-ranks on the full vectors).

use vemo_operators::batches::{IndexedItem, RowStamp, items_batch};
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

fn item(i: usize) -> IndexedItem {
    IndexedItem {
        entry: ManifestEntry {
            id: format!("item-{i:04}"),
            image: format!("memory://corpus/{i}.jpg"),
            caption: Some(format!("caption {i}")),
            metadata: None,
        },
        image: DecodedImage {
            width: 1,
            height: 1,
            content_hash: "00".into(),
            crop: None,
            full: None,
            full_scale: [1.0, 1.0],
        },
        embeddings: vec![vector(i), vector(i + 10_000)],
        entities: None,
        spotted: None,
        spotted_entities: None,
    }
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
    let items: Vec<IndexedItem> = (0..ROWS).map(item).collect();
    let batch = items_batch(&columns, &items, &stamp).expect("batch");
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
