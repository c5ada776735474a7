//! `_vemo/jobs/JOB.json`: what a run set out to do (written by process 0 when it starts), so
//! that `vemo status` can set the ledger's progress against a total.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use vemo_operators::store::Location;
use vemo_schemas::VEMO_DIR;

use crate::config::{ClusterConfig, IndexConfig};
use crate::error::record_json;
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
        let at = output.child(&format!("{VEMO_DIR}/jobs/{}.json", self.job_id))?;
        let text = record_json(&at.uri, self, true)?;
        at.write(text.into_bytes()).await
    }

    /// Every job record under `output`, oldest first. None yet (no folder) is no error; a
    /// record that does not parse is [`vemo_operators::Error::Corrupt`].
    pub async fn read_all(output: &Location) -> vemo_operators::Result<Vec<Self>> {
        let dir = output.child(&format!("{VEMO_DIR}/jobs"))?;
        let mut records = Vec::new();
        for name in dir.list_names().await? {
            let at = dir.child(&name)?;
            let record = serde_json::from_slice::<JobRecord>(&at.read().await?).map_err(|e| {
                vemo_operators::Error::corrupt(
                    &at.uri,
                    format!(
                        "not a vemo job record ({e}). It only gives `vemo status` its totals: \
                         delete it (the next run of the job writes it again)"
                    ),
                )
            })?;
            records.push(record);
        }
        records.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use vemo_operators::store;

    use super::*;

    #[tokio::test]
    async fn an_unreadable_job_record_is_an_error_not_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = store::resolve(&dir.path().display().to_string()).expect("output");
        assert!(
            JobRecord::read_all(&output)
                .await
                .expect("none yet")
                .is_empty()
        );
        let record = output
            .child(&format!("{VEMO_DIR}/jobs/broken.json"))
            .expect("child");
        record
            .write(b"{\"job_id\": 7".to_vec())
            .await
            .expect("write");
        match JobRecord::read_all(&output).await {
            Err(e @ vemo_operators::Error::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains(&record.uri), "{message}");
                assert!(message.contains("delete it"), "{message}");
                assert!(!e.is_user_error());
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }
}
