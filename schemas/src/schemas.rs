//! Arrow schemas of the manifest, `items`, `errors` and the Parquet long tables.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Tower;
use crate::columns::*;
use crate::{META_SCHEMA_VERSION, SCHEMA_VERSION};

/// An embedding column of `items`: which tower, which exit, how many dimensions, and whether
/// it lies in the joint caption space (`text_emb_e6`, `image_emb_e7`) or is a tower's own
/// feature (`image_feat_e7`, for image-to-image search).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingColumn {
    /// The tower it comes from.
    pub tower: Tower,
    /// Exit: text layers or image stages run before pooling.
    pub exit: usize,
    /// Embedding width.
    pub dim: usize,
    /// A tower-specific feature, not in the joint space.
    pub feature: bool,
}

impl EmbeddingColumn {
    /// A joint-space column.
    pub fn joint(tower: Tower, exit: usize, dim: usize) -> Self {
        Self {
            tower,
            exit,
            dim,
            feature: false,
        }
    }

    /// Column name, e.g. `text_emb_e6` or `image_feat_e7`.
    pub fn name(&self) -> String {
        if self.feature {
            feature_column(self.tower, self.exit)
        } else {
            embedding_column(self.tower, self.exit)
        }
    }

    /// The column's Arrow field, its tower, exit and space in the field metadata.
    pub fn field(&self) -> Field {
        let metadata = HashMap::from([
            (META_TOWER.to_string(), self.tower.to_string()),
            (META_EXIT.to_string(), self.exit.to_string()),
            (
                META_SPACE.to_string(),
                if self.feature { "feature" } else { "joint" }.to_string(),
            ),
        ]);
        // A caption column is null for an item without a caption; an image always has pixels.
        let nullable = match self.tower {
            Tower::Text => true,
            Tower::Image => false,
        };
        Field::new(self.name(), embedding_type(self.dim), nullable).with_metadata(metadata)
    }

    /// Reads a column description back from a field written by [`Self::field`].
    pub fn from_field(field: &Field) -> Option<Self> {
        let meta = field.metadata();
        let DataType::FixedSizeList(_, dim) = field.data_type() else {
            return None;
        };
        Some(Self {
            tower: meta.get(META_TOWER)?.parse().ok()?,
            exit: meta.get(META_EXIT)?.parse().ok()?,
            dim: usize::try_from(*dim).ok()?,
            feature: meta.get(META_SPACE)? == "feature",
        })
    }
}

/// Field metadata keys of an embedding column.
pub const META_TOWER: &str = "vemo.tower";
pub const META_EXIT: &str = "vemo.exit";
pub const META_SPACE: &str = "vemo.space";

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
/// | `{tower}_emb_e{exit}` | FixedSizeList<Float32, D> | L2-normalised joint-space embedding per tower and exit; `text_*` null for an item without a caption |
/// | `image_feat_e7` | FixedSizeList<Float32, 1280> | L2-normalised pooled image feature (image-to-image) |
/// | `bundle` | Utf8 | model bundle id |
/// | `job_id` | Utf8 | run that wrote the row |
/// | `indexed_at` | Timestamp(us, UTC) | when the row was written |
///
/// Later tasks add columns after the embeddings (entities, spotted words).
pub fn items_schema(embeddings: &[EmbeddingColumn]) -> SchemaRef {
    items_schema_for(embeddings, ItemTasks::default())
}

/// The tasks beyond semantic search whose columns `items` carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemTasks {
    /// Named entities of the caption (and of the spotted text).
    pub entities: bool,
    /// Words spotted in the image.
    pub spotting: bool,
}

/// The struct of one spotted word in `items.spotted`: `text`, `score`, `polygon` (8 values).
pub fn spotted_struct_fields() -> Vec<Field> {
    vec![
        Field::new(COL_TEXT, DataType::Utf8, false),
        Field::new(COL_SCORE, DataType::Float32, false),
        Field::new(
            COL_POLYGON,
            DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            false,
        ),
    ]
}

/// The struct of one entity in `items.entities`: `text`, `label`, `start`, `end` (character
/// offsets in the caption, end exclusive), `score`.
pub fn entity_struct_fields() -> Vec<Field> {
    vec![
        Field::new(COL_TEXT, DataType::Utf8, false),
        Field::new(COL_LABEL, DataType::Utf8, false),
        Field::new(COL_START, DataType::UInt32, false),
        Field::new(COL_END, DataType::UInt32, false),
        Field::new(COL_SCORE, DataType::Float32, false),
    ]
}

