//! Character search on a real Lance `items` dataset: spotted words written through the
//! `items` batch builder, the INVERTED index on `spotted_text`, and queries that rank exact
//! words above approximate ones (a recognizer error), returning the matched words' polygons.

use vemo_operators::batches::{IndexedItem, RowStamp, items_batch};
use vemo_operators::char_search::{build_text_index, find_chars};
use vemo_operators::images::DecodedImage;
use vemo_operators::lance_io::{commit_fragments, open_if_exists, write_fragments_uncommitted};
use vemo_schemas::{
    EmbeddingColumn, ItemTasks, ManifestEntry, SpottedWord, Tower, items_schema_for,
};

fn item(id: &str, words: &[&str]) -> IndexedItem {
    IndexedItem {
        entry: ManifestEntry {
            id: id.into(),
            image: format!("memory://corpus/{id}.jpg"),
            caption: Some(format!("photo {id}")),
            metadata: None,
        },
        image: DecodedImage {
            width: 100,
            height: 50,
            content_hash: "00".into(),
            crop: None,
            full: None,
            full_scale: [1.0, 1.0],
        },
        embeddings: vec![vec![1.0, 0.0]],
        entities: None,
        spotted_entities: None,
        spotted: Some(
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
                .collect(),
        ),
    }
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
    let items = vec![
        item("shop", &["OPEN", "24H", "Pharmacy"]),
        item("typo", &["0PEN", "24H"]),
        item("page", &["Region-based", "segmentatlon", "methods"]),
        item("blank", &[]),
    ];
    let batch = items_batch(&columns, &items, &stamp).expect("batch");
    let tasks = ItemTasks {
        entities: false,
        spotting: true,
    };
    let fragments = write_fragments_uncommitted(&uri, vec![batch])
        .await
        .expect("write");
    commit_fragments(&uri, &items_schema_for(&columns, tasks), fragments)
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
