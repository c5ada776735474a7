//! vemo-operators: the runtime-agnostic batch operators of a vemo job.
//!
//! Everything here works on plain values and Arrow `RecordBatch`es and knows nothing of timely:
//! object-store access ([`store`]), manifests ([`manifest`]), image reads ([`images`]), model
//! bundles ([`bundle`]), candle models ([`models`]), Arrow batch builders ([`batches`]) and the
//! Lance and Parquet writers ([`lance_io`], [`parquet_io`]). The pipeline crate wires them.

pub mod batches;
pub mod bundle;
mod error;
pub mod images;
pub mod lance_io;
pub mod manifest;
pub mod models;
pub mod parquet_io;
pub mod store;

pub use error::{Error, Result};
