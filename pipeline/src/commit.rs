//! CommitEpoch: worker 0 gathers the shards written in an epoch and, once the frontier has
//! passed the epoch, commits them through the [`Ledger`]: their `items` rows in one conditional
//! Lance commit that also records them as done, then their `errors` rows, then their Parquet
//! parts.
//!
//! A shard that failed is left out whole: its fragments stay uncommitted (invisible) and the
//! next run redoes it. A shard another run committed meanwhile is dropped, not committed twice.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use serde::Serialize;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Operator;
use tokio::runtime::Runtime;
use vemo_operators::crash;
use vemo_operators::store::Location;

use crate::progress::Progress;
use crate::stages::{ShardFailed, ShardWritten, Written};
use vemo_output::ledger::{Ledger, ReadyShard, ShardRecord};

/// Totals of what the committer has committed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommitStats {
    pub shards: u64,
    pub items: usize,
    pub errors: usize,
    /// Items that went through the text encoder (committed or not).
    pub encoded: usize,
    /// `items` rows deleted: the earlier rows of changed and removed ids.
    pub deleted: u64,
    /// Shards another run had committed first (dropped here).
    pub already_committed: u64,
    pub items_version: Option<u64>,
    pub errors_version: Option<u64>,
    pub failures: Vec<String>,
}

/// The committer's state, owned by worker 0.
pub struct Committer {
    pub runtime: Arc<Runtime>,
    pub output: Location,
    pub job_id: String,
    pub items_schema: SchemaRef,
    pub ledger: Ledger,
    /// Workers in the cluster, and per process (to record who wrote a shard).
    pub peers: usize,
    pub workers_per_process: usize,
    pub pending: BTreeMap<u64, Vec<Written>>,
    pub stats: CommitStats,
    pub progress: Progress,
    pub processed_shards: u64,
}

impl Committer {
    /// Buffers a written (or failed) shard of `epoch`.
    pub fn accept(&mut self, epoch: u64, shard: Written) {
        self.pending.entry(epoch).or_default().push(shard);
    }

    /// Commits every pending epoch for which `is_complete` holds, oldest first. Then, if a
    /// cluster's worth of shards (one per worker) is still waiting on an incomplete epoch (a
    /// slow worker), commits those too: a straggler delays only its own shard's commit.
    pub fn commit_complete(&mut self, is_complete: impl Fn(u64) -> bool) {
        while let Some((&epoch, _)) = self.pending.first_key_value() {
            if !is_complete(epoch) {
                break;
            }
            let shards = self.pending.remove(&epoch).unwrap_or_default();
            self.commit_epoch(epoch, shards);
        }
        let waiting: usize = self.pending.values().map(Vec::len).sum();
        if waiting >= self.peers.max(1) {
            let first = self.pending.keys().next().copied().unwrap_or_default();
            let shards = std::mem::take(&mut self.pending).into_values().flatten();
            self.commit_epoch(first, shards.collect());
        }
    }

    fn record(&self, shard: &ShardWritten) -> ShardRecord {
        let worker = shard.shard as usize % self.peers.max(1);
        ShardRecord {
            key: shard.key.clone(),
            items: shard.items,
            errors: shard.errors,
            worker,
            process: worker / self.workers_per_process.max(1),
            error_fragments: shard.error_fragments.clone(),
            parquet: shard.staged_parts.clone(),
            replaces: shard.replaces.clone(),
        }
    }

