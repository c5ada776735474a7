//! Arrow schemas of the manifest, `items`, `errors` and the Parquet long tables.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::columns::*;
use crate::{META_SCHEMA_VERSION, SCHEMA_VERSION};

/// An embedding column of `items`: which tower, which exit, how many dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingColumn {
    /// Tower name (`text`).
    pub tower: String,
    /// Exit: the number of encoder layers run before pooling.
    pub exit: usize,
    /// Embedding width.
    pub dim: usize,
}

impl EmbeddingColumn {
    /// Column name, e.g. `text_emb_e6`.
    pub fn name(&self) -> String {
        embedding_column(&self.tower, self.exit)
    }
}

fn versioned(fields: Vec<Field>) -> SchemaRef {
    let metadata = HashMap::from([(META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// Arrow type of one embedding vector of `dim` dimensions.
pub fn embedding_type(dim: usize) -> DataType {
    let dim = i32::try_from(dim).unwrap_or(i32::MAX);
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim)
}

/// The input manifest. Required: `id` (Utf8, unique) and `image` (Utf8, a path relative to the
/// manifest's folder or a full URI); optional: `caption` (Utf8, nullable). Any other column is
/// passed through into `items.metadata` as JSON.
pub fn manifest_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_IMAGE, DataType::Utf8, false),
        Field::new(COL_CAPTION, DataType::Utf8, true),
    ]))
}

/// The `items` table: one row per successfully processed input.
///
/// | column | type | meaning |
/// | --- | --- | --- |
/// | `id` | Utf8 | the manifest id |
/// | `image` | Utf8 | resolved image URI |
/// | `caption` | Utf8? | caption as given |
/// | `metadata` | Utf8? | extra manifest columns as JSON |
/// | `width`, `height` | UInt32 | decoded image size |
/// | `content_hash` | Utf8 | SHA-256 of the image bytes, hex |
/// | `{tower}_emb_e{exit}` | FixedSizeList<Float32, D> | L2-normalised embedding per tower and exit |
/// | `bundle` | Utf8 | model bundle id |
/// | `job_id` | Utf8 | run that wrote the row |
/// | `indexed_at` | Timestamp(us, UTC) | when the row was written |
///
/// Later tasks add columns after the embeddings (image embeddings, entities, spotted words).
pub fn items_schema(embeddings: &[EmbeddingColumn]) -> SchemaRef {
    let mut fields = vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_IMAGE, DataType::Utf8, false),
        Field::new(COL_CAPTION, DataType::Utf8, true),
        Field::new(COL_METADATA, DataType::Utf8, true),
        Field::new(COL_WIDTH, DataType::UInt32, false),
        Field::new(COL_HEIGHT, DataType::UInt32, false),
        Field::new(COL_CONTENT_HASH, DataType::Utf8, false),
    ];
    fields.extend(
        embeddings
            .iter()
            .map(|e| Field::new(e.name(), embedding_type(e.dim), false)),
    );
    fields.extend([
        Field::new(COL_BUNDLE, DataType::Utf8, false),
        Field::new(COL_JOB_ID, DataType::Utf8, false),
        Field::new(COL_INDEXED_AT, timestamp_type(), false),
    ]);
    versioned(fields)
}

/// The `errors` table: one row per input that failed: `id`, `image`, `stage` (see
/// [`crate::Stage::as_str`]), `reason`, `job_id`, `indexed_at`.
pub fn errors_schema() -> SchemaRef {
    versioned(vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_IMAGE, DataType::Utf8, false),
        Field::new(COL_STAGE, DataType::Utf8, false),
        Field::new(COL_REASON, DataType::Utf8, false),
        Field::new(COL_JOB_ID, DataType::Utf8, false),
        Field::new(COL_INDEXED_AT, timestamp_type(), false),
    ])
}

/// The Parquet long table `parquet/embeddings/`: one row per item, tower and exit:
/// `id`, `tower`, `exit` (UInt32), `embedding` (List<Float32>), `bundle`, `job_id`.
pub fn embeddings_long_schema() -> SchemaRef {
    versioned(vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_TOWER, DataType::Utf8, false),
        Field::new(COL_EXIT, DataType::UInt32, false),
        Field::new(
            COL_EMBEDDING,
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        ),
        Field::new(COL_BUNDLE, DataType::Utf8, false),
        Field::new(COL_JOB_ID, DataType::Utf8, false),
    ])
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_schema_has_one_column_per_exit_and_the_version() {
        let cols = [
            EmbeddingColumn {
                tower: "text".into(),
                exit: 3,
                dim: 384,
            },
            EmbeddingColumn {
                tower: "text".into(),
                exit: 6,
                dim: 384,
            },
        ];
        let schema = items_schema(&cols);
        let field = schema
            .field_with_name("text_emb_e6")
            .expect("exit 6 column");
        assert_eq!(field.data_type(), &embedding_type(384));
        assert!(schema.field_with_name("text_emb_e3").is_ok());
        assert_eq!(
            schema
                .metadata()
                .get(META_SCHEMA_VERSION)
                .map(String::as_str),
            Some("1")
        );
    }
}
