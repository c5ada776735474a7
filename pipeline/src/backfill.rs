//! New columns on an existing output. When a job asks for text exits or the entity task that
//! `items` was written without, an incremental run computes only those columns, from the
//! captions already in `items`, and adds them to every row with Lance's `add_columns` (new data
//! files beside the old ones, one conditional commit; nothing else is rewritten). Their
//! Parquet rows follow as new parts, staged before the commit and published after it. Columns that need the images again (image exits, the spotting task)
//! are not added this way: the run stops and says so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};
use lance::Dataset;
use lance::dataset::transaction::Operation;
use lance::dataset::{BatchUDF, NewColumnTransform};
use lance::table::format::Fragment;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_operators::batches::{
    RowStamp, embeddings_long_batch, entities_long_batch, entity_list, items_batch,
    spread_embeddings, with_column,
};
use vemo_operators::lance_commit::{Commit, commit_operation_at};
use vemo_operators::lance_io::open_if_exists;
use vemo_operators::parquet_io::write_parquet;
use vemo_operators::store::Location;
use vemo_schemas::{
    COL_CAPTION, COL_COLUMN, COL_ENTITIES, COL_ENTITY_KEYS, COL_ID, EmbeddingColumn, Entity,
    ItemTasks, PARQUET_EMBEDDINGS_DIR, PARQUET_ENTITIES_DIR, Tower, embedding_column,
};

use crate::{Error, Result};
use vemo_output::layout::OutputLayout;
use vemo_output::pending::PendingColumns;

