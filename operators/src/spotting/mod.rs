//! Scene-text spotting around the detector and recognizer models: polygon geometry, ICDAR
//! 2015 ground truth and figures, and matching character queries against spotted words.

pub mod geometry;
pub mod icdar;
pub mod metrics;
pub mod search;
pub mod text_match;