/// [`items_schema`], with the entity columns when the job runs the entity task:
/// `entities` (List<Struct>, see [`entity_struct_fields`]) and `entity_keys` (List<Utf8>,
/// `PER:angela merkel`, for exact filtering); and with the spotting task's `spotted`
/// (List<Struct>, see [`spotted_struct_fields`]) and `spotted_text` (Utf8); with both, the
/// entities of the spotted text (`spotted_entities`, their keys also in `entity_keys`).
pub fn items_schema_for(embeddings: &[EmbeddingColumn], tasks: ItemTasks) -> SchemaRef {
    let mut fields = vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_IMAGE, DataType::Utf8, false),
        Field::new(COL_CAPTION, DataType::Utf8, true),
        Field::new(COL_METADATA, DataType::Utf8, true),
        Field::new(COL_WIDTH, DataType::UInt32, false),
        Field::new(COL_HEIGHT, DataType::UInt32, false),
        Field::new(COL_CONTENT_HASH, DataType::Utf8, false),
    ];
    fields.extend(embeddings.iter().map(EmbeddingColumn::field));
    if tasks.entities {
        let item = DataType::Struct(entity_struct_fields().into());
        fields.extend([
            Field::new(
                COL_ENTITIES,
                DataType::List(Arc::new(Field::new("item", item, true))),
                false,
            ),
            Field::new(
                COL_ENTITY_KEYS,
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                false,
            ),
        ]);
    }
    if tasks.spotting {
        let item = DataType::Struct(spotted_struct_fields().into());
        fields.extend([
            Field::new(
                COL_SPOTTED,
                DataType::List(Arc::new(Field::new("item", item, true))),
                false,
            ),
            Field::new(COL_SPOTTED_TEXT, DataType::Utf8, false),
        ]);
        if tasks.entities {
            let item = DataType::Struct(entity_struct_fields().into());
            fields.push(Field::new(
                COL_SPOTTED_ENTITIES,
                DataType::List(Arc::new(Field::new("item", item, true))),
                false,
            ));
        }
    }
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

/// The Parquet long table `parquet/embeddings/`: one row per item and embedding column:
/// `id`, `column` (the `items` column name), `tower`, `exit` (UInt32), `embedding`
/// (List<Float32>), `bundle`, `job_id`.
pub fn embeddings_long_schema() -> SchemaRef {
    versioned(vec![
        Field::new(COL_ID, DataType::Utf8, false),
        Field::new(COL_COLUMN, DataType::Utf8, false),
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

/// The Parquet long table `parquet/spotted_text/`: one row per spotted word: `id`, `text`,
/// `score`, `polygon`, `bundle`, `job_id`.
pub fn spotted_long_schema() -> SchemaRef {
    let mut fields = vec![Field::new(COL_ID, DataType::Utf8, false)];
    fields.extend(spotted_struct_fields());
    fields.extend([
        Field::new(COL_BUNDLE, DataType::Utf8, false),
        Field::new(COL_JOB_ID, DataType::Utf8, false),
    ]);
    versioned(fields)
}

/// The Parquet long table `parquet/entities/`: one row per entity: `id`, `text`, `label`,
/// `start`, `end`, `score`, `key`, `source` (`caption` or `spotted_text`: what the offsets
/// refer to), `bundle`, `job_id`.
pub fn entities_long_schema() -> SchemaRef {
    let mut fields = vec![Field::new(COL_ID, DataType::Utf8, false)];
    fields.extend(entity_struct_fields());
    fields.extend([
        Field::new(COL_KEY, DataType::Utf8, false),
        Field::new(COL_SOURCE, DataType::Utf8, false),
        Field::new(COL_BUNDLE, DataType::Utf8, false),
        Field::new(COL_JOB_ID, DataType::Utf8, false),
    ]);
    versioned(fields)
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
            EmbeddingColumn::joint(Tower::Text, 3, 384),
            EmbeddingColumn::joint(Tower::Text, 6, 384),
        ];
        let schema = items_schema(&cols);
        let field = schema
            .field_with_name("text_emb_e6")
            .expect("exit 6 column");
        assert_eq!(field.data_type(), &embedding_type(384));
        assert!(schema.field_with_name("text_emb_e3").is_ok());
        assert_eq!(EmbeddingColumn::from_field(field), Some(cols[1].clone()));
        assert_eq!(
            schema
                .metadata()
                .get(META_SCHEMA_VERSION)
                .map(String::as_str),
            Some("2")
        );
    }
}