/// The columns of `job` that `items` lacks (empty: none), when they can be added from the
/// captions. An output with columns the job does not write, or lacking ones that need the
/// images, is a user error.
pub fn missing_columns(items: &Dataset, uri: &str, job: &SchemaRef) -> Result<Vec<String>> {
    let have: Vec<&str> = items
        .schema()
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let want: Vec<&str> = job.fields().iter().map(|f| f.name().as_str()).collect();
    let extra: Vec<&str> = have.iter().copied().filter(|c| !want.contains(c)).collect();
    let missing: Vec<String> = want
        .iter()
        .filter(|c| !have.contains(c))
        .map(|c| c.to_string())
        .collect();
    let from_captions =
        |c: &String| c.starts_with("text_emb_e") || c == COL_ENTITIES || c == COL_ENTITY_KEYS;
    let needs_images: Vec<&String> = missing.iter().filter(|c| !from_captions(c)).collect();
    if extra.is_empty() && needs_images.is_empty() {
        return Ok(missing);
    }
    Err(Error::Incompatible(format!(
        "{uri} has the columns [{}], but this job writes [{}]. An incremental run can add text \
         exits and the entity task to an output (computed from the captions in it); it cannot \
         drop columns{} nor add ones that need the images again{}. Run the job with the \
         output's exits and tasks, or index into a new output",
        have.join(", "),
        want.join(", "),
        match extra.is_empty() {
            true => String::new(),
            false => format!(" ({})", extra.join(", ")),
        },
        match needs_images.is_empty() {
            true => String::new(),
            false => format!(
                " ({})",
                needs_images
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    )))
}

/// What adding columns needs: the job's encoder (carrying the NER branch for the entity
/// task), its embedding columns and tasks, and where and how to write.
pub struct ColumnJob<'a> {
    pub encoder: Arc<TextEncoder>,
    pub columns: &'a [EmbeddingColumn],
    pub tasks: ItemTasks,
    pub stamp: RowStamp,
    pub batch_size: usize,
    pub output: &'a Location,
}

/// Computes the `missing` columns for every row of the `items` dataset at `uri` from its
/// captions and adds them in one new version. Crash-safe: the new columns' Parquet parts are
/// staged and listed in `_vemo/columns/JOB.json` before the Lance commit and published after
/// it; [`vemo_output::pending::roll_forward`] finishes or discards what a crash left. Returns the rows that gained
/// the columns.
pub async fn add_columns(uri: &str, missing: &[String], job: ColumnJob<'_>) -> Result<usize> {
    let Some(dataset) = open_if_exists(uri).await? else {
        return Ok(0);
    };
    let maker = Arc::new(RowMaker::new(&job, missing)?);
    let Some((fragments, schema)) = column_fragments(&dataset, uri, &maker).await? else {
        return Ok(0);
    };
    // Stage the Parquet rows and record them, then commit, then publish.
    let batches = std::mem::take(&mut *maker.long.lock().unwrap_or_else(|p| p.into_inner()));
    let job_id = &job.stamp.job_id;
    let pending = PendingColumns {
        columns: missing.to_vec(),
        parts: stage_long_parts(job.output, job_id, batches).await?,
    };
    pending.write(job.output, job_id).await?;
    let operation = Operation::Merge {
        fragments,
        schema,
        preserves_nullability: false,
    };
    match commit_operation_at(uri, Some(&dataset), operation, HashMap::new()).await? {
        Commit::Landed(version) => tracing::debug!(version, "Columns committed."),
        Commit::Moved => {
            pending.discard(job.output, job_id).await?;
            return Err(vemo_output::Error::Contention {
                uri: uri.to_string(),
                attempts: 1,
            }
            .into());
        }
    }
    vemo_operators::crash::point("columns-committed", job_id);
    pending.publish(job.output, job_id).await?;
    let added = *maker.rows.lock().unwrap_or_else(|p| p.into_inner());
    Ok(added)
}

/// Every fragment of `dataset` (at `uri`) with data files holding the columns `maker` computes
/// from its rows (written, not committed), and the schema with them; `None` without fragments.
async fn column_fragments(
    dataset: &Dataset,
    uri: &str,
    maker: &Arc<RowMaker>,
) -> Result<Option<(Vec<Fragment>, lance::datatypes::Schema)>> {
    // What the rows' new columns are computed from.
    let read = vec![COL_ID.to_string(), COL_CAPTION.to_string()];
    let failed = |e: lance::Error| Error::Plan(format!("adding columns to {uri}: {e}"));
    let mut fragments = Vec::new();
    let mut schema = None;
    for fragment in dataset.get_fragments() {
        let mapper = {
            let maker = maker.clone();
            move |batch: &RecordBatch| -> lance::Result<RecordBatch> {
                maker
                    .columns_of(batch)
                    .map_err(|e| lance::Error::from(ArrowError::ComputeError(e.to_string())))
            }
        };
        let transform = NewColumnTransform::BatchUDF(BatchUDF {
            mapper: Box::new(mapper),
            output_schema: maker.output_schema.clone(),
            result_checkpoint: None,
        });
        let (updated, with_columns) = fragment
            .add_columns(transform, Some(read.clone()), Some(256))
            .await
            .map_err(failed)?;
        fragments.push(updated);
        schema = Some(with_columns);
    }
    Ok(schema.map(|schema| (fragments, schema)))
}

/// The state of the column-adding function Lance calls on each batch of existing rows.
struct RowMaker {
    encoder: Arc<TextEncoder>,
    columns: Vec<EmbeddingColumn>,
    tasks: ItemTasks,
    stamp: RowStamp,
    batch_size: usize,
    missing: Vec<String>,
    /// The job's whole `items` schema, and its missing columns (what the function returns).
    schema: SchemaRef,
    output_schema: SchemaRef,
    /// The Parquet rows of the new columns, written once Lance has committed them.
    long: Arc<Mutex<Vec<RecordBatch>>>,
    rows: Arc<Mutex<usize>>,
}

impl RowMaker {
    /// The function that computes the `missing` columns of `job`.
    fn new(job: &ColumnJob<'_>, missing: &[String]) -> Result<Self> {
        let schema = vemo_schemas::items_schema_for(job.columns, job.tasks);
        let indices: Vec<usize> = missing
            .iter()
            .filter_map(|name| schema.index_of(name).ok())
            .collect();
        let output_schema = schema
            .project(&indices)
            .map_err(vemo_operators::Error::from)?;
        Ok(Self {
            encoder: job.encoder.clone(),
            columns: job.columns.to_vec(),
            tasks: job.tasks,
            stamp: job.stamp.clone(),
            batch_size: job.batch_size,
            missing: missing.to_vec(),
            schema,
            output_schema: Arc::new(output_schema),
            long: Arc::default(),
            rows: Arc::default(),
        })
    }

    /// The missing columns for the rows of `batch` (the read columns of `items`).
    fn columns_of(&self, batch: &RecordBatch) -> vemo_operators::Result<RecordBatch> {
        let rows = self.rows_of(batch)?;
        let added: Vec<EmbeddingColumn> = self
            .columns
            .iter()
            .filter(|c| self.missing.contains(&c.name()))
            .cloned()
            .collect();
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(embeddings_long_batch(&added, &rows, &self.stamp)?);
        }
        if self.missing.iter().any(|c| c == COL_ENTITIES) {
            parts.push(entities_long_batch(&rows, &self.stamp)?);
        }
        self.long
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(parts);
        *self.rows.lock().unwrap_or_else(|p| p.into_inner()) += batch.num_rows();
        items_batch(&self.output_schema, &rows, &self.stamp)
    }

    /// The rows of `batch` with the job's caption columns, their captions encoded at the job's
    /// text exits (null where there is no caption, as `vemo index` writes it), and with the
    /// entity task their entities.
    fn rows_of(&self, batch: &RecordBatch) -> vemo_operators::Result<RecordBatch> {
        let captions = batch.column_by_name(COL_CAPTION).ok_or_else(|| {
            vemo_operators::Error::from(ArrowError::SchemaError(format!("no {COL_CAPTION}")))
        })?;
        let captions = captions.as_string::<i32>();
        let refs: Vec<&str> = (0..captions.len())
            .map(|i| match captions.is_valid(i) {
                true => captions.value(i),
                false => "",
            })
            .collect();
        let (per_exit, entities) = self.encoder.encode_columns(&refs, self.batch_size)?;
        let present: Vec<bool> = refs.iter().map(|c| !c.trim().is_empty()).collect();
        let kept: Vec<u32> = (0..refs.len())
            .filter(|&i| present[i])
            .map(|i| i as u32)
            .collect();
        let kept = arrow_array::UInt32Array::from(kept);
        let mut rows = batch.clone();
        for (exit, embeddings) in self.encoder.exits().iter().zip(&per_exit) {
            let field = self
                .schema
                .field_with_name(&embedding_column(Tower::Text, *exit))?;
            let taken = arrow::compute::take(embeddings, &kept, None)?;
            let column = spread_embeddings(taken.as_fixed_size_list(), &present)?;
            rows = with_column(&rows, field.clone(), Arc::new(column))?;
        }
        if self.tasks.entities {
            let field = self.schema.field_with_name(COL_ENTITIES)?;
            let per_row: Vec<&[Entity]> = entities.iter().map(Vec::as_slice).collect();
            rows = with_column(&rows, field.clone(), entity_list(&per_row)?)?;
        }
        Ok(rows)
    }
}

