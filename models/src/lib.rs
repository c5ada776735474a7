//! vemo-models: the candle models of a vemo job and what they need, without storage.
//!
//! Model bundles ([`bundle`], assembled from Python packages by [`assemble`], CLIP checkpoints
//! as bundles in [`hf_clip`], legacy PyTorch checkpoints in [`torch_legacy`], parameter counts
//! in [`parameters`]), the towers and heads ([`models`]), named entities ([`ner`]), ONNX graphs on candle ([`onnx`]), scene-text
//! spotting ([`spotting`]), image decoding and preprocessing ([`decode`], [`pixels`]) and the
//! device and precision a model runs in ([`device`]); for tests and smoke runs, a tiny bundle
//! of the same architectures with random weights ([`tiny_bundle`]). Callers use this crate
//! directly; the lean `vemo-bench` binary uses it alone, so it builds without Lance.

pub mod assemble;
pub mod bundle;
pub mod decode;
pub mod device;
mod error;
pub mod hf_clip;
pub mod models;
pub mod ner;
pub mod onnx;
pub mod parameters;
pub mod pixels;
pub mod spotting;
pub mod tiny_bundle;
pub mod torch_legacy;

pub use error::{Error, Result};
