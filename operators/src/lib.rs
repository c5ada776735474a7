//! vemo-operators: the runtime-agnostic batch operators of a vemo job.
//!
//! Everything here works on plain values and Arrow `RecordBatch`es and knows nothing of timely:
//! object-store access ([`store`]), manifests ([`manifest`]), image reads ([`images`]), model
//! bundles ([`bundle`], CLIP checkpoints as bundles in [`hf_clip`]), candle models ([`models`]), Arrow batch builders ([`batches`]), the
//! Lance and Parquet writers ([`lance_io`], [`parquet_io`]) and the legacy PyTorch checkpoint
//! reader ([`torch_legacy`]), vector indexes and k-nearest search ([`vector_search`]). The
//! pipeline crate wires them.

pub mod batches;
pub mod bundle;
pub mod crash;
mod error;
pub mod faults;
pub mod hf_clip;
pub mod images;
pub mod lance_commit;
pub mod lance_io;
pub mod manifest;
pub mod models;
pub mod ner;
pub mod parquet_io;
pub mod spotting;
pub mod store;
pub mod torch_legacy;
pub mod vector_search;

pub use error::{Error, Result};
