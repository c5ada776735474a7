//! Image preprocessing for the image towers: decoding bytes into pixels (bounded, in
//! [`crate::decode`]), the short-side resize and centre crop, and the pixel normalisations the
//! towers were trained with.

use std::io::Cursor;

pub use crate::decode::{ImageLimits, decode_pixels, decode_within};

/// Decodes like [`decode_pixels`], but a JPEG at the smallest DCT scale (1/8, 1/4, 1/2 or 1)
/// whose short side is still at least `min_side`: a 640x480 photo for a 224 crop decodes at
/// 320x240, a quarter of the pixels, most of the decode time saved. The resize that follows
/// sees a sharper-filtered input than from the full image (the DCT scaling is a box filter),
/// so crops differ by a few grey levels. Anything else (or a JPEG this decoder rejects, or one
/// past the default [`ImageLimits`]) goes through [`decode_pixels`], which refuses it.
pub fn decode_reduced(bytes: &[u8], min_side: u32) -> Result<image::DynamicImage, String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_pixels(bytes);
    }
    match decode_jpeg_scaled(bytes, min_side) {
        Some(image) => Ok(image),
        None => decode_pixels(bytes),
    }
}

fn decode_jpeg_scaled(bytes: &[u8], min_side: u32) -> Option<image::DynamicImage> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    // The declared size is checked before jpeg-decoder allocates for it.
    ImageLimits::default().check_size(w, h).ok()?;
    let short = u64::from(w.min(h).max(1));
    let request = |side: u32| {
        let side = u64::from(side);
        (side * u64::from(min_side)).div_ceil(short).min(side) as u16
    };
    decoder.scale(request(w), request(h)).ok()?;
    let pixels = decoder.decode().ok()?;
    let info = decoder.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            image::RgbImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            image::GrayImage::from_raw(w, h, pixels).map(image::DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}

/// Classifier preprocessing as EfficientNet-Lite was trained: short side resized to `resize`
/// (bicubic), centre crop `crop` x `crop`, TF-Lite normalisation (pixel - 127) / 128.
/// Returns the pixels as channel-major (3, crop, crop) f32.
pub fn classifier_input(image: &image::DynamicImage, resize: u32, crop: u32) -> Vec<f32> {
    normalize_crop(&classifier_crop(image, resize, crop))
}

/// TF-Lite normalisation of an RGB crop: (pixel - 127) / 128, channel-major (3, h, w).
pub fn normalize_crop(crop: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    let mut out = vec![0f32; 3 * w * h];
    for (x, y, pixel) in crop.enumerate_pixels() {
        for c in 0..3 {
            out[c * w * h + y as usize * w + x as usize] = (f32::from(pixel[c]) - 127.0) / 128.0;
        }
    }
    out
}

/// How an image tower normalises its input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PixelNorm {
    /// TF-Lite's (pixel - 127) / 128, as EfficientNet-Lite was trained.
    TfLite,
    /// (pixel / 255 - mean) / std per channel, as CLIP and most torchvision models.
    MeanStd {
        /// Per-channel mean of 0..1 pixels (R, G, B).
        mean: [f32; 3],
        /// Per-channel standard deviation of 0..1 pixels (R, G, B).
        std: [f32; 3],
    },
}

