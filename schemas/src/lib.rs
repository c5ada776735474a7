//! vemo-schemas: the Arrow schemas, column names and record types of vemo's inputs and outputs.
//!
//! This is the bottom crate of the workspace: every other crate names columns through the
//! `COL_*` constants here, so a column is renamed in one place. The output layout is:
//!
//! ```text
//! OUTPUT/
//!   items.lance                      one row per successfully processed input (items_schema)
//!   errors.lance                     one row per input that failed (errors_schema)
//!   parquet/embeddings/part-*.parquet  long table: one row per item and embedding column
//!   parquet/entities/part-*.parquet    one row per entity found in a caption (entity task)
//!   parquet/spotted_text/part-*.parquet one row per word spotted in an image (spotting task)
//!   parquet/errors/part-*.parquet      the same rows as errors.lance
//!   _vemo/runs/RUN.json              one summary per run (counts, Lance versions)
//!   _vemo/staging/RUN/               Parquet parts written but not yet published
//! ```

mod columns;
mod names;
mod records;
mod schemas;

pub use columns::*;
pub use names::{Task, Tower, UnknownName};
pub use records::{Entity, ErrorRecord, ManifestEntry, SpottedWord, Stage, entity_key};
pub use schemas::{
    EmbeddingColumn, ItemTasks, META_EXIT, META_SPACE, META_TOWER, embedding_type,
    embeddings_long_schema, entities_long_schema, entity_struct_fields, errors_schema,
    items_schema, items_schema_for, manifest_schema, spotted_long_schema, spotted_struct_fields,
};

/// Version of the output schema, stored in the Lance datasets' schema metadata under
/// [`META_SCHEMA_VERSION`]. Bump it when a column changes meaning or type.
pub const SCHEMA_VERSION: &str = "2";
/// Schema metadata key holding [`SCHEMA_VERSION`].
pub const META_SCHEMA_VERSION: &str = "vemo.schema_version";

/// Dataset name of the items table under the output root.
pub const ITEMS_DATASET: &str = "items.lance";
/// Dataset name of the errors table under the output root.
pub const ERRORS_DATASET: &str = "errors.lance";
/// Folder of the Parquet long table of embeddings.
pub const PARQUET_EMBEDDINGS_DIR: &str = "parquet/embeddings";
/// Folder of the Parquet long table of entities.
pub const PARQUET_ENTITIES_DIR: &str = "parquet/entities";
/// Folder of the Parquet long table of spotted words.
pub const PARQUET_SPOTTED_DIR: &str = "parquet/spotted_text";
/// Folder of the Parquet copy of the errors table.
pub const PARQUET_ERRORS_DIR: &str = "parquet/errors";
/// Folder of vemo's own bookkeeping (run summaries, staging).
pub const VEMO_DIR: &str = "_vemo";
