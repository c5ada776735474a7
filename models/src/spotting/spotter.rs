//! The spotting sub-module of a bundle: CRAFT finds text regions, easyocr's glue groups them
//! into lines and cuts grey crops, the recognizer reads them. One call per image gives the
//! words spotted in it, in easyocr `readtext`'s order, with their polygons and confidences.

use candle_core::Device;
use image::RgbImage;
use vemo_schemas::SpottedWord;

use super::crops::imread_grey;
use super::{GroupingConfig, boxes_to_crops};
use crate::Result;
use crate::bundle::Bundle;
use crate::models::craft::Craft;
use crate::models::recognizer::{Recognizer, read_characters};

/// What spotting one image gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Spotted {
    /// The words read, in reading order.
    Words(Vec<SpottedWord>),
    /// The detector found this many regions, more than the limit: none was read.
    TooManyRegions(usize),
}

/// Detector, grouping and recognizer, loaded once per worker.
pub struct Spotter {
    detector: Craft,
    grouping: GroupingConfig,
    recognizer: Recognizer,
}

impl Spotter {
    /// Loads the bundle's `[spotting]` sub-module.
    pub fn from_bundle(bundle: &Bundle, device: &Device) -> Result<Self> {
        let spec = bundle.spotting()?;
        let characters = read_characters(&bundle.file(&spec.characters))?;
        Ok(Self {
            detector: Craft::load(&bundle.file(&spec.detector), device)?,
            grouping: GroupingConfig::default(),
            recognizer: Recognizer::load(&bundle.file(&spec.recognizer), &characters, device)?,
        })
    }

    /// The recognizer alone (for word crops).
    pub fn recognizer(&self) -> &Recognizer {
        &self.recognizer
    }

    /// The words spotted in `image`; regions the recognizer reads as nothing are dropped.
    pub fn spot(&self, image: &RgbImage) -> Result<Vec<SpottedWord>> {
        match self.spot_within(image, usize::MAX)? {
            Spotted::Words(words) => Ok(words),
            Spotted::TooManyRegions(_) => Ok(Vec::new()),
        }
    }

    /// [`Self::spot`], unless the detector finds more than `max_regions` text regions: then
    /// nothing is cut or read (an image of noise can hold thousands of "regions").
    pub fn spot_within(&self, image: &RgbImage, max_regions: usize) -> Result<Spotted> {
        let detections = self.detector.detect(image)?;
        if detections.len() > max_regions {
            return Ok(Spotted::TooManyRegions(detections.len()));
        }
        let polygons: Vec<[f32; 8]> = detections
            .iter()
            .map(|d| {
                let p = d.polygon;
                [
                    p[0][0], p[0][1], p[1][0], p[1][1], p[2][0], p[2][1], p[3][0], p[3][1],
                ]
            })
            .collect();
        let (regions, images): (Vec<_>, Vec<_>) =
            boxes_to_crops(&polygons, &imread_grey(image), &self.grouping)
                .into_iter()
                .map(|c| (c.polygon, c.image))
                .unzip();
        let read = self.recognizer.recognize(&images)?;
        Ok(Spotted::Words(
            regions
                .into_iter()
                .zip(read)
                .filter_map(|(polygon, r)| {
                    let text = r.text.split_whitespace().collect::<Vec<_>>().join(" ");
                    (!text.is_empty()).then_some(SpottedWord {
                        text,
                        score: r.confidence,
                        polygon,
                    })
                })
                .collect(),
        ))
    }
}