    fn commit_epoch(&mut self, epoch: u64, shards: Vec<Written>) {
        let encoded = shards.iter().map(|s| match s {
            Ok(written) => written.encoded,
            Err(failed) => failed.encoded,
        });
        self.stats.encoded += encoded.sum::<usize>();
        let (mut ok, mut failed): (Vec<ShardWritten>, Vec<ShardFailed>) = (vec![], vec![]);
        for shard in shards {
            match shard {
                Ok(written) => ok.push(written),
                Err(shard) => failed.push(shard),
            }
        }
        for shard in &failed {
            let reason = &shard.reason;
            tracing::error!(epoch, shard = shard.shard, %reason, "Shard failed; left for the next run.");
            self.stats.failures.push(reason.clone());
        }
        let ready: Vec<ReadyShard> = ok
            .iter()
            .map(|s| ReadyShard {
                record: self.record(s),
                item_fragments: s.item_fragments.clone(),
            })
            .collect();
        for shard in &ok {
            crash::point("before-commit", &shard.shard.to_string());
        }
        // items (with the ledger) first, then errors, then the Parquet parts: each later step is
        // rolled forward from the ledger if it fails here, by this run or the next.
        let runtime = self.runtime.clone();
        let result = runtime.block_on(async {
            let committed = self
                .ledger
                .commit_shards(&self.job_id, &self.items_schema, ready)
                .await?;
            for shard in &ok {
                crash::point("mid-commit", &shard.shard.to_string());
            }
            if let Some(version) = committed.version {
                self.stats.items_version = Some(version);
            }
            self.stats.deleted += committed.deleted;
            for key in &committed.already {
                tracing::warn!(%key, "Shard already committed by another run; dropped.");
            }
            self.stats.already_committed += committed.already.len() as u64;
            for key in &committed.landed {
                if let Some((_, shard)) = self.ledger.shards.get(key) {
                    self.stats.shards += 1;
                    self.stats.items += shard.items;
                    self.stats.errors += shard.errors;
                }
            }
            if let Some(version) = self.ledger.commit_errors().await? {
                self.stats.errors_version = Some(version);
            }
            self.ledger.publish_parquet(&self.output).await?;
            Ok::<_, vemo_output::Error>(())
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

    /// After the last epoch: rolls forward what an earlier failure left (errors, Parquet),
    /// prunes the Parquet rows of replaced ids,
    /// makes sure both datasets exist (a run where every item failed still leaves an `items`
    /// table to open) and returns their versions.
    pub fn finish(&mut self) -> vemo_output::Result<(u64, u64)> {
        self.progress.finish();
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            self.ledger.commit_errors().await?;
            self.ledger.publish_parquet(&self.output).await?;
            let pruned = self.ledger.prune_parquet(&self.output).await?;
            tracing::debug!(pruned, "Replaced rows pruned from the Parquet tables.");
            let items = self.ledger.ensure_items(&self.items_schema).await?;
            let errors = self.ledger.ensure_errors().await?;
            if self.ledger.write_snapshot(&self.output).await? {
                tracing::debug!("Ledger snapshot written.");
            }
            Ok((items, errors))
        })
    }
}

/// CommitEpoch: routes every written shard to worker 0, whose committer commits each epoch
/// once the frontier has passed it (the other workers pass `None`). Passes the shard ids on,
/// so that a probe can follow the commits.
pub trait CommitEpochs<'scope> {
    fn commit_epochs(
        self,
        committer: Option<Rc<RefCell<Committer>>>,
    ) -> Stream<'scope, u64, Vec<u64>>;
}

impl<'scope> CommitEpochs<'scope> for Stream<'scope, u64, Vec<Written>> {
    fn commit_epochs(
        self,
        committer: Option<Rc<RefCell<Committer>>>,
    ) -> Stream<'scope, u64, Vec<u64>> {
        self.unary_frontier(
            Exchange::new(|_: &Written| 0),
            "CommitEpoch",
            move |_, _| {
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        // The epoch is the time the owning worker sent the shard at.
                        let epoch = cap.least().copied().unwrap_or_default();
                        let mut session = output.session(&cap);
                        for container in data {
                            for shard in container.drain(..) {
                                session.give(match &shard {
                                    Ok(written) => written.shard,
                                    Err(failed) => failed.shard,
                                });
                                if let Some(committer) = &committer {
                                    committer.borrow_mut().accept(epoch, shard);
                                }
                            }
                        }
                    });
                    if let Some(committer) = &committer {
                        committer
                            .borrow_mut()
                            .commit_complete(|epoch| !frontier.less_equal(&epoch));
                    }
                }
            },
        )
        .container::<Vec<u64>>()
    }
}