impl PixelNorm {
    /// Normalises an RGB crop into channel-major (3, h, w) f32.
    pub fn apply(&self, crop: &image::RgbImage) -> Vec<f32> {
        let (mean, std) = match self {
            PixelNorm::TfLite => return normalize_crop(crop),
            PixelNorm::MeanStd { mean, std } => (mean, std),
        };
        let (w, h) = (crop.width() as usize, crop.height() as usize);
        let mut out = vec![0f32; 3 * w * h];
        for (x, y, pixel) in crop.enumerate_pixels() {
            for c in 0..3 {
                out[c * w * h + y as usize * w + x as usize] =
                    (f32::from(pixel[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        out
    }
}

/// Ten views of an image for training exit heads: the short side resized to `resize`, crops
/// of `crop` x `crop` at the centre and the four corners, each also mirrored.
pub fn training_views(image: &image::DynamicImage, resize: u32, crop: u32) -> Vec<image::RgbImage> {
    let resized = resized_short_side(image, resize, crop);
    let (w, h) = resized.dimensions();
    let corners = [
        ((w - crop) / 2, (h - crop) / 2),
        (0, 0),
        (w - crop, 0),
        (0, h - crop),
        (w - crop, h - crop),
    ];
    corners
        .iter()
        .flat_map(|&(x, y)| {
            let view = image::imageops::crop_imm(&resized, x, y, crop, crop).to_image();
            let mirrored = image::imageops::flip_horizontal(&view);
            [view, mirrored]
        })
        .collect()
}

/// Longest side of a resized image, in multiples of the short side it is resized to: the
/// decoder's aspect limit refuses images past it first; this only keeps a direct caller from
/// asking for a 268-million-pixel row (a 1,048,576 x 1 image resized to a short side of 256).
const MAX_RESIZED_ASPECT: u32 = 64;

fn resized_short_side(image: &image::DynamicImage, resize: u32, crop: u32) -> image::RgbImage {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let scale = resize as f64 / w.min(h) as f64;
    let cap = resize.max(crop).saturating_mul(MAX_RESIZED_ASPECT);
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).clamp(crop, cap),
        ((h as f64 * scale).round() as u32).clamp(crop, cap),
    );
    image
        .resize_exact(nw, nh, image::imageops::FilterType::CatmullRom)
        .to_rgb8()
}

/// The short side resized to `resize` (bicubic, Catmull-Rom), then a centre crop `crop` x `crop`.
pub fn classifier_crop(image: &image::DynamicImage, resize: u32, crop: u32) -> image::RgbImage {
    let resized = resized_short_side(image, resize, crop);
    let (nw, nh) = resized.dimensions();
    let (left, top) = ((nw - crop) / 2, (nh - crop) / 2);
    image::imageops::crop_imm(&resized, left, top, crop, crop).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_decode_keeps_the_short_side_above_the_crop() {
        let photo = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut jpeg = Cursor::new(Vec::new());
        photo
            .write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .expect("encode jpeg");
        let jpeg = jpeg.into_inner();
        let half = decode_reduced(&jpeg, 224).expect("reduced");
        assert_eq!((half.width(), half.height()), (320, 240));
        let full = decode_reduced(&jpeg, 256).expect("full");
        assert_eq!((full.width(), full.height()), (640, 480));
        let eighth = decode_reduced(&jpeg, 50).expect("eighth");
        assert_eq!((eighth.width(), eighth.height()), (80, 60));
        // Both paths give crops within a few grey levels of each other.
        let (a, b) = (
            classifier_crop(&half, 224, 224),
            classifier_crop(&decode_pixels(&jpeg).expect("decode"), 224, 224),
        );
        let mean = a
            .iter()
            .zip(b.iter())
            .map(|(p, q)| p.abs_diff(*q) as f64)
            .sum::<f64>()
            / a.len() as f64;
        assert!(mean < 8.0, "mean grey-level difference {mean}");
        assert!(decode_reduced(b"\xFF\xD8 not a jpeg", 224).is_err());
    }

    #[test]
    fn resizing_an_extreme_aspect_ratio_cannot_blow_up() {
        let line = image::DynamicImage::ImageRgb8(image::RgbImage::new(65_536, 1));
        let crop = classifier_crop(&line, 256, 224);
        assert_eq!(crop.dimensions(), (224, 224));
    }

    #[test]
    fn classifier_input_is_a_normalised_centre_crop() {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 20, |x, _| {
            image::Rgb(if x < 20 {
                [255, 255, 255]
            } else {
                [127, 127, 127]
            })
        }));
        let input = classifier_input(&img, 16, 8);
        assert_eq!(input.len(), 3 * 8 * 8);
        // 40x20 -> 32x16, crop columns 12..20: left half white, right half grey.
        assert!((input[0] - 1.0).abs() < 1e-6, "white is (255 - 127) / 128");
        assert!(input[7].abs() < 0.02, "grey is about 0: {}", input[7]);
    }

    #[test]
    fn mean_std_normalisation_is_per_channel() {
        let crop = image::RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 51]));
        let norm = PixelNorm::MeanStd {
            mean: [0.5, 0.5, 0.2],
            std: [0.25, 0.5, 0.1],
        };
        let out = norm.apply(&crop);
        let want = [2.0, 2.0, -1.0, -1.0, 0.0, 0.0];
        assert!(
            out.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{out:?}"
        );
        assert_eq!(PixelNorm::TfLite.apply(&crop), normalize_crop(&crop));
    }
}
