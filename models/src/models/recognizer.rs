//! Scene-text recognition with easyocr's `english_g2` model: word crops in, text and
//! confidence out.
//!
//! A port of easyocr 1.7.2's recognizer as `Reader.recognize` runs it on CPU: each crop
//! prepared alone ([`prepare`]), the network ([`net`]), greedy CTC decoding ([`ctc`]), and a
//! second pass with stretched contrast over crops whose confidence is below 0.1, keeping the
//! better of the two. Crops with the same padded width share a batch, which gives the same
//! result as running them one by one.

pub mod ctc;
pub mod net;
pub mod prepare;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use image::GrayImage;

use crate::{Error, Result};
use net::RecognitionNet;
use prepare::{HEIGHT, Prepared};

/// Confidence below which easyocr retries a crop with stretched contrast (`contrast_ths`).
pub const CONTRAST_RETRY_BELOW: f32 = 0.1;
/// Target contrast of the retry (`adjust_contrast`).
const CONTRAST_TARGET: f64 = 0.5;
/// Crops per forward pass unless [`Recognizer::with_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// The text read in one crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    /// The decoded characters (empty when nothing was read).
    pub text: String,
    /// easyocr's confidence in [0, 1]: the winning probabilities of the non-blank steps,
    /// `prod(p) ^ (2 / sqrt(n))`.
    pub confidence: f32,
}

/// The english_g2 recognizer.
pub struct Recognizer {
    net: RecognitionNet,
    /// Class `k > 0` is `characters[k - 1]`; class 0 is the CTC blank.
    characters: Vec<char>,
    device: Device,
    batch_size: usize,
}

impl Recognizer {
    /// Loads the network from `weights` (safetensors with easyocr's state-dict names, the
    /// `module.` prefix stripped) and its alphabet, `characters` (96 for english_g2, in class
    /// order; see [`read_characters`]).
    pub fn load(weights: &Path, characters: &str, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(weights).map_err(|e| Error::Io {
            path: weights.display().to_string(),
            cause: e,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
        let net = RecognitionNet::load(vb)?;
        let characters: Vec<char> = characters.chars().collect();
        if characters.len() + 1 != net.classes()? {
            return Err(Error::Bundle {
                path: weights.display().to_string(),
                reason: format!(
                    "{} classes but {} characters (+ blank)",
                    net.classes()?,
                    characters.len()
                ),
            });
        }
        Ok(Self {
            net,
            characters,
            device: device.clone(),
            batch_size: DEFAULT_BATCH_SIZE,
        })
    }

    /// Sets how many crops of the same padded width go through the network at once.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Reads the text in each grey-level crop (any size; the crop of a word or a line, upright),
    /// in the order given. An empty crop reads as `""` with confidence 0.
    pub fn recognize(&self, crops: &[GrayImage]) -> Result<Vec<Recognition>> {
        let prepared: Vec<Option<Prepared>> = crops.iter().map(prepare::prepare).collect();
        let mut results = self.recognize_prepared(&prepared)?;
        let retry: Vec<usize> = (0..results.len())
            .filter(|&i| prepared[i].is_some() && results[i].confidence < CONTRAST_RETRY_BELOW)
            .collect();
        if retry.is_empty() {
            return Ok(results);
        }
        let stretched: Vec<Option<Prepared>> = retry
            .iter()
            .map(|&i| {
                prepared[i].as_ref().map(|p| Prepared {
                    image: prepare::adjust_contrast(&p.image, CONTRAST_TARGET),
                    padded_width: p.padded_width,
                })
            })
            .collect();
        let second = self.recognize_prepared(&stretched)?;
        for (&i, again) in retry.iter().zip(second) {
            // easyocr keeps the first pass only when it is strictly more confident.
            if results[i].confidence <= again.confidence {
                results[i] = again;
            }
        }
        Ok(results)
    }

    /// The network's logits for one crop prepared and padded alone, `steps x classes`
    /// row-major (`steps = padded_width / 4 - 1`), without the contrast retry.
    pub fn logits(&self, crop: &GrayImage) -> Result<(Vec<f32>, usize)> {
        let Some(prepared) = prepare::prepare(crop) else {
            return Ok((Vec::new(), 0));
        };
        let logits = self.forward(&[&prepared])?;
        let steps = logits.dim(1)?;
        Ok((logits.flatten_all()?.to_vec1::<f32>()?, steps))
    }

    /// Runs one pass over prepared crops, batching those of equal padded width.
    fn recognize_prepared(&self, prepared: &[Option<Prepared>]) -> Result<Vec<Recognition>> {
        let mut results = vec![
            Recognition {
                text: String::new(),
                confidence: 0.0,
            };
            prepared.len()
        ];
        let mut by_width: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, p) in prepared.iter().enumerate() {
            if let Some(p) = p {
                by_width.entry(p.padded_width).or_default().push(i);
            }
        }
        let classes = self.net.classes()?;
        for indices in by_width.values() {
            for chunk in indices.chunks(self.batch_size) {
                let crops: Vec<&Prepared> =
                    chunk.iter().filter_map(|&i| prepared[i].as_ref()).collect();
                let logits = self.forward(&crops)?.to_dtype(DType::F32)?;
                for (row, &i) in chunk.iter().enumerate() {
                    let values = logits.get(row)?.flatten_all()?.to_vec1::<f32>()?;
                    let (text, confidence) = ctc::decode_greedy(&values, classes, &self.characters);
                    results[i] = Recognition { text, confidence };
                }
            }
        }
        Ok(results)
    }

    /// Logits (batch, steps, classes) of crops that share a padded width.
    fn forward(&self, crops: &[&Prepared]) -> Result<Tensor> {
        let width = crops.first().map_or(HEIGHT, |p| p.padded_width);
        let mut input = Vec::with_capacity(crops.len() * HEIGHT * width);
        for crop in crops {
            prepare::normalize_pad(&crop.image, width, &mut input);
        }
        let x = Tensor::from_vec(input, (crops.len(), 1, HEIGHT, width), &self.device)?;
        Ok(self.net.forward(&x)?)
    }
}

/// Reads the alphabet file of a bundle (`english_g2_characters.txt`: the characters in class
/// order on one line, no separator); a trailing line break is dropped, spaces are kept.
pub fn read_characters(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        cause: e,
    })?;
    Ok(text
        .strip_suffix('\n')
        .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t))
        .to_string())
}
