//! Character search on a real Lance `items` dataset: spotted words written through the
//! `items` batch builder, the INVERTED index on `spotted_text`, and queries that rank exact
//! words above approximate ones (a recognizer error), returning the matched words' polygons.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use vemo_models::models::columns::embedding_array;
use vemo_operators::batches::{RowStamp, item_rows, items_batch, spotted_columns, with_column};
use vemo_operators::char_search::{build_text_index, find_chars};
use vemo_operators::images::DecodedImage;
use vemo_operators::lance_io::{commit_fragments, open_if_exists, write_fragments_uncommitted};
use vemo_schemas::{
    COL_SPOTTED, COL_SPOTTED_TEXT, EmbeddingColumn, ItemTasks, ManifestEntry, SpottedWord, Tower,
    items_schema_for,
};

/// The words of an image, 10 pixels apart.
fn words(words: &[&str]) -> Vec<SpottedWord> {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let x = 10.0 * i as f32;
            SpottedWord {
                text: (*w).into(),
                score: 0.9,
                polygon: [x, 0.0, x + 8.0, 0.0, x + 8.0, 4.0, x, 4.0],
            }
        })
        .collect()
}

/// The `items` batch (in `schema`) of items `(id, spotted words)`, each with a caption
/// embedding `[1, 0]` in `column`.
fn items(
    schema: &SchemaRef,
    column: &EmbeddingColumn,
    items: &[(&str, Vec<SpottedWord>)],
    stamp: &RowStamp,
) -> RecordBatch {
    let entries: Vec<ManifestEntry> = items
        .iter()
        .map(|(id, _)| ManifestEntry {
            id: (*id).into(),
            image: format!("memory://corpus/{id}.jpg"),
            caption: Some(format!("photo {id}")),
            metadata: None,
        })
        .collect();
    let image = DecodedImage {
        width: 100,
        height: 50,
        content_hash: "00".into(),
        crop: None,
        full: None,
        full_scale: [1.0, 1.0],
    };
    let mut rows = item_rows(&entries, &vec![image; items.len()]).expect("rows");
    let values: Vec<f32> = items.iter().flat_map(|_| [1.0, 0.0]).collect();
    let embeddings = embedding_array(2, values).expect("embeddings");
    rows = with_column(&rows, column.field(), Arc::new(embeddings)).expect("embeddings");
    let per_item: Vec<&[SpottedWord]> = items.iter().map(|(_, w)| w.as_slice()).collect();
    let [spotted, text] = spotted_columns(&per_item).expect("spotted");
    for (name, array) in [(COL_SPOTTED, spotted), (COL_SPOTTED_TEXT, text)] {
        let field = schema.field_with_name(name).expect("field").clone();
        rows = with_column(&rows, field, array).expect("spotted");
    }
    items_batch(schema, &rows, stamp).expect("batch")
}

#[tokio::test]
async fn exact_words_rank_first_and_recognizer_errors_are_tolerated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().join("items.lance").display().to_string();
    let columns = [EmbeddingColumn::joint(Tower::Text, 6, 2)];
    let stamp = RowStamp {
        bundle: "test@1".into(),
        job_id: "j".into(),
        indexed_at_us: 0,
    };
    let tasks = ItemTasks {
        entities: false,
        spotting: true,
    };
    let schema = items_schema_for(&columns, tasks);
    let found = [
        ("shop", words(&["OPEN", "24H", "Pharmacy"])),
        ("typo", words(&["0PEN", "24H"])),
        ("page", words(&["Region-based", "segmentatlon", "methods"])),
        ("blank", words(&[])),
    ];
    let batch = items(&schema, &columns[0], &found, &stamp);
    let fragments = write_fragments_uncommitted(&uri, vec![batch])
        .await
        .expect("write");
    commit_fragments(&uri, &schema, fragments)
        .await
        .expect("commit");
    assert!(build_text_index(&uri).await.expect("index"));
    let dataset = open_if_exists(&uri).await.expect("open").expect("dataset");

    let hits = find_chars(&dataset, "open 24h", 5).await.expect("search");
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids, ["shop", "typo"], "{hits:?}");
    assert_eq!((hits[0].exact, hits[1].exact), (2, 1));
    assert_eq!(hits[0].words[0].text, "OPEN");
    assert_eq!(
        hits[0].words[1].polygon,
        [10.0, 0.0, 18.0, 0.0, 18.0, 4.0, 10.0, 4.0]
    );

    let fuzzy = find_chars(&dataset, "segmentation", 5)
        .await
        .expect("fuzzy");
    assert_eq!(fuzzy.len(), 1, "{fuzzy:?}");
    assert_eq!((fuzzy[0].id.as_str(), fuzzy[0].exact), ("page", 0));
    assert!(
        find_chars(&dataset, "zebra", 5)
            .await
            .expect("none")
            .is_empty()
    );
}
