//! Candle models, one module per model family, and the towers built from them.

pub mod bert;
pub mod clip;
pub mod clip_towers;
pub mod conse;
pub mod craft;
pub mod craft_geometry;
pub mod craft_postprocess;
pub mod efficientnet;
pub mod exit_heads;
pub mod image_encoder;
pub mod lstm;
pub mod recognizer;
pub mod text_encoder;

use candle_core::{D, Tensor};

/// Divides each row of a (batch, dim) tensor by its L2 norm.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}
