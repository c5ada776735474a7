//! Candle models, one module per model family, and the towers built from them.

pub mod bert;
pub mod efficientnet;
pub mod text_encoder;
