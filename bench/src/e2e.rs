//! Decode -> encode from JPEG bytes: CPU threads decode, resize, crop and normalise whole
//! batches while the device encodes the previous ones (a bounded queue of ready batches: double
//! buffering), and the same decode without the model, to show which side bounds the rate.

use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use vemo_models::pixels::{PixelNorm, classifier_crop, decode_pixels, decode_reduced};

use crate::synthetic::Tower;

/// CLIP's pixel normalisation.
pub const CLIP_NORM: PixelNorm = PixelNorm::MeanStd {
    mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
    std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
};

/// What to decode and how.
pub struct Workload<'a> {
    /// Encoded images, used in turn until `count` have been decoded.
    pub images: &'a [Vec<u8>],
    pub count: usize,
    pub batch: usize,
    /// Decoding threads.
    pub threads: usize,
    /// Decode JPEGs at a reduced DCT scale ([`decode_reduced`]).
    pub reduced: bool,
    /// Short side before the centre crop, and the crop.
    pub resize: u32,
    pub crop: u32,
}

impl Workload<'_> {
    fn batches(&self) -> usize {
        self.count.div_ceil(self.batch.max(1))
    }

    /// Batch `b` as normalised (n, 3, crop, crop) pixels.
    fn decode_batch(&self, b: usize) -> Result<(usize, Vec<f32>)> {
        let start = b * self.batch;
        let n = self.batch.min(self.count - start);
        let side = self.crop as usize;
        let mut pixels = Vec::with_capacity(n * 3 * side * side);
        for i in start..start + n {
            let bytes = &self.images[i % self.images.len()];
            let image = match self.reduced {
                true => decode_reduced(bytes, self.resize),
                false => decode_pixels(bytes),
            }
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("image {}", i % self.images.len()))?;
            pixels.extend(CLIP_NORM.apply(&classifier_crop(&image, self.resize, self.crop)));
        }
        Ok((n, pixels))
    }

    /// Images/s through the decode threads into `sink` (called on this thread, in the order
    /// batches become ready; at most `threads` batches wait for it).
    pub fn run(&self, mut sink: impl FnMut(usize, Vec<f32>) -> Result<()>) -> Result<f64> {
        let threads = self.threads.max(1);
        let (tx, rx) = sync_channel::<Result<(usize, Vec<f32>)>>(threads);
        let start = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            for t in 0..threads {
                let tx = tx.clone();
                scope.spawn(move || {
                    for b in (t..self.batches()).step_by(threads) {
                        if tx.send(self.decode_batch(b)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            for ready in rx {
                let (n, pixels) = ready?;
                sink(n, pixels)?;
            }
            Ok(())
        })?;
        Ok(self.count as f64 / start.elapsed().as_secs_f64())
    }
}

/// Images/s decoded, resized and normalised, with no model.
pub fn decode_only(work: &Workload) -> Result<f64> {
    work.run(|_, _| Ok(()))
}

/// Images/s from JPEG bytes to unit embeddings with `tower` on `device`.
pub fn end_to_end(work: &Workload, tower: &Tower, device: &Device) -> Result<f64> {
    let side = work.crop as usize;
    let rate = work.run(|n, pixels| {
        let input = Tensor::from_vec(pixels, (n, 3, side, side), device)?;
        tower.forward(&input)?;
        Ok(())
    })?;
    device.synchronize()?;
    Ok(rate)
}

/// Mean and max |full - reduced| grey levels of the crops of `images` (the cost of
/// [`decode_reduced`] in pixels).
pub fn reduced_decode_error(images: &[Vec<u8>], resize: u32, crop: u32) -> Result<(f64, u8)> {
    let (mut sum, mut max, mut n) = (0f64, 0u8, 0usize);
    for bytes in images {
        let full = classifier_crop(
            &decode_pixels(bytes).map_err(anyhow::Error::msg)?,
            resize,
            crop,
        );
        let reduced = classifier_crop(
            &decode_reduced(bytes, resize).map_err(anyhow::Error::msg)?,
            resize,
            crop,
        );
        for (a, b) in full.iter().zip(reduced.iter()) {
            let d = a.abs_diff(*b);
            sum += f64::from(d);
            max = max.max(d);
            n += 1;
        }
    }
    Ok((sum / n.max(1) as f64, max))
}

/// Synthetic photo-like JPEGs (smooth gradients, edges and noise at quality 90), `width` x
/// `height`, for machines without a corpus.
pub fn synthetic_jpegs(count: usize, width: u32, height: u32) -> Result<Vec<Vec<u8>>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    (0..count)
        .map(|k| {
            let (fx, fy) = (
                rng.random_range(0.005f32..0.05),
                rng.random_range(0.005f32..0.05),
            );
            let mut noise = rand::rngs::StdRng::seed_from_u64(k as u64);
            let image = image::RgbImage::from_fn(width, height, |x, y| {
                let (x, y) = (x as f32, y as f32);
                let band = ((x * fx).sin() * (y * fy).cos() * 100.0) as i32;
                let edge = if (x as u32 / 40 + y as u32 / 30 + k as u32).is_multiple_of(5) {
                    60
                } else {
                    0
                };
                let n: i32 = noise.random_range(-12..12);
                let px = |base: i32| (base + band + edge + n).clamp(0, 255) as u8;
                image::Rgb([px(120), px(100), px(90)])
            });
            let mut out = std::io::Cursor::new(Vec::new());
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
                .encode_image(&image)?;
            Ok(out.into_inner())
        })
        .collect()
}
