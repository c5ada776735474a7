//! `_vemo/jobs/JOB.json`: what a run set out to do (written by process 0 when it starts), so
//! that `vemo status` can set the ledger's progress against a total.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use vemo_operators::store::Location;
use vemo_schemas::VEMO_DIR;

use crate::config::{ClusterConfig, IndexConfig};
use crate::incremental::DeltaReport;
use crate::plan::Plan;

/// A run's plan, as `vemo status` reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub input: String,
    pub started_at: String,
    pub manifest_items: usize,
    pub shard_size: usize,
    /// Shards of the whole manifest, and those this run had to do when it started.
    pub shards_total: usize,
    pub shards_to_do: usize,
    pub items_to_do: usize,
    pub processes: usize,
    pub workers_per_process: usize,
    /// An incremental run: its shards are keyed `JOB/...` and only they count toward it.
    #[serde(default)]
    pub incremental: bool,
}

impl JobRecord {
    /// The record of a run about to start.
    pub fn new(config: &IndexConfig, cluster: &ClusterConfig, plan: &Plan) -> Self {
        Self {
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
    ) -> Self {
        let counts = &report.counts;
        Self {
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

    /// Writes `_vemo/jobs/JOB.json` under `output`.
    pub async fn write(&self, output: &Location) -> vemo_operators::Result<()> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        let at = output.child(&format!("{VEMO_DIR}/jobs/{}.json", self.job_id))?;
        at.write(text).await
    }

    /// Every job record under `output`, oldest first.
    pub async fn read_all(output: &Location) -> vemo_operators::Result<Vec<Self>> {
        let dir = output.child(&format!("{VEMO_DIR}/jobs"))?;
        let mut records = Vec::new();
        for name in dir.list_names().await? {
            let bytes = dir.child(&name)?.read().await?;
            if let Ok(record) = serde_json::from_slice::<JobRecord>(&bytes) {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(records)
    }
}
