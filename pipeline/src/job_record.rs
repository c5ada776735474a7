//! The [`JobRecord`] of a run about to start, from its configuration and plan (the record and
//! where it is stored are vemo-output's).

use chrono::Utc;
use vemo_output::jobs::JobRecord;

use crate::config::{ClusterConfig, IndexConfig};
use crate::incremental::DeltaReport;
use crate::plan::Plan;

/// The record of a run about to start.
pub fn planned(config: &IndexConfig, cluster: &ClusterConfig, plan: &Plan) -> JobRecord {
    JobRecord {
        job_id: config.job_id.clone(),
        input: config.input.clone(),
        started_at: Utc::now().to_rfc3339(),
        manifest_items: plan.manifest_items,
        shard_size: config.shard_size,
        shards_total: plan.shards.len(),
        shards_to_do: plan.pending_shards(),
        items_to_do: plan.items(),
        processes: cluster.processes,
        workers_per_process: cluster.workers,
        incremental: false,
    }
}

/// The record of an incremental run about to start, from its delta.
pub fn for_delta(
    config: &IndexConfig,
    workers_per_process: usize,
    peers: usize,
    report: &DeltaReport,
) -> JobRecord {
    let counts = &report.counts;
    JobRecord {
        job_id: config.job_id.clone(),
        input: config.input.clone(),
        started_at: Utc::now().to_rfc3339(),
        manifest_items: counts.added + counts.changed + counts.retried + counts.unchanged,
        shard_size: config.shard_size,
        shards_total: report.shards,
        shards_to_do: report.shards,
        items_to_do: counts.to_encode(),
        processes: peers / workers_per_process.max(1),
        workers_per_process,
        incremental: true,
    }
}
