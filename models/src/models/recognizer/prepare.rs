//! Crop preparation as easyocr 1.7.2 does it before its recognizer.
//!
//! `get_image_list` (`utils.py`) resizes each crop to height 64 keeping its aspect ratio with
//! OpenCV's bilinear `cv2.resize`; `AlignCollate` and `NormalizePAD` (`recognition.py`) scale
//! pixels to [-1, 1] and pad on the right by repeating the last column, to a width of
//! `ceil(ratio) * 64` for a crop recognised alone (easyocr's CPU path). `adjust_contrast_grey`
//! is the contrast stretch of easyocr's second pass over low-confidence crops.

use image::GrayImage;

/// Height of the recognizer's input.
pub const HEIGHT: usize = 64;

/// Longest crop the recognizer reads, as a multiple of its short side (an input of at most
/// 64 x 8,192 pixels); a longer one is read as nothing.
pub const MAX_CROP_ASPECT: f64 = 128.0;

/// OpenCV's fixed-point scale of interpolation coefficients (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: i64 = 2048;

/// The crop resized to height [`HEIGHT`] and the width easyocr pads it to.
pub struct Prepared {
    pub image: GrayImage,
    pub padded_width: usize,
}

/// Resizes `crop` as easyocr does. A wide crop (w >= h): `cv2.resize` to `int(64 * w / h)` x 64
/// in `get_image_list`. A tall one: `cv2.resize` to 64 x `int(64 * h / w)` there, then Pillow's
/// bicubic resize to `ceil(64 * 64 / that)` x 64 in `AlignCollate`. The padded width is
/// `ceil(max(w/h, h/w)) * 64`. `None` for an empty crop or one past [`MAX_CROP_ASPECT`].
pub fn prepare(crop: &GrayImage) -> Option<Prepared> {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let ratio = w as f64 / h as f64;
    // Past this a crop is no line of text, and its input would be `64 * ratio` columns wide.
    if ratio.max(1.0 / ratio) > MAX_CROP_ASPECT {
        return None;
    }
    let padded_width = ratio.max(1.0 / ratio).ceil() as usize * HEIGHT;
    let image = if ratio >= 1.0 {
        resize_bilinear(crop, (HEIGHT as f64 * ratio) as usize, HEIGHT)
    } else {
        let tall_height = ((HEIGHT as f64 * (1.0 / ratio)) as usize).max(1);
        let tall = resize_bilinear(crop, HEIGHT, tall_height);
        let width = (HEIGHT as f64 * (HEIGHT as f64 / tall_height as f64)).ceil() as usize;
        resize_bicubic_pil(&tall, width.max(1), HEIGHT)
    };
    Some(Prepared {
        image,
        padded_width,
    })
}

/// Source indices and fixed-point weights of each output position of OpenCV's `INTER_LINEAR`
/// (half-pixel centres). Along x a position past a border takes the border pixel with weight 1;
/// along y OpenCV keeps the unclamped weights and clamps only the row indices, which rounds
/// differently: `clamp_weights` chooses x's behaviour.
fn linear_taps(src: usize, dst: usize, clamp_weights: bool) -> Vec<(usize, usize, i64, i64)> {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if clamp_weights && s < 0 {
                (s, frac) = (0, 0.0);
            }
            if clamp_weights && s >= last {
                (s, frac) = (last, 0.0);
            }
            let w0 = ((1.0 - frac) * COEF_SCALE as f32).round() as i64;
            let w1 = (frac * COEF_SCALE as f32).round() as i64;
            let at = |i: i64| i.clamp(0, last) as usize;
            (at(s), at(s + 1), w0, w1)
        })
        .collect()
}

/// `cv2.resize(img, (width, height), interpolation=INTER_LINEAR)` on 8-bit grey, in OpenCV's
/// fixed-point arithmetic (its vectorised rounding): bit-exact with OpenCV 5.0 on the ICDAR 2015
/// word crops.
pub fn resize_bilinear(img: &GrayImage, width: usize, height: usize) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let xs = linear_taps(w, width, true);
    let ys = linear_taps(h, height, false);
    let rows: Vec<Vec<i64>> = (0..h)
        .map(|y| {
            let row = &src[y * w..(y + 1) * w];
            xs.iter()
                .map(|&(s0, s1, w0, w1)| i64::from(row[s0]) * w0 + i64::from(row[s1]) * w1)
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(width * height);
    for &(s0, s1, b0, b1) in &ys {
        out.extend(rows[s0].iter().zip(&rows[s1]).map(|(&a, &b)| {
            let v = (((b0 * (a >> 4)) >> 16) + ((b1 * (b >> 4)) >> 16) + 2) >> 2;
            v.clamp(0, 255) as u8
        }));
    }
    // The buffer has exactly width * height bytes.
    GrayImage::from_raw(width as u32, height as u32, out).unwrap_or_default()
}

/// Grey levels as OpenCV's `cvtColor(RGB2GRAY)` computes them (what easyocr reads crops as):
/// `0.299 R + 0.587 G + 0.114 B` in 14-bit fixed point, rounded.
pub fn to_gray(image: &image::RgbImage) -> GrayImage {
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        let [r, g, b] = image.get_pixel(x, y).0.map(u32::from);
        let level = (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14;
        image::Luma([level.min(255) as u8])
    })
}

