//! Builders of the Arrow batches vemo writes: `items`, `errors` and the embeddings long table.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{Field, SchemaRef};
use vemo_schemas::{
    EmbeddingColumn, Entity, ErrorRecord, ItemTasks, ManifestEntry, SpottedWord,
    embeddings_long_schema, entities_long_schema, entity_struct_fields, errors_schema,
    items_schema_for, spotted_long_schema, spotted_struct_fields,
};

use crate::Result;
use crate::images::DecodedImage;
use vemo_models::spotting::spotted_text;

/// One successfully processed item, ready to become an `items` row.
#[derive(Debug, Clone)]
pub struct IndexedItem {
    /// The manifest entry.
    pub entry: ManifestEntry,
    /// What was learnt from the image.
    pub image: DecodedImage,
    /// One embedding per [`EmbeddingColumn`] of the job, in the same order.
    pub embeddings: Vec<Vec<f32>>,
    /// The caption's entities (and the spotted text's), when the job runs the entity task.
    pub entities: Option<Vec<Entity>>,
    /// The words spotted in the image, in reading order, when the job runs the spotting task.
    pub spotted: Option<Vec<SpottedWord>>,
    /// The entities of the spotted text, when the job runs both tasks.
    pub spotted_entities: Option<Vec<Entity>>,
}

/// Values stamped on every row a run writes.
#[derive(Debug, Clone)]
pub struct RowStamp {
    /// Bundle id (`vemo-mini@0.1.0`).
    pub bundle: String,
    /// Job run id.
    pub job_id: String,
    /// Write time, UTC microseconds since the epoch.
    pub indexed_at_us: i64,
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn repeated(value: &str, n: usize) -> ArrayRef {
    strings(std::iter::repeat_n(value, n))
}

fn timestamps(value: i64, n: usize) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(vec![value; n]).with_timezone("UTC"))
}

