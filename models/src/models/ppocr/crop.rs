//! RapidOCR 3.10's `get_rotate_crop_image` (`utils/process_img.py`): a detected box cut out
//! of the colour image by a perspective warp (OpenCV's `warpPerspective` with `INTER_CUBIC`
//! and `BORDER_REPLICATE`, 1/32-pixel source positions as OpenCV quantises them), turned a
//! quarter counter-clockwise when it is at least 1.5 times taller than wide.

use image::{Rgb, RgbImage};

use crate::spotting::crops::perspective_transform;

/// The upright crop of the box `corners` (clockwise from the top-left) of `image`; `None`
/// for a box under one pixel across. `max_pixels` bounds the crop.
pub fn rotate_crop(
    image: &RgbImage,
    corners: &[[f32; 2]; 4],
    max_pixels: usize,
) -> Option<RgbImage> {
    let d = |a: [f32; 2], b: [f32; 2]| f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1]));
    let [p0, p1, p2, p3] = *corners;
    let width = d(p0, p1).max(d(p2, p3)) as usize;
    let height = d(p0, p3).max(d(p1, p2)) as usize;
    if width == 0 || height == 0 || width.saturating_mul(height) > max_pixels {
        return None;
    }
    let (w, h) = (width as f32, height as f32);
    let target = [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]];
    // The map from crop pixels back to image pixels.
    let back = perspective_transform(&target, corners)?;
    let crop = warp_cubic(image, &back, width, height);
    Some(if height as f64 / width as f64 >= 1.5 {
        image::imageops::rotate270(&crop)
    } else {
        crop
    })
}

/// OpenCV's bicubic kernel (A = -0.75) at fraction `t` of a pixel.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (t + 1.0) - 5.0 * A) * (t + 1.0) + 8.0 * A) * (t + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let w2 = ((A + 2.0) * (1.0 - t) - (A + 3.0)) * (1.0 - t) * (1.0 - t) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

fn warp_cubic(src: &RgbImage, back: &[f64; 9], width: usize, height: usize) -> RgbImage {
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let mut out = RgbImage::new(width as u32, height as u32);
    for y in 0..height {
        for x in 0..width {
            let (xf, yf) = (x as f64, y as f64);
            let wz = back[6] * xf + back[7] * yf + back[8];
            let scale = if wz == 0.0 { 0.0 } else { 32.0 / wz };
            let sx = ((back[0] * xf + back[1] * yf + back[2]) * scale).round() as i64;
            let sy = ((back[3] * xf + back[4] * yf + back[5]) * scale).round() as i64;
            let (ix, iy) = (sx.div_euclid(32), sy.div_euclid(32));
            let wx = cubic_weights(sx.rem_euclid(32) as f32 / 32.0);
            let wy = cubic_weights(sy.rem_euclid(32) as f32 / 32.0);
            let mut acc = [0f32; 3];
            for (j, wyj) in wy.iter().enumerate() {
                let py = (iy + j as i64 - 1).clamp(0, sh - 1) as u32;
                for (i, wxi) in wx.iter().enumerate() {
                    let px = (ix + i as i64 - 1).clamp(0, sw - 1) as u32;
                    let p = src.get_pixel(px, py).0;
                    for c in 0..3 {
                        acc[c] += f32::from(p[c]) * wxi * wyj;
                    }
                }
            }
            out.put_pixel(
                x as u32,
                y as u32,
                Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_axis_aligned_box_is_copied_exactly() {
        let image = RgbImage::from_fn(40, 30, |x, y| Rgb([x as u8 * 5, y as u8 * 7, 99]));
        let crop = rotate_crop(
            &image,
            &[[5.0, 4.0], [25.0, 4.0], [25.0, 14.0], [5.0, 14.0]],
            1 << 20,
        )
        .expect("crop");
        assert_eq!(crop.dimensions(), (20, 10));
        for (x, y, p) in crop.enumerate_pixels() {
            assert_eq!(p, image.get_pixel(x + 5, y + 4), "({x}, {y})");
        }
    }

    #[test]
    fn a_tall_box_is_turned_counter_clockwise() {
        let image = RgbImage::from_fn(40, 40, |x, y| Rgb([x as u8, y as u8, 0]));
        let crop = rotate_crop(
            &image,
            &[[0.0, 0.0], [10.0, 0.0], [10.0, 30.0], [0.0, 30.0]],
            1 << 20,
        )
        .expect("crop");
        assert_eq!(crop.dimensions(), (30, 10));
        // np.rot90: the top-right source pixel lands top-left.
        assert_eq!(crop.get_pixel(0, 0), image.get_pixel(9, 0));
    }
}
