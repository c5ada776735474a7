//! vemo-models: the candle models of a vemo job and what they need, without storage.
//!
//! Model bundles ([`bundle`], assembled from Python packages by [`assemble`], CLIP checkpoints
//! as bundles in [`hf_clip`], legacy PyTorch checkpoints in [`torch_legacy`], parameter counts
//! in [`parameters`]), the towers and heads ([`models`]), named entities ([`ner`]), scene-text
//! spotting ([`spotting`]), image preprocessing ([`pixels`]) and the device and precision a
//! model runs in ([`device`]). vemo-operators re-exports the bundle and model modules; the lean
//! `vemo-bench` binary uses this crate alone, so it builds without Lance.

pub mod assemble;
pub mod bundle;
pub mod decode;
pub mod device;
mod error;
pub mod hf_clip;
pub mod models;
pub mod ner;
pub mod parameters;
pub mod pixels;
pub mod spotting;
pub mod torch_legacy;

pub use error::{Error, Result};