/// Builds an `items` batch for `columns` (the schema is [`items_schema_for`] of them, with
/// the entity and spotting columns when the items carry entities and spotted words).
pub fn items_batch(
    columns: &[EmbeddingColumn],
    items: &[IndexedItem],
    stamp: &RowStamp,
) -> Result<RecordBatch> {
    let n = items.len();
    let mut arrays: Vec<ArrayRef> = vec![
        strings(items.iter().map(|i| i.entry.id.as_str())),
        strings(items.iter().map(|i| i.entry.image.as_str())),
        Arc::new(StringArray::from_iter(
            items.iter().map(|i| i.entry.caption.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            items.iter().map(|i| i.entry.metadata.as_deref()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            items.iter().map(|i| i.image.width),
        )),
        Arc::new(UInt32Array::from_iter_values(
            items.iter().map(|i| i.image.height),
        )),
        strings(items.iter().map(|i| i.image.content_hash.as_str())),
    ];
    for (c, column) in columns.iter().enumerate() {
        // An empty embedding is a null (a caption column of an item without a caption): its
        // slot holds zeros under the null bit.
        let present: Vec<bool> = items.iter().map(|i| !i.embeddings[c].is_empty()).collect();
        let flat: Vec<f32> = items
            .iter()
            .flat_map(|i| match i.embeddings[c].is_empty() {
                true => vec![0.0; column.dim],
                false => i.embeddings[c].clone(),
            })
            .collect();
        let field = Arc::new(Field::new("item", arrow_schema::DataType::Float32, true));
        let dim = i32::try_from(column.dim).unwrap_or(i32::MAX);
        let values = Arc::new(Float32Array::from(flat));
        let nulls = present
            .contains(&false)
            .then(|| arrow::buffer::NullBuffer::from(present));
        arrays.push(Arc::new(FixedSizeListArray::try_new(
            field, dim, values, nulls,
        )?));
    }
    let tasks = ItemTasks {
        entities: items.first().is_some_and(|i| i.entities.is_some()),
        spotting: items.first().is_some_and(|i| i.spotted.is_some()),
    };
    if tasks.entities {
        arrays.extend(entity_columns(items)?);
    }
    if tasks.spotting {
        arrays.extend(spotted_columns(items)?);
        if tasks.entities {
            let per_item: Vec<&[Entity]> = items
                .iter()
                .map(|i| i.spotted_entities.as_deref().unwrap_or_default())
                .collect();
            arrays.push(entity_list(&per_item)?);
        }
    }
    arrays.extend([
        repeated(&stamp.bundle, n),
        repeated(&stamp.job_id, n),
        timestamps(stamp.indexed_at_us, n),
    ]);
    Ok(RecordBatch::try_new(
        items_schema_for(columns, tasks),
        arrays,
    )?)
}

/// The flat arrays of a list of entities: text, label, start, end, score.
fn entity_arrays(entities: &[&Entity]) -> Vec<ArrayRef> {
    vec![
        strings(entities.iter().map(|e| e.text.as_str())),
        strings(entities.iter().map(|e| e.label.as_str())),
        Arc::new(UInt32Array::from_iter_values(
            entities.iter().map(|e| e.start),
        )),
        Arc::new(UInt32Array::from_iter_values(
            entities.iter().map(|e| e.end),
        )),
        Arc::new(Float32Array::from_iter_values(
            entities.iter().map(|e| e.score),
        )),
    ]
}

/// A list<struct> column: item `i` holds `lengths[i]` rows of the struct arrays `columns`
/// (fields `fields`).
fn struct_list(
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
    lengths: impl Iterator<Item = usize>,
) -> Result<ArrayRef> {
    let structs = arrow_array::StructArray::try_new(fields.into(), columns, None)?;
    let item = Arc::new(Field::new(
        "item",
        arrow_array::Array::data_type(&structs).clone(),
        true,
    ));
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(lengths);
    Ok(Arc::new(ListArray::try_new(
        item,
        offsets,
        Arc::new(structs),
        None,
    )?))
}

/// A list<struct> column of each item's entities.
fn entity_list(per_item: &[&[Entity]]) -> Result<ArrayRef> {
    let flat: Vec<&Entity> = per_item.iter().flat_map(|e| e.iter()).collect();
    struct_list(
        entity_struct_fields(),
        entity_arrays(&flat),
        per_item.iter().map(|e| e.len()),
    )
}

/// `entities` (List<Struct>) and `entity_keys` (List<Utf8>: the keys of the caption's and the
/// spotted text's entities, each once) of `items`.
fn entity_columns(items: &[IndexedItem]) -> Result<[ArrayRef; 2]> {
    let per_item: Vec<&[Entity]> = items
        .iter()
        .map(|i| i.entities.as_deref().unwrap_or_default())
        .collect();
    let keys_per_item: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let mut keys: Vec<String> = Vec::new();
            let both = [&i.entities, &i.spotted_entities];
            for entity in both.into_iter().flatten().flatten() {
                let key = entity.key();
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys
        })
        .collect();
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(keys_per_item.iter().map(Vec::len));
    let flat_keys: Vec<&str> = keys_per_item.iter().flatten().map(String::as_str).collect();
    let keys = strings(flat_keys.into_iter());
    let key_item = Arc::new(Field::new("item", arrow_schema::DataType::Utf8, true));
    let keys = ListArray::try_new(key_item, offsets, keys, None)?;
    Ok([entity_list(&per_item)?, Arc::new(keys)])
}

/// The flat arrays of a list of spotted words: text, score, polygon.
fn spotted_arrays(words: &[&SpottedWord]) -> Result<Vec<ArrayRef>> {
    let values = Float32Array::from_iter_values(words.iter().flat_map(|w| w.polygon));
    let item = Arc::new(Field::new("item", arrow_schema::DataType::Float32, true));
    let polygons = ListArray::try_new(
        item,
        arrow::buffer::OffsetBuffer::from_lengths(words.iter().map(|w| w.polygon.len())),
        Arc::new(values),
        None,
    )?;
    Ok(vec![
        strings(words.iter().map(|w| w.text.as_str())),
        Arc::new(Float32Array::from_iter_values(
            words.iter().map(|w| w.score),
        )),
        Arc::new(polygons),
    ])
}

/// `spotted` (List<Struct>) and `spotted_text` (the words joined by spaces) of `items`.
fn spotted_columns(items: &[IndexedItem]) -> Result<[ArrayRef; 2]> {
    let per_item: Vec<&[SpottedWord]> = items
        .iter()
        .map(|i| i.spotted.as_deref().unwrap_or_default())
        .collect();
    let flat: Vec<&SpottedWord> = per_item.iter().flat_map(|w| w.iter()).collect();
    let spotted = struct_list(
        spotted_struct_fields(),
        spotted_arrays(&flat)?,
        per_item.iter().map(|w| w.len()),
    )?;
    let joined: Vec<String> = per_item.iter().map(|w| spotted_text(w)).collect();
    Ok([spotted, strings(joined.iter().map(String::as_str))])
}

/// Builds a batch of the spotted-words long table: one row per word spotted in `items`.
pub fn spotted_long_batch(items: &[IndexedItem], stamp: &RowStamp) -> Result<RecordBatch> {
    let rows: Vec<(&str, &SpottedWord)> = items
        .iter()
        .flat_map(|i| {
            i.spotted
                .iter()
                .flatten()
                .map(move |w| (i.entry.id.as_str(), w))
        })
        .collect();
    let n = rows.len();
    let words: Vec<&SpottedWord> = rows.iter().map(|(_, w)| *w).collect();
    let mut arrays = vec![strings(rows.iter().map(|(id, _)| *id))];
    arrays.extend(spotted_arrays(&words)?);
    arrays.extend([repeated(&stamp.bundle, n), repeated(&stamp.job_id, n)]);
    Ok(RecordBatch::try_new(spotted_long_schema(), arrays)?)
}

/// Builds a batch of the entities long table: one row per entity of `items`.
pub fn entities_long_batch(items: &[IndexedItem], stamp: &RowStamp) -> Result<RecordBatch> {
    let rows: Vec<(&str, &str, &Entity)> = items
        .iter()
        .flat_map(|i| {
            let id = i.entry.id.as_str();
            let caption = i.entities.iter().flatten().map(move |e| (id, "caption", e));
            let spotted = i
                .spotted_entities
                .iter()
                .flatten()
                .map(move |e| (id, "spotted_text", e));
            caption.chain(spotted)
        })
        .collect();
    let n = rows.len();
    let entities: Vec<&Entity> = rows.iter().map(|(_, _, e)| *e).collect();
    let mut arrays = vec![strings(rows.iter().map(|(id, _, _)| *id))];
    arrays.extend(entity_arrays(&entities));
    let keys: Vec<String> = entities.iter().map(|e| e.key()).collect();
    arrays.extend([
        strings(keys.iter().map(String::as_str)),
        strings(rows.iter().map(|(_, source, _)| *source)),
        repeated(&stamp.bundle, n),
        repeated(&stamp.job_id, n),
    ]);
    Ok(RecordBatch::try_new(entities_long_schema(), arrays)?)
}

/// Builds an `errors` batch.
pub fn errors_batch(errors: &[ErrorRecord], stamp: &RowStamp) -> Result<RecordBatch> {
    let n = errors.len();
    let arrays: Vec<ArrayRef> = vec![
        strings(errors.iter().map(|e| e.id.as_str())),
        strings(errors.iter().map(|e| e.image.as_str())),
        strings(errors.iter().map(|e| e.stage.as_str())),
        strings(errors.iter().map(|e| e.reason.as_str())),
        repeated(&stamp.job_id, n),
        timestamps(stamp.indexed_at_us, n),
    ];
    Ok(RecordBatch::try_new(errors_schema(), arrays)?)
}

/// Builds a batch of the embeddings long table: one row per item and column (none for a
/// null embedding).
pub fn embeddings_long_batch(
    columns: &[EmbeddingColumn],
    items: &[IndexedItem],
    stamp: &RowStamp,
) -> Result<RecordBatch> {
    // A null embedding (no caption) has no row.
    let rows: Vec<(&IndexedItem, usize)> = columns
        .iter()
        .enumerate()
        .flat_map(|(c, _)| items.iter().map(move |i| (i, c)))
        .filter(|(i, c)| !i.embeddings[*c].is_empty())
        .collect();
    let n = rows.len();
    let names: Vec<String> = rows.iter().map(|(_, c)| columns[*c].name()).collect();
    let lists = ListArray::from_iter_primitive::<arrow_array::types::Float32Type, _, _>(
        rows.iter()
            .map(|(i, c)| Some(i.embeddings[*c].iter().map(|v| Some(*v)))),
    );
    let schema: SchemaRef = embeddings_long_schema();
    let arrays: Vec<ArrayRef> = vec![
        strings(rows.iter().map(|(i, _)| i.entry.id.as_str())),
        strings(names.iter().map(String::as_str)),
        strings(rows.iter().map(|(_, c)| columns[*c].tower.name())),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|(_, c)| {
            u32::try_from(columns[*c].exit).unwrap_or(u32::MAX)
        }))),
        Arc::new(lists),
        repeated(&stamp.bundle, n),
        repeated(&stamp.job_id, n),
    ];
    // The list field of `from_iter_primitive` is nullable "item", as in the schema.
    Ok(RecordBatch::try_new(schema, arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vemo_schemas::{Stage, Tower};

    fn item(id: &str) -> IndexedItem {
        IndexedItem {
            entry: ManifestEntry {
                id: id.into(),
                image: format!("file:///x/{id}.png"),
                caption: Some("a caption".into()),
                metadata: None,
            },
            image: DecodedImage {
                width: 4,
                height: 3,
                content_hash: "ab".into(),
                crop: None,
                full: None,
                full_scale: [1.0, 1.0],
            },
            embeddings: vec![vec![0.6, 0.8], vec![1.0, 0.0]],
            entities: Some(vec![Entity {
                text: "Chelsea".into(),
                label: "PER".into(),
                start: 0,
                end: 7,
                score: 0.9,
            }]),
            spotted: Some(vec![SpottedWord {
                text: "OPEN".into(),
                score: 0.8,
                polygon: [0.0, 0.0, 4.0, 0.0, 4.0, 2.0, 0.0, 2.0],
            }]),
            spotted_entities: Some(vec![Entity {
                text: "OPEN".into(),
                label: "MISC".into(),
                start: 0,
                end: 4,
                score: 0.5,
            }]),
        }
    }

    #[test]
    fn batches_match_their_schemas() {
        let columns = [
            EmbeddingColumn::joint(Tower::Text, 3, 2),
            EmbeddingColumn::joint(Tower::Text, 6, 2),
        ];
        let stamp = RowStamp {
            bundle: "b@1".into(),
            job_id: "j".into(),
            indexed_at_us: 5,
        };
        let items = [item("a"), item("b")];
        assert_eq!(
            items_batch(&columns, &items, &stamp)
                .expect("items")
                .num_rows(),
            2
        );
        assert_eq!(
            embeddings_long_batch(&columns, &items, &stamp)
                .expect("long")
                .num_rows(),
            4
        );
        let batch = items_batch(&columns, &items, &stamp).expect("items");
        assert!(batch.column_by_name("entity_keys").is_some());
        let text = batch.column_by_name("spotted_text").expect("spotted_text");
        assert_eq!(
            arrow_array::cast::AsArray::as_string::<i32>(text).value(0),
            "OPEN"
        );
        assert_eq!(
            spotted_long_batch(&items, &stamp)
                .expect("spotted")
                .num_rows(),
            2
        );
        assert_eq!(
            entities_long_batch(&items, &stamp)
                .expect("entities")
                .num_rows(),
            4,
            "caption and spotted-text entities"
        );
        let keys = batch.column_by_name("entity_keys").expect("keys");
        let keys = arrow_array::cast::AsArray::as_list::<i32>(keys).value(0);
        assert_eq!(keys.len(), 2, "PER:chelsea and MISC:open");
        let error = ErrorRecord {
            id: "c".into(),
            image: "file:///x/c.png".into(),
            stage: Stage::Decode,
            reason: "bad".into(),
        };
        assert_eq!(
            errors_batch(&[error], &stamp).expect("errors").num_rows(),
            1
        );
    }
}
