//! The PP-OCRv6 small text recognizer (SVTR-style, CTC) as RapidOCR 3.10's `TextRecognizer`
//! runs it: crops sorted by aspect ratio, read six at a time, each resized to height 48 and
//! padded with zeros on the right to the batch's widest ratio (at least 320 / 48); greedy CTC
//! decoding over the characters stored in the model's metadata (`CTCLabelDecode`).

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::detector::bgr_planes;
use crate::models::craft::resize_linear;
use crate::onnx::OnnxGraph;
use crate::{Error, Result};

/// The recognizer's input height.
pub const HEIGHT: usize = 48;
/// RapidOCR's `rec_img_shape` width: no batch is narrower than 320 / 48 in aspect ratio.
const MIN_WIDTH: usize = 320;
/// Crops read together (RapidOCR's `rec_batch_num`).
pub const BATCH: usize = 6;
/// vemo's bound on the input width (RapidOCR has none): a longer line is squeezed to it.
pub const MAX_WIDTH: usize = HEIGHT * 64;

/// What the recognizer read in one crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub text: String,
    /// The mean probability of the kept characters (0 when none was kept), both rounded to
    /// 5 decimals as RapidOCR rounds them.
    pub score: f32,
}

pub struct PpocrRecognizer {
    graph: OnnxGraph,
    /// Class `k` is `classes[k]`; class 0 is the CTC blank.
    classes: Vec<String>,
    device: Device,
}

impl PpocrRecognizer {
    /// Loads the model; its classes are `blank`, the lines of its `character` metadata, then
    /// a space (`CTCLabelDecode.get_character`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let graph = OnnxGraph::load(path, device)?;
        let characters = graph.metadata("character").ok_or_else(|| Error::Bundle {
            path: path.display().to_string(),
            reason: "no `character` metadata: not a PP-OCR recognizer".into(),
        })?;
        let mut classes = vec!["blank".to_string()];
        classes.extend(characters.lines().map(str::to_string));
        classes.push(" ".into());
        Ok(Self {
            graph,
            classes,
            device: device.clone(),
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    pub fn parameter_count(&self) -> usize {
        self.graph.parameter_count()
    }

    /// Reads `crops` (in any order; the readings come back in the same order).
    pub fn recognize(&self, crops: &[RgbImage]) -> Result<Vec<Reading>> {
        let mut order: Vec<usize> = (0..crops.len()).collect();
        order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
        let mut out = vec![None; crops.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&RgbImage> = chunk.iter().map(|&i| &crops[i]).collect();
            for (&i, reading) in chunk.iter().zip(self.read_batch(&batch)?) {
                out[i] = Some(reading);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Reads one batch; an empty crop reads as nothing.
    fn read_batch(&self, crops: &[&RgbImage]) -> Result<Vec<Reading>> {
        let (probabilities, steps) = self.probabilities(crops)?;
        let classes = self.classes.len();
        Ok(probabilities
            .chunks(steps * classes)
            .map(|p| decode(p, classes, &self.classes))
            .collect())
    }

    /// The class probabilities of each crop of a batch (`crops x steps x classes`, row-major)
    /// and the number of steps.
    pub fn probabilities(&self, crops: &[&RgbImage]) -> Result<(Vec<f32>, usize)> {
        let max_ratio = crops
            .iter()
            .map(|c| ratio(c))
            .fold(MIN_WIDTH as f64 / HEIGHT as f64, f64::max);
        let width = ((HEIGHT as f64 * max_ratio) as usize).min(MAX_WIDTH);
        let mut input = Vec::with_capacity(crops.len() * 3 * HEIGHT * width);
        for crop in crops {
            input.extend(padded_input(crop, width));
        }
        let input = Tensor::from_vec(input, (crops.len(), 3, HEIGHT, width), &self.device)?;
        let output = self.graph.run(input)?;
        let (_, steps, classes) = output.dims3()?;
        if classes != self.classes.len() {
            return Err(Error::Model(candle_core::Error::Msg(format!(
                "the recognizer gives {classes} classes, its metadata lists {}",
                self.classes.len()
            ))));
        }
        Ok((output.flatten_all()?.to_vec1()?, steps))
    }
}

fn ratio(crop: &RgbImage) -> f64 {
    crop.width() as f64 / crop.height().max(1) as f64
}

/// `resize_norm_img`: `crop` resized to height 48 and width `min(ceil(48 * w / h), width)`,
/// BGR in [-1, 1], zeros to `width`.
fn padded_input(crop: &RgbImage, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * HEIGHT * width];
    if crop.width() == 0 || crop.height() == 0 {
        return out;
    }
    let resized_width = ((HEIGHT as f64 * ratio(crop)).ceil() as usize).clamp(1, width);
    let resized = resize_linear(crop, resized_width, HEIGHT);
    let planes = bgr_planes(&resized);
    for c in 0..3 {
        for y in 0..HEIGHT {
            let src = &planes[(c * HEIGHT + y) * resized_width..][..resized_width];
            out[(c * HEIGHT + y) * width..][..resized_width].copy_from_slice(src);
        }
    }
    out
}

/// `CTCLabelDecode`: the most likely class of each step; repeats merged, blanks dropped;
/// the score is the mean of the kept steps' probabilities, each rounded to 5 decimals.
pub fn decode(probabilities: &[f32], classes: usize, names: &[String]) -> Reading {
    let mut text = String::new();
    let mut kept = Vec::new();
    let mut previous = None;
    for row in probabilities.chunks_exact(classes) {
        let (best, p) = row
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |(bi, bp), (i, &v)| {
                if v > bp { (i, v) } else { (bi, bp) }
            });
        if best != 0 && previous != Some(best) {
            text.push_str(&names[best]);
            kept.push((f64::from(p) * 1e5).round_ties_even() / 1e5);
        }
        previous = Some(best);
    }
    let score = if kept.is_empty() {
        0.0
    } else {
        kept.iter().sum::<f64>() / kept.len() as f64
    };
    Reading {
        text,
        score: ((score * 1e5).round_ties_even() / 1e5) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_merges_repeats_drops_blanks_and_averages() {
        let names: Vec<String> = ["blank", "a", "b"].iter().map(|s| s.to_string()).collect();
        let rows = [
            [0.1, 0.8, 0.1],
            [0.1, 0.6, 0.3],
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.0, 0.0, 1.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let r = decode(&flat, 3, &names);
        assert_eq!(r.text, "aab");
        assert!((r.score - (0.8 + 0.7 + 1.0) / 3.0).abs() < 1e-5, "{r:?}");
        let blank = decode(&[1.0, 0.0, 0.0], 3, &names);
        assert_eq!((blank.text.as_str(), blank.score), ("", 0.0));
    }
}
