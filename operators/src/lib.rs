//! vemo-operators: the runtime-agnostic batch operators of a vemo job.
//!
//! Everything here works on plain values and Arrow `RecordBatch`es and knows nothing of timely:
//! object-store access ([`store`]), manifests ([`manifest`]) and WebDataset shards
//! ([`webdataset`]), images at HTTP URLs ([`http_fetch`]), image reads ([`images`]) within
//! the job's [`limits`], items on their way through the stages as Arrow rows ([`rows`]), the
//! batches written from them ([`batches`]), the Lance and Parquet writers ([`lance_io`], [`parquet_io`]),
//! vector indexes and k-nearest search ([`vector_search`]) and character search
//! ([`char_search`]). The models (bundles, towers, heads, NER, spotting, device and precision)
//! are vemo-models'; the pipeline crate wires the two.

pub mod batches;
pub mod char_search;
pub mod crash;
mod error;
pub mod faults;
pub mod http_fetch;
pub mod images;
pub mod lance_commit;
pub mod lance_io;
pub mod limits;
pub mod manifest;
pub mod parquet_io;
pub mod rows;
pub mod store;
#[cfg(test)]
mod test_items;
pub mod vector_search;
pub mod webdataset;

pub use error::{Error, Result};
