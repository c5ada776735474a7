//! CommitEpoch: worker 0 gathers every shard written in an epoch and, once the frontier has
//! passed the epoch, commits the epoch's `items` fragments in one Lance transaction, then its
//! `errors` fragments, then publishes the epoch's staged Parquet parts.
//!
//! A shard that failed is left out whole: its fragments stay uncommitted (invisible) and its
//! items are processed again by the next run, so no id is half-written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use serde::Serialize;
use tokio::runtime::Runtime;
use vemo_operators::lance_io::{commit_fragments, fragments_from_json};
use vemo_operators::store::Location;
use vemo_schemas::errors_schema;

use crate::process::ShardWritten;
use crate::progress::Progress;

/// Totals of what the committer has committed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitStats {
    pub shards: u64,
    pub items: usize,
    pub errors: usize,
    pub items_version: Option<u64>,
    pub errors_version: Option<u64>,
    pub failures: Vec<String>,
}

/// The committer's state, owned by worker 0.
pub struct Committer {
    pub runtime: Arc<Runtime>,
    pub output: Location,
    pub items_uri: String,
    pub errors_uri: String,
    pub items_schema: SchemaRef,
    pub pending: BTreeMap<u64, Vec<ShardWritten>>,
    pub stats: CommitStats,
    pub progress: Progress,
    pub processed_shards: u64,
}

impl Committer {
    /// Buffers a written shard of `epoch`.
    pub fn accept(&mut self, epoch: u64, shard: ShardWritten) {
        self.pending.entry(epoch).or_default().push(shard);
    }

    /// Commits every pending epoch for which `is_complete` holds, oldest first.
    pub fn commit_complete(&mut self, is_complete: impl Fn(u64) -> bool) {
        while let Some((&epoch, _)) = self.pending.first_key_value() {
            if !is_complete(epoch) {
                break;
            }
            let shards = self.pending.remove(&epoch).unwrap_or_default();
            self.commit_epoch(epoch, shards);
        }
    }

    fn commit_epoch(&mut self, epoch: u64, shards: Vec<ShardWritten>) {
        let (ok, failed): (Vec<_>, Vec<_>) = shards.into_iter().partition(|s| s.failure.is_none());
        for shard in &failed {
            let reason = shard.failure.clone().unwrap_or_default();
            tracing::error!(epoch, shard = shard.shard, %reason, "Shard failed; left for the next run.");
            self.stats.failures.push(reason);
        }
        // items first, then errors, then the Parquet parts: each step counts only once done,
        // and a failed step stops the later ones (a rerun redoes what is missing).
        let result = self.runtime.block_on(async {
            let items = fragments_from_json(ok.iter().map(|s| s.item_fragments.as_str()))?;
            if !items.is_empty() {
                let version = commit_fragments(&self.items_uri, &self.items_schema, items).await?;
                self.stats.items_version = Some(version);
                self.stats.items += ok.iter().map(|s| s.items).sum::<usize>();
            }
            let errors = fragments_from_json(ok.iter().map(|s| s.error_fragments.as_str()))?;
            if !errors.is_empty() {
                let version = commit_fragments(&self.errors_uri, &errors_schema(), errors).await?;
                self.stats.errors_version = Some(version);
                self.stats.errors += ok.iter().map(|s| s.errors).sum::<usize>();
            }
            self.stats.shards += ok.len() as u64;
            for (staged, published) in ok.iter().flat_map(|s| &s.staged_parts) {
                let target = self.output.child(published)?;
                self.output.child(staged)?.rename_to(&target).await?;
            }
            Ok::<_, vemo_operators::Error>(())
        });
        match result {
            Ok(()) => tracing::debug!(epoch, shards = ok.len(), "Epoch committed."),
            Err(e) => {
                tracing::error!(epoch, error = %e, "Epoch commit failed.");
                self.stats
                    .failures
                    .push(format!("epoch {epoch}: commit: {e}"));
            }
        }
        self.processed_shards += (ok.len() + failed.len()) as u64;
        self.progress
            .update(self.processed_shards, self.stats.items, self.stats.errors);
    }

    /// After the last epoch: makes sure both datasets exist (a run where every item failed
    /// still leaves an `items` table to open) and returns their versions.
    pub fn finish(&mut self) -> vemo_operators::Result<(u64, u64)> {
        self.progress.finish();
        self.runtime.block_on(async {
            let items = commit_fragments(&self.items_uri, &self.items_schema, Vec::new()).await?;
            let errors = commit_fragments(&self.errors_uri, &errors_schema(), Vec::new()).await?;
            Ok((items, errors))
        })
    }
}