/// Bits of Pillow's fixed-point resampling weights (`PRECISION_BITS` in `Resample.c`).
const PIL_PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (a = -0.5), support 2.
fn pil_bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// First source index and fixed-point weights of each output position of Pillow's
/// antialiased resampling along one axis (`precompute_coeffs` + `normalize_coeffs_8bpc`).
fn pil_taps(src: usize, dst: usize) -> Vec<(usize, Vec<i64>)> {
    let scale = src as f64 / dst as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..dst)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let min = ((center - support + 0.5).floor().max(0.0)) as usize;
            let max = ((center + support + 0.5).floor() as usize).min(src);
            let weights: Vec<f64> = (min..max)
                .map(|j| pil_bicubic((j as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { 0.0 };
                    let v = w * f64::from(1u32 << PIL_PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i64
                })
                .collect();
            (min, fixed)
        })
        .collect()
}

/// One fixed-point tap sum, rounded and clipped to 8 bits as Pillow does.
fn pil_clip(sum: i64) -> u8 {
    ((sum + (1 << (PIL_PRECISION_BITS - 1))) >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// `PIL.Image.resize((width, height), Image.BICUBIC)` on 8-bit grey: Pillow's two-pass
/// antialiased resampling, horizontal first, in its fixed-point arithmetic.
pub fn resize_bicubic_pil(img: &GrayImage, width: usize, height: usize) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let horizontal: Vec<u8> = if w == width {
        src.clone()
    } else {
        let taps = pil_taps(w, width);
        (0..h)
            .flat_map(|y| {
                let row = &src[y * w..(y + 1) * w];
                taps.iter().map(move |(min, k)| {
                    pil_clip(
                        row[*min..]
                            .iter()
                            .zip(k)
                            .map(|(&p, &k)| i64::from(p) * k)
                            .sum(),
                    )
                })
            })
            .collect()
    };
    let out: Vec<u8> = if h == height {
        horizontal
    } else {
        let taps = pil_taps(h, height);
        taps.iter()
            .flat_map(|(min, k)| {
                let horizontal = &horizontal;
                (0..width).map(move |x| {
                    pil_clip(
                        k.iter()
                            .enumerate()
                            .map(|(j, &k)| i64::from(horizontal[(min + j) * width + x]) * k)
                            .sum(),
                    )
                })
            })
            .collect()
    };
    // The buffer has exactly width * height bytes.
    GrayImage::from_raw(width as u32, height as u32, out).unwrap_or_default()
}

/// Linear-interpolated percentile of sorted values, as `np.percentile`'s default.
fn percentile(sorted: &[u8], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (f64::from(sorted[lo]), f64::from(sorted[hi]));
    a + (b - a) * (pos - lo as f64)
}

/// easyocr's `adjust_contrast_grey(img, target)`: when the 10-90 percentile contrast is below
/// `target`, stretches the levels so that they span about 200 grey levels.
pub fn adjust_contrast(img: &GrayImage, target: f64) -> GrayImage {
    let mut sorted = img.as_raw().clone();
    if sorted.is_empty() {
        return img.clone();
    }
    sorted.sort_unstable();
    let (high, low) = (percentile(&sorted, 90.0), percentile(&sorted, 10.0));
    let contrast = (high - low) / (high + low).max(10.0);
    if contrast >= target {
        return img.clone();
    }
    let ratio = 200.0 / (high - low).max(10.0);
    let mut out = img.clone();
    for p in out.iter_mut() {
        *p = ((f64::from(*p) - low + 25.0) * ratio).clamp(0.0, 255.0) as u8;
    }
    out
}

/// Appends the crop as `NormalizePAD` makes it: `HEIGHT x padded_width` values in [-1, 1],
/// row-major, the last column repeated to the right.
pub fn normalize_pad(image: &GrayImage, padded_width: usize, out: &mut Vec<f32>) {
    let width = image.width() as usize;
    for row in image.as_raw().chunks_exact(width.max(1)) {
        let scaled = row.iter().map(|&p| (f32::from(p) / 255.0 - 0.5) / 0.5);
        out.extend(scaled.clone().take(padded_width));
        if let Some(&last) = row.last() {
            let last = (f32::from(last) / 255.0 - 0.5) / 0.5;
            out.extend(std::iter::repeat_n(
                last,
                padded_width.saturating_sub(width),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_crop_keeps_its_ratio_and_pads_to_a_multiple_of_64() {
        let crop = GrayImage::from_pixel(100, 32, image::Luma([7]));
        let prepared = prepare(&crop).expect("non-empty");
        assert_eq!(prepared.image.dimensions(), (200, 64));
        assert_eq!(prepared.padded_width, 256);
        assert!(prepared.image.iter().all(|&p| p == 7));
    }

    #[test]
    fn padding_repeats_the_last_column() {
        let image = GrayImage::from_fn(3, 64, |x, _| image::Luma([if x == 2 { 255 } else { 0 }]));
        let mut out = Vec::new();
        normalize_pad(&image, 5, &mut out);
        assert_eq!(out.len(), 64 * 5);
        assert_eq!(&out[..5], &[-1.0, -1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn low_contrast_is_stretched() {
        let img = GrayImage::from_fn(10, 10, |x, _| image::Luma([100 + x as u8]));
        let out = adjust_contrast(&img, 0.5);
        assert!(out.iter().max() > Some(&200) || out.iter().min() < Some(&50));
    }
}
