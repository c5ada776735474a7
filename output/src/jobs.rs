//! `_vemo/jobs/JOB.json`: what a run set out to do (written by process 0 when it starts), so
//! that `vemo status` can set the ledger's progress against a total; and
//! `_vemo/runs/JOB.json`, what it did.

use serde::{Deserialize, Serialize};
use vemo_operators::store::Location;

use crate::error::record_json;
use crate::layout::OutputLayout;
use crate::{Error, Result};

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
    /// Writes `_vemo/jobs/JOB.json` under `output`.
    pub async fn write(&self, output: &Location) -> Result<()> {
        let at = OutputLayout::of(output).job_record(&self.job_id)?;
        let text = record_json(&at.uri, self, true)?;
        Ok(at.write(text.into_bytes()).await?)
    }

    /// Every job record under `output`, oldest first. None yet (no folder) is no error; a
    /// record that does not parse is [`Error::Corrupt`].
    pub async fn read_all(output: &Location) -> Result<Vec<Self>> {
        let dir = OutputLayout::of(output).jobs()?;
        let mut records = Vec::new();
        for name in dir.list_names().await? {
            let at = dir.child(&name)?;
            let record = serde_json::from_slice::<JobRecord>(&at.read().await?).map_err(|e| {
                Error::corrupt(
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

/// Writes what run `job_id` did (`_vemo/runs/JOB.json`) under `output`.
pub async fn write_run_summary<T: Serialize>(
    output: &Location,
    job_id: &str,
    summary: &T,
) -> Result<()> {
    let at = OutputLayout::of(output).run_summary(job_id)?;
    let text = record_json(&at.uri, summary, true)?;
    Ok(at.write(text.into_bytes()).await?)
}

#[cfg(test)]
mod tests {
    use vemo_operators::store;

    use super::*;

    #[tokio::test]
    async fn job_records_write_and_read_back_oldest_first() -> Result<()> {
        let output = store::resolve("memory://job-records/out")?;
        let record = |job_id: &str, started_at: &str| JobRecord {
            job_id: job_id.into(),
            input: "memory://corpus/manifest.jsonl".into(),
            started_at: started_at.into(),
            manifest_items: 10,
            shard_size: 4,
            shards_total: 3,
            shards_to_do: 2,
            items_to_do: 6,
            processes: 1,
            workers_per_process: 2,
            incremental: true,
        };
        record("b", "2026-12-03T00:00:02Z").write(&output).await?;
        record("a", "2026-12-03T00:00:01Z").write(&output).await?;
        let read = JobRecord::read_all(&output).await?;
        let ids: Vec<&str> = read.iter().map(|r| r.job_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            serde_json::to_value(&read[1]).ok(),
            serde_json::to_value(record("b", "2026-12-03T00:00:02Z")).ok()
        );
        Ok(())
    }

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
        let record = output.child("_vemo/jobs/broken.json").expect("child");
        record
            .write(b"{\"job_id\": 7".to_vec())
            .await
            .expect("write");
        match JobRecord::read_all(&output).await {
            Err(e @ Error::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains(&record.uri), "{message}");
                assert!(message.contains("delete it"), "{message}");
                assert!(!e.is_user_error());
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }
}
