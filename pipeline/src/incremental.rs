//! The planning half of an incremental run, on every worker: read this worker's share of the
//! corpus (hashing its images) and of the output, compute the delta with differential dataflow
//! ([`crate::delta`]), cut the ids this worker owns into shards
//! ([`crate::plan::delta_shards`]) and share the totals, so that every worker knows the whole
//! plan's size and whether any worker failed to read its share.

use std::collections::BTreeMap;
use std::sync::Arc;

use lance::Dataset;
use serde::{Deserialize, Serialize};
use timely::worker::Worker;
use tokio::runtime::Runtime;
use vemo_operators::images::ImageReader;
use vemo_operators::lance_io::scan_share;
use vemo_schemas::{
    COL_BUNDLE, COL_CAPTION, COL_CONTENT_HASH, COL_ID, COL_IMAGE, COL_METADATA, ManifestEntry,
};

use crate::delta::{
    Change, DeltaCounts, DeltaInput, RowSource, all_gather, compute_delta, fingerprint,
};
use crate::plan::{Plan, Shard, delta_shards};
use crate::{Error, Result};

/// Ids of each change a plan shows.
const SAMPLE: usize = 5;

/// What an incremental run works from: the corpus, and the output as this process opened it.
#[derive(Clone)]
pub struct DeltaSource {
    pub entries: Arc<Vec<ManifestEntry>>,
    pub items: Option<Dataset>,
    pub errors: Option<Dataset>,
    /// The bundle of this run (part of every fingerprint).
    pub bundle_id: String,
    pub read_concurrency: usize,
    pub shard_size: usize,
    pub job_id: String,
}

/// The delta of a run, over all workers: what `vemo plan` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaReport {
    #[serde(flatten)]
    pub counts: DeltaCounts,
    /// Shards the run commits.
    pub shards: usize,
    /// The `items` version the delta was computed against (0: none yet).
    pub items_version: u64,
    /// A few ids of each change but `unchanged`, by change.
    pub samples: BTreeMap<Change, Vec<String>>,
    /// Columns of the job that `items` lacks, added to every row before the delta runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns_to_add: Vec<String>,
    /// Workers that could not read their share (the run stops: a partial corpus would read as
    /// removals).
    pub failures: Vec<String>,
}

impl DeltaReport {
    /// The delta of a plan that is not incremental: its items are added, the rest skipped.
    pub fn of_plan(plan: &Plan) -> DeltaReport {
        let mut report = DeltaReport {
            shards: plan.pending_shards(),
            ..Default::default()
        };
        report.counts.added = plan.items();
        report.counts.unchanged = plan.skipped;
        let first = plan.shards.iter().flat_map(|s| &s.entries).take(5);
        report
            .samples
            .insert(Change::Added, first.map(|e| e.id.clone()).collect());
        report
    }

    fn merge(&mut self, other: DeltaReport) {
        self.counts.merge(&other.counts);
        self.shards += other.shards;
        self.items_version = self.items_version.max(other.items_version);
        for (change, ids) in other.samples {
            let mine = self.samples.entry(change).or_default();
            mine.extend(ids);
            mine.sort();
            mine.truncate(SAMPLE);
        }
        self.failures.extend(other.failures);
    }
}

/// Plans this worker's part of an incremental run. Returns its shards and the whole run's
/// report; fails on every worker when any worker could not read its share.
pub fn plan_delta(
    worker: &mut Worker,
    runtime: &Runtime,
    reader: &ImageReader,
    source: &DeltaSource,
) -> Result<(Vec<Shard>, DeltaReport)> {
    let (index, peers) = (worker.index(), worker.peers());
    let mut mine = DeltaReport {
        items_version: source.items.as_ref().map_or(0, |d| d.version().version),
        ..Default::default()
    };
    let share = runtime
        .block_on(read_share(reader, source, index, peers))
        .unwrap_or_else(|e| {
            mine.failures.push(format!("worker {index}: {e}"));
            DeltaInput::default()
        });
    let delta = compute_delta(worker, share);
    // Keys name the job and the version planned against: a later run with the same job id
    // (a fixed one in cluster mode) and the same work never finds its shards already done.
    let prefix = format!("{}/v{}", source.job_id, mine.items_version);
    let shards = delta_shards(&delta, index, peers, source.shard_size, &prefix);
    mine.counts = DeltaCounts::of(delta.iter().map(|d| &d.change));
    mine.shards = shards.len();
    for item in delta.iter().filter(|d| d.change != Change::Unchanged) {
        let ids = mine.samples.entry(item.change).or_default();
        if ids.len() < SAMPLE {
            ids.push(item.id.clone());
        }
    }
    // Every worker must reach `all_gather`, so nothing returns before it. Serialising a
    // report does not fail (its maps have string keys); should it, the error text goes out in
    // its place and every worker fails on it below, as on a report from a process running
    // another release of vemo.
    let text = serde_json::to_string(&mine).unwrap_or_else(|e| e.to_string());
    let mut report = DeltaReport::default();
    for text in all_gather(worker, text) {
        match serde_json::from_str(&text) {
            Ok(theirs) => report.merge(theirs),
            Err(e) => report.failures.push(format!(
                "a worker's delta report is unreadable ({e}): do all processes run the same \
                 release of vemo?"
            )),
        }
    }
    match report.failures.is_empty() {
        true => Ok((shards, report)),
        false => Err(Error::Plan(report.failures.join("; "))),
    }
}

/// This worker's share: every `peers`-th manifest row (its image hashed) and every `peers`-th
/// fragment of `items` and `errors`.
async fn read_share(
    reader: &ImageReader,
    source: &DeltaSource,
    index: usize,
    peers: usize,
) -> vemo_operators::Result<DeltaInput> {
    let entries: Vec<ManifestEntry> = source
        .entries
        .iter()
        .skip(index)
        .step_by(peers.max(1))
        .cloned()
        .collect();
    let hashes = reader.hash_all(&entries, source.read_concurrency).await;
    let bundle = source.bundle_id.as_str();
    let corpus = entries
        .into_iter()
        .zip(hashes)
        .map(|(entry, hash)| {
            let fp = fingerprint(RowSource {
                content_hash: &hash,
                image: &entry.image,
                caption: entry.caption.as_deref(),
                metadata: entry.metadata.as_deref(),
                bundle,
            });
            (fp, entry)
        })
        .collect();
    let mut share = DeltaInput {
        corpus,
        ..Default::default()
    };
    if let Some(items) = &source.items {
        let columns = [
            COL_ID,
            COL_CONTENT_HASH,
            COL_IMAGE,
            COL_CAPTION,
            COL_METADATA,
            COL_BUNDLE,
        ];
        for row in scan_share(items, &columns, index, peers).await? {
            let [id, hash, image, caption, metadata, bundle] = <[Option<String>; 6]>::try_from(row)
                .map_err(|row| {
                    vemo_operators::Error::from(arrow_schema::ArrowError::SchemaError(format!(
                        "a scan of {columns:?} gave {} values",
                        row.len()
                    )))
                })?;
            let fp = fingerprint(RowSource {
                content_hash: hash.as_deref().unwrap_or_default(),
                image: image.as_deref().unwrap_or_default(),
                caption: caption.as_deref(),
                metadata: metadata.as_deref(),
                bundle: bundle.as_deref().unwrap_or_default(),
            });
            share.indexed.push((id.unwrap_or_default(), fp));
        }
    }
    if let Some(errors) = &source.errors {
        for row in scan_share(errors, &[COL_ID], index, peers).await? {
            share.errors.extend(row.into_iter().flatten());
        }
    }
    Ok(share)
}
