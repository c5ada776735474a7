//! ONNX models run on candle: a reader for the file ([`proto`]), the graph as typed nodes
//! ([`graph`]), rewritten into fused nodes at load ([`fuse`]), and the operators it
//! evaluates ([`ops`]).
//!
//! Why an evaluator of vemo's own and not `candle-onnx`: the PP-OCR graphs need
//! `HardSigmoid`, `GlobalAveragePool` and `ConvTranspose`, which `candle-onnx` 0.11 lacks, and
//! their depthwise convolutions (grouped, one group a channel) would run through candle's
//! per-group loop; here they run on [`vemo_kernels::depthwise_conv2d_padded`], and the other
//! convolutions on [`vemo_kernels::conv2d`] with their bias and activation fused in. The evaluator
//! covers the operators of the graphs vemo ships (and says which one it lacks otherwise);
//! attributes are parsed and checked once, when the model loads.

mod fuse;
pub mod graph;
mod ops;
pub mod proto;

pub use graph::{OnnxGraph, Value};