/// Writes the Parquet rows of added columns to staging: (staged path, published path) of
/// each part, relative to the output root.
async fn stage_long_parts(
    output: &Location,
    job_id: &str,
    batches: Vec<RecordBatch>,
) -> vemo_operators::Result<Vec<(String, String)>> {
    let mut parts = Vec::new();
    for (n, batch) in batches.iter().enumerate() {
        let dir = match batch.schema().index_of(COL_COLUMN) {
            Ok(_) => PARQUET_EMBEDDINGS_DIR,
            Err(_) => PARQUET_ENTITIES_DIR,
        };
        if batch.num_rows() == 0 {
            continue;
        }
        let suffix: u64 = rand::random();
        let part = format!("part-{job_id}-columns-{n:06}-{suffix:016x}.parquet");
        let staged = OutputLayout::staged_part(job_id, dir, &part);
        write_parquet(&output.child(&staged)?, batch).await?;
        parts.push((staged, format!("{dir}/{part}")));
    }
    Ok(parts)
}

/// `schema` with its fields in the order of `names` (fields not named there follow; names
/// not in it are skipped).
pub fn in_order<'a>(
    schema: &SchemaRef,
    names: impl Iterator<Item = &'a String>,
) -> Result<SchemaRef> {
    let mut order: Vec<usize> = names.filter_map(|n| schema.index_of(n).ok()).collect();
    let rest: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !order.contains(i))
        .collect();
    order.extend(rest);
    Ok(Arc::new(
        schema
            .project(&order)
            .map_err(vemo_operators::Error::from)?,
    ))
}
