//! Candle models, one module per model family, and the towers built from them.

pub mod alignment;
pub mod bert;
pub mod clip;
pub mod clip_towers;
pub mod columns;
pub mod conse;
pub mod craft;
pub mod craft_geometry;
pub mod craft_postprocess;
pub mod efficientnet;
pub mod exit_heads;
pub mod image_encoder;
pub mod lstm;
pub mod ppocr;
pub mod recognizer;
pub mod text_encoder;

use candle_core::{D, DType, Tensor};

/// Divides each row of a (batch, dim) tensor by its L2 norm, in f32 whatever the input dtype.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let x = x.to_dtype(DType::F32)?;
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}

/// Layer norm computed in f32 whatever the dtype of `x` (bf16 towers: the mean and variance
/// need f32), returned in the dtype of `x`.
pub fn layer_norm_f32(layer: &candle_nn::LayerNorm, x: &Tensor) -> candle_core::Result<Tensor> {
    use candle_core::Module;
    match (x.dtype(), layer.bias()) {
        (DType::F32, _) | (_, None) => layer.forward(x),
        (dtype, Some(bias)) => candle_nn::ops::layer_norm(
            &x.to_dtype(DType::F32)?,
            &layer.weight().to_dtype(DType::F32)?,
            &bias.to_dtype(DType::F32)?,
            layer.eps() as f32,
        )?
        .to_dtype(dtype),
    }
}

/// Softmax over the last dimension, computed in f32, returned in the dtype of `scores`.
pub fn softmax_f32(scores: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(scores.dtype())
}
