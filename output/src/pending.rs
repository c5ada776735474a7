//! Pending-column records (`_vemo/columns/JOB.json`): a column addition in progress, written
//! before its Lance commit so that a crash between the commit and the publication of its
//! Parquet parts can be finished ([`roll_forward`]) by the next run.

use serde::{Deserialize, Serialize};
use vemo_operators::lance_io::open_if_exists;
use vemo_operators::store::Location;

use crate::error::record_json;
use crate::layout::OutputLayout;
use crate::ledger::publish_parts;
use crate::{Error, Result};

/// A column addition in progress: its columns and its staged Parquet parts (staged path,
/// published path, both relative to the output root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingColumns {
    pub columns: Vec<String>,
    pub parts: Vec<(String, String)>,
}

impl PendingColumns {
    /// Stores this record as job `job_id`'s addition in progress.
    pub async fn write(&self, output: &Location, job_id: &str) -> Result<()> {
        let record = record_of(output, job_id)?;
        record
            .write(record_json(&record.uri, self, false)?.into_bytes())
            .await?;
        Ok(())
    }

    /// Publishes the staged parts (the columns landed) and deletes the record.
    pub async fn publish(&self, output: &Location, job_id: &str) -> Result<()> {
        publish_parts(output, &self.parts).await?;
        Ok(record_of(output, job_id)?.delete().await?)
    }

    /// Deletes the staged parts (the columns did not land) and the record.
    pub async fn discard(&self, output: &Location, job_id: &str) -> Result<()> {
        self.discard_parts(output).await?;
        Ok(record_of(output, job_id)?.delete().await?)
    }

    /// The record `name` at `uri`.
    fn parse(uri: &str, name: &str, bytes: &[u8]) -> Result<Self> {
        let job = name.strip_suffix(".json").unwrap_or(name);
        let staging = OutputLayout::staging(job);
        serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(
                uri,
                format!(
                    "not a vemo record of columns being added ({e}), so its staged Parquet \
                     parts (`part-{job}-columns-*` under `{staging}`) can be \
                     neither published nor discarded. If `items` has the job's new columns, \
                     move each part to its path without that prefix (into `parquet/`), \
                     otherwise delete them; then delete this record"
                ),
            )
        })
    }

    async fn discard_parts(&self, output: &Location) -> Result<()> {
        for (staged, _) in &self.parts {
            output.child(staged)?.delete().await?;
        }
        Ok(())
    }
}

fn record_of(output: &Location, job_id: &str) -> Result<Location> {
    OutputLayout::of(output).pending_record(job_id)
}

/// Finishes the column additions a crash interrupted: publishes the Parquet parts of those
/// whose columns `items` has (the Lance commit landed), discards the others. Returns the
/// additions finished or discarded. A record that does not parse is [`Error::Corrupt`] and
/// stays where it is, with its staged parts: neither publishing nor discarding them is safe
/// without knowing its columns.
pub async fn roll_forward(output: &Location) -> Result<usize> {
    let layout = OutputLayout::of(output);
    let dir = layout.pending_columns()?;
    let names = dir.list_names().await?;
    if names.is_empty() {
        return Ok(0);
    }
    let have: Vec<String> = match open_if_exists(&layout.items_uri()).await? {
        Some(items) => items
            .schema()
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect(),
        None => Vec::new(),
    };
    for name in &names {
        let record = dir.child(name)?;
        let pending = PendingColumns::parse(&record.uri, name, &record.read().await?)?;
        match pending.columns.iter().all(|c| have.contains(c)) {
            true => {
                publish_parts(output, &pending.parts).await?;
            }
            false => pending.discard_parts(output).await?,
        }
        record.delete().await?;
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use vemo_operators::store;
    use vemo_schemas::PARQUET_EMBEDDINGS_DIR;

    use super::*;

    fn staged_part() -> String {
        OutputLayout::staged_part("job", PARQUET_EMBEDDINGS_DIR, "part-job-columns-0.parquet")
    }

    #[tokio::test]
    async fn an_unreadable_pending_record_is_an_error_not_nothing_to_do() -> Result<()> {
        let output = store::resolve("memory://pending-corrupt/out")?;
        let record = record_of(&output, "job")?;
        record.write(b"\xde\xad{[".to_vec()).await?;
        let part = output.child(&staged_part())?;
        part.write(b"staged".to_vec()).await?;
        match roll_forward(&output).await {
            Err(e @ Error::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains(&record.uri), "{message}");
                assert!(message.contains("staging/job/"), "{message}");
                assert!(!e.is_user_error());
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
        assert!(record.exists().await?, "record deleted");
        assert!(part.exists().await?, "staged part deleted");
        Ok(())
    }

    #[tokio::test]
    async fn a_pending_record_of_columns_items_lacks_is_discarded() -> Result<()> {
        // The readable case still rolls forward: no `items`, so the addition never landed.
        let output = store::resolve("memory://pending-discard/out")?;
        let part = output.child(&staged_part())?;
        part.write(b"staged".to_vec()).await?;
        let pending = PendingColumns {
            columns: vec!["text_emb_e3".into()],
            parts: vec![(
                staged_part(),
                format!("{PARQUET_EMBEDDINGS_DIR}/part-job-columns-0.parquet"),
            )],
        };
        pending.write(&output, "job").await?;
        assert!(record_of(&output, "job")?.exists().await?);
        assert_eq!(roll_forward(&output).await?, 1);
        assert!(!record_of(&output, "job")?.exists().await?);
        assert!(!part.exists().await?);
        Ok(())
    }

    #[tokio::test]
    async fn a_published_record_moves_its_parts_and_goes() -> Result<()> {
        let output = store::resolve("memory://pending-publish/out")?;
        let published = format!("{PARQUET_EMBEDDINGS_DIR}/part-job-columns-0.parquet");
        output
            .child(&staged_part())?
            .write(b"rows".to_vec())
            .await?;
        let pending = PendingColumns {
            columns: vec!["text_emb_e3".into()],
            parts: vec![(staged_part(), published.clone())],
        };
        pending.write(&output, "job").await?;
        pending.publish(&output, "job").await?;
        assert_eq!(&output.child(&published)?.read().await?[..], b"rows");
        assert!(!output.child(&staged_part())?.exists().await?);
        assert!(!record_of(&output, "job")?.exists().await?);
        Ok(())
    }
}
