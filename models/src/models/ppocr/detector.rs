//! The PP-OCRv6 small text detector (DB): RapidOCR 3.10's `DetPreProcess`, the ONNX graph
//! run by [`OnnxGraph`], and [`super::db_boxes`] on its probability map.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::db_boxes::{DbConfig, ProbabilityMap, TextBox, text_boxes};
use crate::Result;
use crate::models::craft::resize_linear;
use crate::onnx::OnnxGraph;

/// RapidOCR's `limit_side_len` with `limit_type = min`: a short side under 736 pixels is
/// scaled up to 736.
pub const LIMIT_SIDE_LEN: f64 = 736.0;

/// The most pixels the detector's input may have (vemo's bound, not RapidOCR's): a larger
/// input is scaled down to fit, so an extreme aspect ratio cannot blow up the activations.
pub const MAX_INPUT_PIXELS: f64 = 2560.0 * 2560.0;

/// The detector's probability map for one image, at the input's resolution.
pub struct DetectorMap {
    pub values: Vec<f32>,
    pub width: usize,
    pub height: usize,
}

pub struct PpocrDetector {
    graph: OnnxGraph,
    device: Device,
    config: DbConfig,
}

impl PpocrDetector {
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            graph: OnnxGraph::load(path, device)?,
            device: device.clone(),
            config: DbConfig::default(),
        })
    }

    pub fn parameter_count(&self) -> usize {
        self.graph.parameter_count()
    }

    /// The boxes of `image` in its pixels, in reading order.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<TextBox>> {
        let Some(map) = self.probability_map(image)? else {
            return Ok(Vec::new());
        };
        let view = ProbabilityMap {
            values: &map.values,
            width: map.width,
            height: map.height,
        };
        Ok(text_boxes(
            &view,
            image.width() as usize,
            image.height() as usize,
            &self.config,
        ))
    }

    /// The text probability of each pixel of the resized input; `None` when the image is too
    /// small to resize (a side rounds to 0).
    pub fn probability_map(&self, image: &RgbImage) -> Result<Option<DetectorMap>> {
        let Some((width, height)) = input_size(image.width() as usize, image.height() as usize)
        else {
            return Ok(None);
        };
        let resized = resize_linear(image, width, height);
        let input = Tensor::from_vec(bgr_planes(&resized), (1, 3, height, width), &self.device)?;
        let map = self.graph.run(input)?;
        let (_, _, h, w) = map.dims4()?;
        Ok(Some(DetectorMap {
            values: map.flatten_all()?.to_vec1()?,
            width: w,
            height: h,
        }))
    }
}

/// `DetPreProcess.resize`: the short side scaled up to [`LIMIT_SIDE_LEN`] (never down), each
/// side truncated then rounded to a multiple of 32 (Python's `round`, ties to even); then,
/// beyond RapidOCR, scaled down to at most [`MAX_INPUT_PIXELS`].
pub fn input_size(width: usize, height: usize) -> Option<(usize, usize)> {
    let (w, h) = (width as f64, height as f64);
    let mut ratio = if w.min(h) < LIMIT_SIDE_LEN {
        LIMIT_SIDE_LEN / w.min(h)
    } else {
        1.0
    };
    if w * h * ratio * ratio > MAX_INPUT_PIXELS {
        ratio = (MAX_INPUT_PIXELS / (w * h)).sqrt();
    }
    let (rw, rh) = (scaled_side(w, ratio), scaled_side(h, ratio));
    (rw > 0 && rh > 0).then_some((rw, rh))
}

/// A side of `v` pixels scaled by `ratio` as RapidOCR's resizes scale it: truncated, then
/// rounded to a multiple of 32 (Python's `round`, ties to even); 0 when it rounds away.
pub fn scaled_side(v: f64, ratio: f64) -> usize {
    ((v * ratio).trunc() / 32.0).round_ties_even() as usize * 32
}

/// Channel-major pixels in BGR order (RapidOCR reads images with OpenCV), scaled to [-1, 1]
/// as `(x / 255 - 0.5) / 0.5`.
pub fn bgr_planes(image: &RgbImage) -> Vec<f32> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in image.pixels().enumerate() {
        for (c, &v) in px.0.iter().rev().enumerate() {
            out[c * plane + i] = ((f32::from(v) * (1.0 / 255.0)) as f64 - 0.5) as f32 / 0.5;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_sizes_follow_rapidocr() {
        // The golden scenes: page 384 x 191 -> 1472 x 736; scene 400 x 300 -> 992 x 736.
        assert_eq!(input_size(384, 191), Some((1472, 736)));
        assert_eq!(input_size(400, 300), Some((992, 736)));
        assert_eq!(input_size(1280, 720), Some((1312, 736)));
        // A long strip is capped by the pixel bound.
        let (w, h) = input_size(100, 20_000).expect("size");
        assert!((w * h) as f64 <= MAX_INPUT_PIXELS * 1.1, "{w} x {h}");
    }
}
