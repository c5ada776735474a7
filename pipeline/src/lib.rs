//! vemo-pipeline: the timely dataflow of a vemo job, and the only crate that names timely.
//!
//! A run plans shards from the manifest ([`plan`]), gives each shard to one worker, runs the
//! stages on it ([`stages`]; [`dataflow`] lists them in order and wires them for threads and
//! processes), and sends what was written to worker 0, which commits every epoch in one
//! conditional Lance transaction once the frontier has passed it ([`commit`]), recording the
//! shards in the ledger ([`vemo_output::ledger`]) so that reruns and concurrent runs never commit a shard twice. Each
//! worker runs its models on its own device (`models`).
//!
//! On an output that holds rows, a run is incremental: the workers compute the delta between
//! the corpus and the output with differential dataflow ([`delta`], `incremental`), encode only
//! the added, changed and failed items, and each commit deletes the old rows of the ids it
//! replaces as it appends their new ones.

mod backfill;
mod commit;
mod config;
mod contain;
mod dataflow;
pub mod delta;
mod error;
mod incremental;
mod job_record;
pub mod metrics;
mod models;
mod plan;
mod progress;
mod stages;

pub use config::{ClusterConfig, IndexConfig};
pub use dataflow::{RunSummary, plan_index, run_index};
pub use error::{Error, Result};
pub use incremental::DeltaReport;
pub use plan::{Plan, Shard, plan_shards, shard_key};
