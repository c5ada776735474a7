//! Image preprocessing for the image towers: decoding bytes into pixels (bounded, in
//! [`crate::decode`]), the short-side resize and centre crop (bicubic, on `fast_image_resize`'s
//! SIMD convolutions), and the pixel normalisations the towers were trained with.

use std::borrow::Cow;

use fast_image_resize as fr;
use image::{DynamicImage, RgbImage};

pub use crate::decode::{ImageLimits, decode_pixels, decode_within};
use crate::decode::{MinSize, decode_reduced_within};

/// Decodes like [`decode_pixels`], but a JPEG at the smallest DCT scale (1/8, 1/4, 1/2 or 1)
/// whose short side is still at least `min_side`: a 640x480 photo for a 224 crop decodes at
/// 320x240, a quarter of the pixels, most of the decode time saved (see
/// [`decode_reduced_within`]).
pub fn decode_reduced(bytes: &[u8], min_side: u32) -> Result<DynamicImage, String> {
    let min = MinSize {
        short: min_side,
        long: 0,
    };
    decode_reduced_within(bytes, &ImageLimits::default(), min).map(|(image, _)| image)
}

/// Classifier preprocessing as EfficientNet-Lite was trained: short side resized to `resize`
/// (bicubic), centre crop `crop` x `crop`, TF-Lite normalisation (pixel - 127) / 128.
/// Returns the pixels as channel-major (3, crop, crop) f32.
pub fn classifier_input(image: &image::DynamicImage, resize: u32, crop: u32) -> Vec<f32> {
    normalize_crop(&classifier_crop(image, resize, crop))
}

/// TF-Lite normalisation of an RGB crop: (pixel - 127) / 128, channel-major (3, h, w).
pub fn normalize_crop(crop: &image::RgbImage) -> Vec<f32> {
    planar(crop, |_, v| (f32::from(v) - 127.0) / 128.0)
}

/// The crop's pixels as channel-major (3, h, w) f32, each value `f(channel, value)`: one pass
/// over the interleaved pixels, writing the three planes.
fn planar(crop: &image::RgbImage, f: impl Fn(usize, u8) -> f32) -> Vec<f32> {
    let plane = crop.width() as usize * crop.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    let (red, rest) = out.split_at_mut(plane);
    let (green, blue) = rest.split_at_mut(plane);
    let pixels = crop.as_raw().chunks_exact(3);
    for ((pixel, r), (g, b)) in pixels.zip(red).zip(green.iter_mut().zip(blue)) {
        (*r, *g, *b) = (f(0, pixel[0]), f(1, pixel[1]), f(2, pixel[2]));
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
        planar(crop, |c, v| (f32::from(v) / 255.0 - mean[c]) / std[c])
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

/// The size of `image` with its short side resized to `resize`, each side at least `crop`
/// and at most [`MAX_RESIZED_ASPECT`] times the larger of the two.
fn short_side_size(image: &DynamicImage, resize: u32, crop: u32) -> (u32, u32) {
    let (w, h) = (image.width().max(1), image.height().max(1));
    let scale = resize as f64 / w.min(h) as f64;
    let cap = resize.max(crop).saturating_mul(MAX_RESIZED_ASPECT);
    (
        ((w as f64 * scale).round() as u32).clamp(crop, cap),
        ((h as f64 * scale).round() as u32).clamp(crop, cap),
    )
}

/// `image` as 8-bit RGB, borrowed when it is already.
fn rgb8(image: &DynamicImage) -> Cow<'_, RgbImage> {
    match image.as_rgb8() {
        Some(rgb) => Cow::Borrowed(rgb),
        None => Cow::Owned(image.to_rgb8()),
    }
}

/// Bicubic (Catmull-Rom) resampling of the box (left, top, width, height), in `image`'s
/// pixels, into a `out_w` x `out_h` image; the filter reads past the box where the image
/// goes on, so a box resampled alone equals the same part of the whole image resampled.
fn resample(image: &RgbImage, bounds: [f64; 4], out_w: u32, out_h: u32) -> RgbImage {
    let [left, top, width, height] = bounds;
    let mut out = RgbImage::new(out_w, out_h);
    if image.width() == 0 || image.height() == 0 {
        return out;
    }
    let src = fr::images::ImageRef::new(
        image.width(),
        image.height(),
        image.as_raw(),
        fr::PixelType::U8x3,
    );
    let dst = fr::images::Image::from_slice_u8(out_w, out_h, &mut out, fr::PixelType::U8x3);
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom))
        .crop(left, top, width, height);
    // Both buffers have exactly the sizes given, so the resizer cannot fail on them.
    if let (Ok(src), Ok(mut dst)) = (src, dst) {
        let _ = fr::Resizer::new().resize(&src, &mut dst, &options);
    }
    out
}

fn resized_short_side(image: &DynamicImage, resize: u32, crop: u32) -> RgbImage {
    let (nw, nh) = short_side_size(image, resize, crop);
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    resample(&rgb8(image), [0.0, 0.0, w, h], nw, nh)
}

/// The short side resized to `resize` (bicubic, Catmull-Rom), then a centre crop `crop` x
/// `crop`. Only the crop is computed: the part of the image under it is resampled straight to
/// `crop` x `crop`, the same pixels as resizing the whole image and cutting the crop out.
pub fn classifier_crop(image: &DynamicImage, resize: u32, crop: u32) -> RgbImage {
    let (nw, nh) = short_side_size(image, resize, crop);
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let (sx, sy) = (w / f64::from(nw), h / f64::from(nh));
    let (left, top) = (f64::from((nw - crop) / 2), f64::from((nh - crop) / 2));
    let side = f64::from(crop);
    let bounds = [left * sx, top * sy, side * sx, side * sy];
    resample(&rgb8(image), bounds, crop, crop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_decode_keeps_the_short_side_above_the_crop() {
        let photo = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut jpeg = std::io::Cursor::new(Vec::new());
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
    fn the_crop_alone_equals_the_crop_of_the_whole_resized_image() {
        let photo = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(640, 427, |x, y| {
            let v = ((x * 37 + y * 11) % 251) as u8;
            image::Rgb([v, (x % 256) as u8, ((x * y) % 256) as u8])
        }));
        let whole = resized_short_side(&photo, 256, 224);
        assert_eq!(whole.dimensions(), (384, 256));
        let cut = image::imageops::crop_imm(&whole, 80, 16, 224, 224).to_image();
        let crop = classifier_crop(&photo, 256, 224);
        let max = crop
            .iter()
            .zip(cut.iter())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(max <= Some(1), "max grey-level difference {max:?}");
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
