//! WriteShard: a shard's rows as uncommitted Lance fragments of `items` and `errors`, and its
//! Parquet long tables staged, all derived from its `items` batch.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use timely::dataflow::Stream;
use tokio::runtime::Runtime;
use vemo_operators::batches::{
    RowStamp, embeddings_long_batch, entities_long_batch, errors_batch, items_batch,
    spotted_long_batch,
};
use vemo_operators::lance_io::{WrittenFragments, write_fragments_uncommitted};
use vemo_operators::parquet_io::write_parquet;
use vemo_operators::store::Location;
use vemo_schemas::{
    EmbeddingColumn, ErrorRecord, ItemTasks, PARQUET_EMBEDDINGS_DIR, PARQUET_ENTITIES_DIR,
    PARQUET_ERRORS_DIR, PARQUET_SPOTTED_DIR,
};

use super::{ShardBatch, ShardFailed, Shards, Staged, map_named};
use vemo_output::OutputLayout;

/// After WriteShard: what the committer needs. Travels between processes, so it is plain data:
/// the written fragments, and the Parquet parts as (staged URI, final relative path).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardWritten {
    pub shard: u64,
    /// The shard's ledger key, and the ids whose earlier rows its commit deletes.
    pub key: String,
    pub replaces: Vec<String>,
    /// Items that went through the text encoder.
    pub encoded: usize,
    pub items: usize,
    pub errors: usize,
    pub item_fragments: WrittenFragments,
    pub error_fragments: WrittenFragments,
    pub staged_parts: Vec<(String, String)>,
}

/// A shard after WriteShard: written, or failed.
pub type Written = Result<ShardWritten, ShardFailed>;

/// A worker's writes.
pub struct WriteStage {
    pub runtime: Arc<Runtime>,
    pub output: Location,
    pub items_uri: String,
    pub errors_uri: String,
    /// The `items` schema rows are written in (the output's column order).
    pub items_schema: SchemaRef,
    /// The embedding columns, text exits first (the rows of the embeddings long table).
    pub columns: Vec<EmbeddingColumn>,
    /// The tasks whose long tables the job writes.
    pub tasks: ItemTasks,
    pub stamp: RowStamp,
}

impl WriteStage {
    fn write(&self, shard: ShardBatch) -> Written {
        let _span = tracing::debug_span!("write_shard", shard = shard.shard).entered();
        let (id, encoded) = (shard.shard, shard.encoded);
        let (rows, errors) = shard.items.into_parts();
        let mut written = ShardWritten {
            shard: shard.shard,
            key: shard.key,
            replaces: shard.replaces,
            encoded: shard.encoded,
            items: rows.num_rows(),
            errors: errors.len(),
            ..Default::default()
        };
        match self
            .runtime
            .block_on(self.write_parts(&rows, &errors, &mut written))
        {
            Ok(()) => Ok(written),
            Err(e) => Err(ShardFailed {
                shard: id,
                encoded,
                reason: format!("shard {id}: write: {e}"),
            }),
        }
    }

    async fn write_parts(
        &self,
        rows: &RecordBatch,
        errors: &[ErrorRecord],
        out: &mut ShardWritten,
    ) -> vemo_operators::Result<()> {
        let suffix: u64 = rand::random();
        let part = format!(
            "part-{}-{:06}-{suffix:016x}.parquet",
            self.stamp.job_id, out.shard
        );
        if rows.num_rows() > 0 {
            let items = items_batch(&self.items_schema, rows, &self.stamp)?;
            let fragments =
                write_fragments_uncommitted(&self.items_uri, vec![items.clone()]).await?;
            out.item_fragments = WrittenFragments::new(fragments);
            let long = embeddings_long_batch(&self.columns, &items, &self.stamp)?;
            out.staged_parts.push(
                self.stage_part(&long, PARQUET_EMBEDDINGS_DIR, &part)
                    .await?,
            );
            if self.tasks.entities {
                let entities = entities_long_batch(&items, &self.stamp)?;
                out.staged_parts.push(
                    self.stage_part(&entities, PARQUET_ENTITIES_DIR, &part)
                        .await?,
                );
            }
            if self.tasks.spotting {
                let spotted = spotted_long_batch(&items, &self.stamp)?;
                out.staged_parts.push(
                    self.stage_part(&spotted, PARQUET_SPOTTED_DIR, &part)
                        .await?,
                );
            }
        }
        if !errors.is_empty() {
            let errors = errors_batch(errors, &self.stamp)?;
            let fragments =
                write_fragments_uncommitted(&self.errors_uri, vec![errors.clone()]).await?;
            out.error_fragments = WrittenFragments::new(fragments);
            out.staged_parts
                .push(self.stage_part(&errors, PARQUET_ERRORS_DIR, &part).await?);
        }
        Ok(())
    }

    async fn stage_part(
        &self,
        batch: &RecordBatch,
        dir: &str,
        part: &str,
    ) -> vemo_operators::Result<(String, String)> {
        let staged = OutputLayout::staged_part(&self.stamp.job_id, dir, part);
        write_parquet(&self.output.child(&staged)?, batch).await?;
        Ok((staged, format!("{dir}/{part}")))
    }
}

/// WriteShard: each shard written (uncommitted), for the committer.
pub trait WriteShard<'scope> {
    fn write_shard(self, stage: WriteStage) -> Stream<'scope, u64, Vec<Written>>;
}

impl<'scope> WriteShard<'scope> for Shards<'scope> {
    fn write_shard(self, stage: WriteStage) -> Stream<'scope, u64, Vec<Written>> {
        map_named(self, "WriteShard", move |staged: Staged| {
            let shard = match &staged {
                Ok(shard) => shard.shard,
                Err(failed) => failed.shard,
            };
            vemo_operators::crash::point("before-write", &shard.to_string());
            staged.and_then(|shard| stage.write(shard))
        })
    }
}
