//! The Arrow batches vemo writes: `items` rows assembled by column name from what the stages
//! computed ([`items_batch`]), the long tables derived from those rows, and `errors`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use vemo_schemas::{
    COL_BUNDLE, COL_CAPTION, COL_CONTENT_HASH, COL_ENTITIES, COL_ENTITY_KEYS, COL_HEIGHT, COL_ID,
    COL_IMAGE, COL_INDEXED_AT, COL_JOB_ID, COL_LABEL, COL_METADATA, COL_SPOTTED,
    COL_SPOTTED_ENTITIES, COL_TEXT, COL_WIDTH, EmbeddingColumn, Entity, ErrorRecord, ManifestEntry,
    SpottedWord, embeddings_long_schema, entities_long_schema, entity_key, entity_struct_fields,
    errors_schema, items_schema, spotted_long_schema, spotted_struct_fields,
};

use crate::Result;
use crate::images::DecodedImage;
use vemo_models::spotting::spotted_text;

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

fn missing(name: &str) -> ArrowError {
    ArrowError::SchemaError(format!("no column `{name}` among the rows"))
}

/// The column `name` of `batch`, or an error naming it.
fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    Ok(batch.column_by_name(name).ok_or_else(|| missing(name))?)
}

/// The columns an item has before any model ran: `id`, `image`, `caption`, `metadata` from
/// its manifest entry, `width`, `height`, `content_hash` from its image (as in `items`).
pub fn item_rows(entries: &[ManifestEntry], images: &[DecodedImage]) -> Result<RecordBatch> {
    let names = [
        COL_ID,
        COL_IMAGE,
        COL_CAPTION,
        COL_METADATA,
        COL_WIDTH,
        COL_HEIGHT,
        COL_CONTENT_HASH,
    ];
    let all = items_schema(&[]);
    let fields = names
        .iter()
        .map(|name| all.field_with_name(name).cloned())
        .collect::<Result<Vec<Field>, _>>()?;
    let arrays: Vec<ArrayRef> = vec![
        strings(entries.iter().map(|e| e.id.as_str())),
        strings(entries.iter().map(|e| e.image.as_str())),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.caption.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            entries.iter().map(|e| e.metadata.as_deref()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            images.iter().map(|i| i.width),
        )),
        Arc::new(UInt32Array::from_iter_values(
            images.iter().map(|i| i.height),
        )),
        strings(images.iter().map(|i| i.content_hash.as_str())),
    ];
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// `batch` with `array` added as its last column, `field`.
pub fn with_column(batch: &RecordBatch, field: Field, array: ArrayRef) -> Result<RecordBatch> {
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(field));
    let mut arrays = batch.columns().to_vec();
    arrays.push(array);
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// The rows of `embeddings` spread over `present.len()` rows: row `i` is the next embedding
/// where `present[i]`, else a null (its slot holds zeros under the null bit). The caption
/// columns of items without a caption are null.
pub fn spread_embeddings(
    embeddings: &FixedSizeListArray,
    present: &[bool],
) -> Result<FixedSizeListArray> {
    if present.iter().all(|&p| p) && embeddings.len() == present.len() {
        return Ok(embeddings.clone());
    }
    let dim = usize::try_from(embeddings.value_length()).unwrap_or_default();
    let given = embeddings
        .values()
        .as_primitive::<arrow_array::types::Float32Type>();
    let mut rows = given.values().chunks_exact(dim.max(1));
    let mut values = Vec::with_capacity(present.len() * dim);
    for &here in present {
        match here {
            true => values.extend_from_slice(rows.next().ok_or_else(|| {
                ArrowError::InvalidArgumentError("fewer embeddings than present rows".into())
            })?),
            false => values.extend(std::iter::repeat_n(0.0, dim)),
        }
    }
    let (item, size) = match embeddings.data_type() {
        DataType::FixedSizeList(item, size) => (item.clone(), *size),
        other => return Err(ArrowError::SchemaError(format!("{other} is no embedding")).into()),
    };
    let nulls = arrow::buffer::NullBuffer::from(present.to_vec());
    Ok(FixedSizeListArray::try_new(
        item,
        size,
        Arc::new(Float32Array::from(values)),
        Some(nulls),
    )?)
}

