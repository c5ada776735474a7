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

/// OpenCV's fixed-point scale of interpolation coefficients (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: i64 = 2048;

/// The crop resized to height [`HEIGHT`] and the width easyocr pads it to.
pub struct Prepared {
    pub image: GrayImage,
    pub padded_width: usize,
}

/// Resizes `crop` as `get_image_list` does: a wide crop (w >= h) to `int(64 * w / h)` x 64; a
/// tall one straight to `ceil(64 * w / h)` x 64 (easyocr goes through a 64-wide intermediate
/// and a bicubic resize: close, not exact). The padded width is `ceil(max(w/h, h/w)) * 64`.
/// `None` for an empty crop.
pub fn prepare(crop: &GrayImage) -> Option<Prepared> {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    if w == 0 || h == 0 {
        return None;
    }
    let ratio = w as f64 / h as f64;
    let width = if ratio >= 1.0 {
        (HEIGHT as f64 * ratio) as usize
    } else {
        (HEIGHT as f64 * ratio).ceil() as usize
    };
    let padded_width = ratio.max(1.0 / ratio).ceil() as usize * HEIGHT;
    Some(Prepared {
        image: resize_bilinear(crop, width.clamp(1, padded_width), HEIGHT),
        padded_width,
    })
}

/// Source index and fixed-point weights (of the index and the next) for each output position
/// of OpenCV's `INTER_LINEAR` (half-pixel centres, clamped at the borders).
fn linear_taps(src: usize, dst: usize) -> Vec<(usize, i64, i64)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor();
            let mut frac = f - s;
            if s < 0.0 {
                s = 0.0;
                frac = 0.0;
            }
            if s as usize >= src - 1 {
                s = (src - 1) as f32;
                frac = 0.0;
            }
            let w1 = (frac * COEF_SCALE as f32).round() as i64;
            let w0 = ((1.0 - frac) * COEF_SCALE as f32).round() as i64;
            (s as usize, w0, w1)
        })
        .collect()
}

/// `cv2.resize(img, (width, height), interpolation=INTER_LINEAR)` on 8-bit grey, with OpenCV's
/// fixed-point arithmetic (its vectorised rounding). Matches OpenCV 5.0 on all but ~0.4% of
/// pixels, which differ by 1 grey level in the first and last rows.
pub fn resize_bilinear(img: &GrayImage, width: usize, height: usize) -> GrayImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let xs = linear_taps(w, width);
    let ys = linear_taps(h, height);
    let rows: Vec<Vec<i64>> = (0..h)
        .map(|y| {
            let row = &src[y * w..(y + 1) * w];
            xs.iter()
                .map(|&(s, w0, w1)| {
                    let next = row[(s + 1).min(w - 1)];
                    i64::from(row[s]) * w0 + i64::from(next) * w1
                })
                .collect()
        })
        .collect();
    let mut out = Vec::with_capacity(width * height);
    for &(s, b0, b1) in &ys {
        let (r0, r1) = (&rows[s], &rows[(s + 1).min(h - 1)]);
        out.extend(r0.iter().zip(r1).map(|(&a, &b)| {
            let v = (((b0 * (a >> 4)) >> 16) + ((b1 * (b >> 4)) >> 16) + 2) >> 2;
            v.clamp(0, 255) as u8
        }));
    }
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
