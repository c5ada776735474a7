//! [`OutputLayout`]: every path of a vemo output, in one place.
//!
//! ```text
//! OUTPUT/
//!   items.lance/  errors.lance/        the rows (Lance; the ledger is in items' commits)
//!   parquet/{embeddings,entities,spotted,errors}/part-*.parquet
//!   _vemo/jobs/JOB.json                what a run set out to do (`vemo status`'s totals)
//!   _vemo/runs/JOB.json                what a run did (its summary)
//!   _vemo/columns/JOB.json             a column addition in progress (pending-column record)
//!   _vemo/staging/JOB/DIR/PART         Parquet parts written, published after their commit
//!   _vemo/ledger/snapshots/vN.json     the ledger as of items version N (a read shortcut)
//!   _vemo/ledger/{pruned,published}/vN markers: version N's Parquet work is done
//! ```

use vemo_operators::store::{self, Location};
use vemo_schemas::{ERRORS_DATASET, ITEMS_DATASET, VEMO_DIR};

use crate::Result;

/// The paths of the output rooted at a [`Location`].
#[derive(Debug, Clone, Copy)]
pub struct OutputLayout<'a> {
    root: &'a Location,
}

impl<'a> OutputLayout<'a> {
    /// The layout of the output at `root`.
    pub fn of(root: &'a Location) -> Self {
        Self { root }
    }

    /// The output root.
    pub fn root(&self) -> &'a Location {
        self.root
    }

    /// URI of the `items` Lance dataset.
    pub fn items_uri(&self) -> String {
        store::join(&self.root.uri, ITEMS_DATASET)
    }

    /// URI of the `errors` Lance dataset.
    pub fn errors_uri(&self) -> String {
        store::join(&self.root.uri, ERRORS_DATASET)
    }

    /// Folder of the job records.
    pub fn jobs(&self) -> Result<Location> {
        self.under("jobs")
    }

    /// The record of job `job_id`.
    pub fn job_record(&self, job_id: &str) -> Result<Location> {
        self.under(&format!("jobs/{job_id}.json"))
    }

    /// Folder of the run summaries.
    pub fn runs(&self) -> Result<Location> {
        self.under("runs")
    }

    /// The summary of run `job_id`.
    pub fn run_summary(&self, job_id: &str) -> Result<Location> {
        self.under(&format!("runs/{job_id}.json"))
    }

    /// Folder of the records of column additions in progress.
    pub fn pending_columns(&self) -> Result<Location> {
        self.under("columns")
    }

    /// The record of job `job_id`'s column addition in progress.
    pub fn pending_record(&self, job_id: &str) -> Result<Location> {
        self.under(&format!("columns/{job_id}.json"))
    }

    /// Folder of the ledger snapshots.
    pub fn snapshots(&self) -> Result<Location> {
        self.under("ledger/snapshots")
    }

    /// The snapshot of the ledger as of `items` version `version`.
    pub fn snapshot(&self, version: u64) -> Result<Location> {
        self.under(&format!("ledger/snapshots/v{version:012}.json"))
    }

    /// Folder of the markers of versions whose replaced Parquet rows are pruned.
    pub fn pruned_markers(&self) -> Result<Location> {
        self.under("ledger/pruned")
    }

    /// Folder of the markers of versions whose staged Parquet parts are published.
    pub fn published_markers(&self) -> Result<Location> {
        self.under("ledger/published")
    }

    /// Path, relative to the root, where job `job_id` stages Parquet part `part` of the
    /// folder `dir` (e.g. `parquet/embeddings`) until its commit lands.
    pub fn staged_part(job_id: &str, dir: &str, part: &str) -> String {
        format!("{VEMO_DIR}/staging/{job_id}/{dir}/{part}")
    }

    /// Path, relative to the root, of the folder a job stages parts in.
    pub fn staging(job_id: &str) -> String {
        format!("{VEMO_DIR}/staging/{job_id}/")
    }

    fn under(&self, path: &str) -> Result<Location> {
        Ok(self.root.child(&format!("{VEMO_DIR}/{path}"))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_lives_under_vemo() -> Result<()> {
        let root = store::resolve("memory://layout-test/out")?;
        let layout = OutputLayout::of(&root);
        assert_eq!(layout.items_uri(), "memory://layout-test/out/items.lance");
        assert_eq!(layout.errors_uri(), "memory://layout-test/out/errors.lance");
        for (at, path) in [
            (layout.job_record("j")?, "_vemo/jobs/j.json"),
            (layout.run_summary("j")?, "_vemo/runs/j.json"),
            (layout.pending_columns()?, "_vemo/columns"),
            (layout.pending_record("j")?, "_vemo/columns/j.json"),
            (
                layout.snapshot(7)?,
                "_vemo/ledger/snapshots/v000000000007.json",
            ),
            (layout.pruned_markers()?, "_vemo/ledger/pruned"),
            (layout.published_markers()?, "_vemo/ledger/published"),
        ] {
            assert_eq!(at.uri, format!("memory://layout-test/out/{path}"));
        }
        assert_eq!(
            OutputLayout::staged_part("j", "parquet/errors", "part-1.parquet"),
            "_vemo/staging/j/parquet/errors/part-1.parquet"
        );
        Ok(())
    }
}
