//! The spotting sub-module of a bundle, one of two modules ([`SpottingModule`]): PP-OCRv6
//! small as RapidOCR runs it, or easyocr's CRAFT, line grouping and english_g2. One call per
//! image gives the words spotted in it, in the module's reading order, with their polygons
//! (image pixels, clockwise from the top-left) and confidences.

use candle_core::Device;
use image::RgbImage;
use vemo_schemas::SpottedWord;

use super::crops::imread_grey;
use super::{GroupingConfig, boxes_to_crops};
use crate::bundle::{Bundle, SpottingModule};
use crate::models::craft::Craft;
use crate::models::ppocr::PpocrSpotter;
use crate::models::recognizer::{Recognizer, read_characters};
use crate::{Error, Result};

/// What spotting one image gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Spotted {
    /// The words read, in reading order.
    Words(Vec<SpottedWord>),
    /// The detector found this many regions, more than the limit: none was read.
    TooManyRegions(usize),
}

/// A spotting module, loaded once per worker.
pub enum Spotter {
    Ppocr(Box<PpocrSpotter>),
    Easyocr(Box<Easyocr>),
}

/// easyocr's chain: CRAFT, its line grouping and grey crops, english_g2.
pub struct Easyocr {
    detector: Craft,
    grouping: GroupingConfig,
    recognizer: Recognizer,
}

impl Spotter {
    /// Loads the bundle's `[spotting]` module.
    pub fn from_bundle(bundle: &Bundle, device: &Device) -> Result<Self> {
        Self::load_module(bundle, bundle.spotting()?.module, device)
    }

    /// Loads `module` from the bundle (which must have its files).
    pub fn load_module(bundle: &Bundle, module: SpottingModule, device: &Device) -> Result<Self> {
        let spec = bundle.spotting()?;
        let missing = || Error::Bundle {
            path: bundle.root.display().to_string(),
            reason: format!("no [spotting.{module}] table (run `vemo models pull`)"),
        };
        Ok(match module {
            SpottingModule::Ppocr => {
                let p = spec.ppocr.as_ref().ok_or_else(missing)?;
                Spotter::Ppocr(Box::new(PpocrSpotter::load(
                    &bundle.file(&p.detector),
                    &bundle.file(&p.recognizer),
                    device,
                )?))
            }
            SpottingModule::Easyocr => {
                let e = spec.easyocr.as_ref().ok_or_else(missing)?;
                let characters = read_characters(&bundle.file(&e.characters))?;
                Spotter::Easyocr(Box::new(Easyocr {
                    detector: Craft::load(&bundle.file(&e.detector), device)?,
                    grouping: GroupingConfig::default(),
                    recognizer: Recognizer::load(&bundle.file(&e.recognizer), &characters, device)?,
                }))
            }
        })
    }

    /// Reads word crops (already cut out of their scenes): the text of each, in order.
    pub fn read_crops(&self, crops: &[RgbImage]) -> Result<Vec<String>> {
        Ok(match self {
            Spotter::Ppocr(p) => p
                .recognizer
                .recognize(crops)?
                .into_iter()
                .map(|r| r.text)
                .collect(),
            Spotter::Easyocr(e) => {
                let grey: Vec<_> = crops.iter().map(imread_grey).collect();
                e.recognizer
                    .recognize(&grey)?
                    .into_iter()
                    .map(|r| r.text)
                    .collect()
            }
        })
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
        match self {
            Spotter::Ppocr(p) => {
                let regions = p.regions(image)?;
                if regions.boxes.len() > max_regions {
                    return Ok(Spotted::TooManyRegions(regions.boxes.len()));
                }
                Ok(Spotted::Words(p.read(regions)?))
            }
            Spotter::Easyocr(e) => e.spot_within(image, max_regions),
        }
    }
}

impl Easyocr {
    fn spot_within(&self, image: &RgbImage, max_regions: usize) -> Result<Spotted> {
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