/// The `items` batch in `schema` (the output's columns, in its order): each column by name
/// from `rows`, `entity_keys` from the rows' `entities` and `spotted_entities`, and the
/// stamp's `bundle`, `job_id` and `indexed_at`.
pub fn items_batch(
    schema: &SchemaRef,
    rows: &RecordBatch,
    stamp: &RowStamp,
) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let arrays = schema
        .fields()
        .iter()
        .map(|field| {
            Ok(match field.name().as_str() {
                COL_BUNDLE => repeated(&stamp.bundle, n),
                COL_JOB_ID => repeated(&stamp.job_id, n),
                COL_INDEXED_AT => timestamps(stamp.indexed_at_us, n),
                COL_ENTITY_KEYS => entity_keys(rows)?,
                name => column(rows, name)?.clone(),
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
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
    let structs = StructArray::try_new(fields.into(), columns, None)?;
    let item = Arc::new(Field::new("item", structs.data_type().clone(), true));
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(lengths);
    Ok(Arc::new(ListArray::try_new(
        item,
        offsets,
        Arc::new(structs),
        None,
    )?))
}

/// An `entities` (or `spotted_entities`) column: each item's entities.
pub fn entity_list(per_item: &[&[Entity]]) -> Result<ArrayRef> {
    let flat: Vec<&Entity> = per_item.iter().flat_map(|e| e.iter()).collect();
    struct_list(
        entity_struct_fields(),
        entity_arrays(&flat),
        per_item.iter().map(|e| e.len()),
    )
}

/// The text and label arrays of the entities in a list<struct> column, and its offsets.
fn entity_parts(list: &ListArray) -> Result<(&StringArray, &StringArray, &[i32])> {
    let structs = list.values().as_struct();
    let text = structs
        .column_by_name(COL_TEXT)
        .ok_or_else(|| missing(COL_TEXT))?;
    let label = structs
        .column_by_name(COL_LABEL)
        .ok_or_else(|| missing(COL_LABEL))?;
    Ok((
        text.as_string::<i32>(),
        label.as_string::<i32>(),
        list.value_offsets(),
    ))
}

/// `entity_keys` (List<Utf8>) of `rows`: the keys of each row's caption entities, then of its
/// spotted-text entities (when the rows have them), each key once.
fn entity_keys(rows: &RecordBatch) -> Result<ArrayRef> {
    let mut sources = vec![entity_parts(column(rows, COL_ENTITIES)?.as_list::<i32>())?];
    if let Some(spotted) = rows.column_by_name(COL_SPOTTED_ENTITIES) {
        sources.push(entity_parts(spotted.as_list::<i32>())?);
    }
    let mut keys_per_row: Vec<Vec<String>> = Vec::with_capacity(rows.num_rows());
    for row in 0..rows.num_rows() {
        let mut keys: Vec<String> = Vec::new();
        for (text, label, offsets) in &sources {
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            for j in from..to {
                let key = entity_key(label.value(j), text.value(j));
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys_per_row.push(keys);
    }
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(keys_per_row.iter().map(Vec::len));
    let flat: Vec<&str> = keys_per_row.iter().flatten().map(String::as_str).collect();
    let flat = strings(flat.into_iter());
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    Ok(Arc::new(ListArray::try_new(item, offsets, flat, None)?))
}

/// The flat arrays of a list of spotted words: text, score, polygon.
fn spotted_arrays(words: &[&SpottedWord]) -> Result<Vec<ArrayRef>> {
    let values = Float32Array::from_iter_values(words.iter().flat_map(|w| w.polygon));
    let item = Arc::new(Field::new("item", DataType::Float32, true));
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

/// `spotted` (List<Struct>) and `spotted_text` (the words joined by spaces) of items that
/// spotted `per_item`.
pub fn spotted_columns(per_item: &[&[SpottedWord]]) -> Result<[ArrayRef; 2]> {
    let flat: Vec<&SpottedWord> = per_item.iter().flat_map(|w| w.iter()).collect();
    let spotted = struct_list(
        spotted_struct_fields(),
        spotted_arrays(&flat)?,
        per_item.iter().map(|w| w.len()),
    )?;
    let joined: Vec<String> = per_item.iter().map(|w| spotted_text(w)).collect();
    Ok([spotted, strings(joined.iter().map(String::as_str))])
}

/// Positions of the values of a list column, with the row each belongs to.
fn exploded(list: &ListArray) -> (Vec<u32>, Vec<u32>) {
    let offsets = list.value_offsets();
    let (mut rows, mut values) = (Vec::new(), Vec::new());
    for row in 0..list.len() {
        for j in offsets[row]..offsets[row + 1] {
            rows.push(row as u32);
            values.push(j as u32);
        }
    }
    (rows, values)
}

/// `array` at `indices`.
fn take(array: &dyn Array, indices: &[u32]) -> Result<ArrayRef> {
    let indices = UInt32Array::from(indices.to_vec());
    Ok(arrow::compute::take(array, &indices, None)?)
}

/// A batch of the spotted-words long table: one row per word in the `spotted` column of
/// `items`.
pub fn spotted_long_batch(items: &RecordBatch, stamp: &RowStamp) -> Result<RecordBatch> {
    let spotted = column(items, COL_SPOTTED)?.as_list::<i32>();
    let (rows, values) = exploded(spotted);
    let words = take(spotted.values().as_ref(), &values)?;
    let n = rows.len();
    let mut arrays = vec![take(column(items, COL_ID)?.as_ref(), &rows)?];
    arrays.extend(words.as_struct().columns().iter().cloned());
    arrays.extend([repeated(&stamp.bundle, n), repeated(&stamp.job_id, n)]);
    Ok(RecordBatch::try_new(spotted_long_schema(), arrays)?)
}

/// A batch of the entities long table: one row per entity of `items`, each row's caption
/// entities (`entities`), then its spotted-text entities (`spotted_entities`, when there).
pub fn entities_long_batch(items: &RecordBatch, stamp: &RowStamp) -> Result<RecordBatch> {
    let mut sources = vec![("caption", column(items, COL_ENTITIES)?.as_list::<i32>())];
    if let Some(spotted) = items.column_by_name(COL_SPOTTED_ENTITIES) {
        sources.push(("spotted_text", spotted.as_list::<i32>()));
    }
    // (source, value) of every entity, row by row.
    let (mut rows, mut picks) = (Vec::new(), Vec::new());
    for row in 0..items.num_rows() {
        for (s, (_, list)) in sources.iter().enumerate() {
            let offsets = list.value_offsets();
            for j in offsets[row]..offsets[row + 1] {
                rows.push(row as u32);
                picks.push((s, j as usize));
            }
        }
    }
    let structs: Vec<&StructArray> = sources
        .iter()
        .map(|(_, l)| l.values().as_struct())
        .collect();
    let mut arrays = vec![take(column(items, COL_ID)?.as_ref(), &rows)?];
    for field in 0..entity_struct_fields().len() {
        let parts: Vec<&dyn Array> = structs.iter().map(|s| s.column(field).as_ref()).collect();
        arrays.push(arrow::compute::interleave(&parts, &picks)?);
    }
    let (text, label) = (arrays[1].as_string::<i32>(), arrays[2].as_string::<i32>());
    let keys: Vec<String> = (0..picks.len())
        .map(|i| entity_key(label.value(i), text.value(i)))
        .collect();
    let n = picks.len();
    arrays.extend([
        strings(keys.iter().map(String::as_str)),
        strings(picks.iter().map(|(s, _)| sources[*s].0)),
        repeated(&stamp.bundle, n),
        repeated(&stamp.job_id, n),
    ]);
    Ok(RecordBatch::try_new(entities_long_schema(), arrays)?)
}

/// A batch of the embeddings long table: one row per item of `items` and column of `columns`,
/// column after column (none for a null embedding: an item without a caption).
pub fn embeddings_long_batch(
    columns: &[EmbeddingColumn],
    items: &RecordBatch,
    stamp: &RowStamp,
) -> Result<RecordBatch> {
    let ids = column(items, COL_ID)?;
    let mut parts = Vec::new();
    for embedding in columns {
        let name = embedding.name();
        let array = column(items, &name)?;
        let rows: Vec<u32> = (0..array.len())
            .filter(|&i| array.is_valid(i))
            .map(|i| i as u32)
            .collect();
        let vectors = take(array.as_ref(), &rows)?;
        let vectors = vectors.as_fixed_size_list();
        let dim = usize::try_from(vectors.value_length()).unwrap_or_default();
        let values = vectors.values().clone();
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let offsets =
            arrow::buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(dim, rows.len()));
        let lists: ArrayRef = Arc::new(ListArray::try_new(item, offsets, values, None)?);
        let n = rows.len();
        let exit = u32::try_from(embedding.exit).unwrap_or(u32::MAX);
        parts.push(vec![
            take(ids.as_ref(), &rows)?,
            repeated(&name, n),
            repeated(embedding.tower.name(), n),
            Arc::new(UInt32Array::from(vec![exit; n])) as ArrayRef,
            lists,
        ]);
    }
    let schema: SchemaRef = embeddings_long_schema();
    let mut arrays = Vec::new();
    for c in 0..5 {
        let pieces: Vec<&dyn Array> = parts.iter().map(|p| p[c].as_ref()).collect();
        arrays.push(match pieces.is_empty() {
            true => arrow_array::new_empty_array(schema.field(c).data_type()),
            false => arrow::compute::concat(&pieces)?,
        });
    }
    let n = arrays[0].len();
    arrays.extend([repeated(&stamp.bundle, n), repeated(&stamp.job_id, n)]);
    Ok(RecordBatch::try_new(schema, arrays)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_items::{entry, image};
    use vemo_models::models::columns::embedding_array;
    use vemo_schemas::{ItemTasks, Stage, Tower, items_schema_for};

    fn entity(text: &str, label: &str) -> Entity {
        Entity {
            text: text.into(),
            label: label.into(),
            start: 0,
            end: text.len() as u32,
            score: 0.9,
        }
    }

    /// Two items with every task's columns; the second has no caption.
    fn rows(columns: &[EmbeddingColumn]) -> RecordBatch {
        let entries = [entry("a"), entry("b")];
        let mut rows = item_rows(&entries, &[image(), image()]).expect("rows");
        let schema = items_schema_for(
            columns,
            ItemTasks {
                entities: true,
                spotting: true,
            },
        );
        let mut add = |name: &str, array: ArrayRef| {
            let field = schema.field_with_name(name).expect("field").clone();
            rows = with_column(&rows, field, array).expect("column");
        };
        let first = embedding_array(2, vec![0.6, 0.8]).expect("first");
        let text = spread_embeddings(&first, &[true, false]).expect("spread");
        add(&columns[0].name(), Arc::new(text));
        let image = embedding_array(2, vec![1.0, 0.0, 0.0, 1.0]).expect("image");
        add(&columns[1].name(), Arc::new(image));
        let chelsea = [entity("Chelsea", "PER")];
        add(
            COL_ENTITIES,
            entity_list(&[&chelsea, &[]]).expect("entities"),
        );
        let open = [SpottedWord {
            text: "OPEN".into(),
            score: 0.8,
            polygon: [0.0, 0.0, 4.0, 0.0, 4.0, 2.0, 0.0, 2.0],
        }];
        let [spotted, joined] = spotted_columns(&[&open, &open]).expect("spotted");
        add(COL_SPOTTED, spotted);
        add(vemo_schemas::COL_SPOTTED_TEXT, joined);
        let found = [entity("OPEN", "MISC"), entity("chelsea", "PER")];
        add(
            COL_SPOTTED_ENTITIES,
            entity_list(&[&found, &found[..1]]).expect("spotted entities"),
        );
        rows
    }

    #[test]
    fn batches_match_their_schemas() {
        let columns = [
            EmbeddingColumn::joint(Tower::Text, 6, 2),
            EmbeddingColumn::joint(Tower::Image, 7, 2),
        ];
        let stamp = RowStamp {
            bundle: "b@1".into(),
            job_id: "j".into(),
            indexed_at_us: 5,
        };
        let tasks = ItemTasks {
            entities: true,
            spotting: true,
        };
        let rows = rows(&columns);
        let batch = items_batch(&items_schema_for(&columns, tasks), &rows, &stamp).expect("items");
        assert_eq!(batch.num_rows(), 2);
        let text = batch.column_by_name("text_emb_e6").expect("text");
        assert_eq!((text.is_valid(0), text.is_null(1)), (true, true));
        let keys = batch.column_by_name(COL_ENTITY_KEYS).expect("keys");
        let keys = keys.as_list::<i32>().value(0);
        let keys: Vec<&str> = keys.as_string::<i32>().iter().flatten().collect();
        assert_eq!(
            keys,
            ["PER:chelsea", "MISC:open"],
            "each key once, caption first"
        );
        let spotted_text = batch.column_by_name("spotted_text").expect("spotted_text");
        assert_eq!(spotted_text.as_string::<i32>().value(0), "OPEN");

        let long = embeddings_long_batch(&columns, &batch, &stamp).expect("long");
        assert_eq!(long.num_rows(), 3, "no row for the null caption embedding");
        let exits = long
            .column(3)
            .as_primitive::<arrow_array::types::UInt32Type>();
        assert_eq!(exits.values().to_vec(), [6, 7, 7]);
        let vectors = long.column(4).as_list::<i32>();
        let last = vectors.value(2);
        assert_eq!(
            last.as_primitive::<arrow_array::types::Float32Type>()
                .values()
                .to_vec(),
            [0.0, 1.0]
        );
        assert_eq!(
            spotted_long_batch(&batch, &stamp)
                .expect("spotted")
                .num_rows(),
            2
        );
        let entities = entities_long_batch(&batch, &stamp).expect("entities");
        let sources: Vec<&str> = entities
            .column(7)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(
            sources,
            ["caption", "spotted_text", "spotted_text", "spotted_text"]
        );
        let keys: Vec<&str> = entities
            .column(6)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        assert_eq!(
            keys,
            ["PER:chelsea", "MISC:open", "PER:chelsea", "MISC:open"]
        );
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
