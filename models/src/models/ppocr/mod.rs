//! PP-OCRv6 small (PaddleOCR, Apache-2.0) as RapidOCR 3.10 runs it: the DB text detector
//! ([`detector`], [`db_boxes`]), crops of its boxes ([`crop`]) and the CTC recognizer
//! ([`recognizer`]), on the ONNX files of the `rapidocr` wheel evaluated by [`crate::onnx`].
//! [`PpocrSpotter`] chains them with RapidOCR's whole-image steps: the image kept within
//! 30..2000 pixels a side, a wide or low image padded above and below, readings under 0.5 or
//! empty dropped.

pub mod crop;
pub mod db_boxes;
pub mod detector;
pub mod recognizer;

use std::path::Path;

use candle_core::Device;
use image::RgbImage;
use vemo_schemas::SpottedWord;

use crate::Result;
use crate::models::craft::resize_linear;
use db_boxes::TextBox;
use detector::PpocrDetector;
use recognizer::PpocrRecognizer;

/// RapidOCR's `Global` settings.
const MIN_SIDE: f64 = 30.0;
const MAX_SIDE: f64 = 2000.0;
const WIDTH_HEIGHT_RATIO: f64 = 8.0;
const MIN_HEIGHT: usize = 30;
const TEXT_SCORE: f32 = 0.5;
/// The most crop pixels cut from one image for the recognizer (vemo's bound: 64 M, 192 MB).
const MAX_CROP_TOTAL: usize = 64 << 20;

pub struct PpocrSpotter {
    pub detector: PpocrDetector,
    pub recognizer: PpocrRecognizer,
}

/// What the detector found in an image: its boxes, in the image's pixels, and where to cut
/// them (the prepared image and the boxes in its pixels). Crops are cut only when read.
pub struct Regions {
    pub boxes: Vec<TextBox>,
    prepared: Prepared,
    cut_at: Vec<TextBox>,
}

impl PpocrSpotter {
    pub fn load(detector: &Path, recognizer: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            detector: PpocrDetector::load(detector, device)?,
            recognizer: PpocrRecognizer::load(recognizer, device)?,
        })
    }

    /// Detects the text boxes of `image`.
    pub fn regions(&self, image: &RgbImage) -> Result<Regions> {
        let prepared = Prepared::new(image);
        let cut_at = self.detector.detect(&prepared.image)?;
        let boxes = cut_at
            .iter()
            .map(|b| prepared.to_original(b, image.width(), image.height()))
            .collect();
        Ok(Regions {
            boxes,
            prepared,
            cut_at,
        })
    }

    /// Cuts and reads the regions; a reading that is empty or scores under 0.5 is dropped.
    /// Crops are cut while their pixels add up to at most [`MAX_CROP_TOTAL`]; regions past
    /// it (only a hostile image's nested rings get there) are read as nothing.
    pub fn read(&self, regions: Regions) -> Result<Vec<SpottedWord>> {
        let mut budget = MAX_CROP_TOTAL;
        let (boxes, crops): (Vec<_>, Vec<_>) = regions
            .boxes
            .into_iter()
            .zip(&regions.cut_at)
            .filter_map(|(b, at)| {
                let crop = crop::rotate_crop(&regions.prepared.image, &at.corners, budget)?;
                budget -= (crop.width() * crop.height()) as usize;
                Some((b, crop))
            })
            .unzip();
        let readings = self.recognizer.recognize(&crops)?;
        Ok(boxes
            .into_iter()
            .zip(readings)
            .filter(|(_, r)| !r.text.trim().is_empty() && r.score >= TEXT_SCORE)
            .map(|(b, r)| SpottedWord {
                text: r.text.split_whitespace().collect::<Vec<_>>().join(" "),
                score: r.score,
                polygon: b.corners.as_flattened().try_into().expect("8 values"),
            })
            .collect())
    }
}

/// The image RapidOCR detects on: resized into 30..2000 pixels a side when outside it, then
/// padded with black rows when low or wide; and how to map boxes back.
struct Prepared {
    image: RgbImage,
    ratio: (f64, f64),
    top: usize,
}

impl Prepared {
    fn new(image: &RgbImage) -> Self {
        let (w, h) = (image.width() as f64, image.height() as f64);
        let side = |v: f64, r: f64| detector::scaled_side(v, r).max(32) as u32;
        let resize_to = if w.max(h) > MAX_SIDE {
            Some(MAX_SIDE / w.max(h))
        } else if w.min(h) < MIN_SIDE {
            Some(MIN_SIDE / w.min(h))
        } else {
            None
        };
        let (resized, ratio) = match resize_to {
            Some(r) => {
                let (rw, rh) = (side(w, r), side(h, r));
                let img = resize_linear(image, rw as usize, rh as usize);
                (img, (w / f64::from(rw), h / f64::from(rh)))
            }
            None => (image.clone(), (1.0, 1.0)),
        };
        let (rw, rh) = (resized.width() as usize, resized.height() as usize);
        if rh > MIN_HEIGHT && (rw as f64 / rh as f64) <= WIDTH_HEIGHT_RATIO {
            return Self {
                image: resized,
                ratio,
                top: 0,
            };
        }
        let new_h = ((rw as f64 / WIDTH_HEIGHT_RATIO) as usize).max(MIN_HEIGHT) * 2;
        let top = new_h.abs_diff(rh) / 2;
        let mut padded = RgbImage::new(rw as u32, (rh + 2 * top) as u32);
        image::imageops::replace(&mut padded, &resized, 0, top as i64);
        Self {
            image: padded,
            ratio,
            top,
        }
    }

    /// `map_boxes_to_original`: padding removed, scaled back, clipped to the image.
    fn to_original(&self, b: &TextBox, width: u32, height: u32) -> TextBox {
        let corners = b.corners.map(|[x, y]| {
            let x = (f64::from(x) * self.ratio.0).clamp(0.0, f64::from(width));
            let y = ((f64::from(y) - self.top as f64) * self.ratio.1).clamp(0.0, f64::from(height));
            [x as f32, y as f32]
        });
        TextBox {
            corners,
            score: b.score,
        }
    }
}
