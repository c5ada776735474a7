//! vemo-output: what a vemo output holds besides its rows, and how it is read and kept
//! consistent; no models and no timely, so `vemo status` and `vemo inspect` need neither.
//!
//! - [`layout`]: [`OutputLayout`], every path under the output root (`_vemo/...`).
//! - [`ledger`]: which shards are committed, kept in the `items` commits themselves, with the
//!   `errors` rows and Parquet parts that follow each commit, ledger snapshots and markers.
//! - [`jobs`]: job records, what a run set out to do.
//! - [`pending`]: pending-column records, a column addition in progress.
//! - [`indexes`]: the vector, label-list and full-text indexes of `items` after a run.
//!
//! Errors ([`Error`]) say which record is [`Error::Corrupt`] and what to do, or that commits
//! lost to other writers ([`Error::Contention`]).

mod error;
pub mod indexes;
pub mod jobs;
pub mod layout;
pub mod ledger;
pub mod pending;

pub use error::{Error, Result, record_json};
pub use layout::OutputLayout;
