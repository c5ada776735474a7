//! Cutting the recognizer's crops out of the grey image, as easyocr 1.7.2's `get_image_list`
//! (`easyocr/utils.py`) does before it resizes them.
//!
//! Axis-aligned boxes are clipped to the image and sliced; free quadrilaterals are rectified
//! by `four_point_transform`: OpenCV's `getPerspectiveTransform` (an 8x8 solve) and
//! `warpPerspective` (bilinear, constant border 0), written here. OpenCV 5 warps 8-bit images
//! in f32 arithmetic (not the fixed-point tables of OpenCV 4), which [`warp_perspective`]
//! follows. Also the grey conversion `reformat_input` applies to an image file.

use image::{GrayImage, Luma, RgbImage};

use super::lines::{FreeBox, HorizontalBox};

/// A polygon `x1 y1 .. x4 y4`, clockwise from the top-left, in image pixels.
pub type Polygon = [f32; 8];

/// Grey levels as `cv2.imread(path, cv2.IMREAD_GRAYSCALE)` gives them for an 8-bit RGB PNG,
/// which is what easyocr's recognizer reads for a file path: libpng's `rgb_to_gray` with
/// OpenCV's weights 0.299 and 0.587 as 15-bit fixed point (9797, 19234, 3737), truncated.
/// Bit-exact with OpenCV 5.0. (A JPEG is different: libjpeg hands OpenCV its luma plane.)
pub fn imread_grey(rgb: &RgbImage) -> GrayImage {
    GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
        Luma([((r * 9797 + g * 19234 + b * 3737) >> 15) as u8])
    })
}

/// The part of `grey` under an axis-aligned box, clipped to the image, with the clipped box as
/// a polygon; `None` when nothing is left (easyocr would fail on such a box).
pub fn crop_horizontal(grey: &GrayImage, b: &HorizontalBox) -> Option<(Polygon, GrayImage)> {
    let (width, height) = (grey.width() as i64, grey.height() as i64);
    let x_min = i64::from(b[0]).max(0);
    let x_max = i64::from(b[1]).min(width);
    let y_min = i64::from(b[2]).max(0);
    let y_max = i64::from(b[3]).min(height);
    if x_max <= x_min || y_max <= y_min {
        return None;
    }
    let crop = image::imageops::crop_imm(
        grey,
        x_min as u32,
        y_min as u32,
        (x_max - x_min) as u32,
        (y_max - y_min) as u32,
    )
    .to_image();
    let (x0, x1, y0, y1) = (x_min as f32, x_max as f32, y_min as f32, y_max as f32);
    Some(([x0, y0, x1, y0, x1, y1, x0, y1], crop))
}

/// `four_point_transform(grey, np.array(corners, dtype="float32"))`: the quadrilateral warped
/// to an upright rectangle as wide as its longer horizontal edge and as high as its longer
/// vertical edge (each truncated to whole pixels). `None` when that is empty (OpenCV would then
/// warp to the source's size instead) or the corners are degenerate.
pub fn crop_free(grey: &GrayImage, corners: &FreeBox) -> Option<(Polygon, GrayImage)> {
    let c = corners.map(|[x, y]| [x as f32, y as f32]);
    let [tl, tr, br, bl] = c;
    let edge = |a: [f32; 2], b: [f32; 2]| {
        let (dx, dy) = (a[0] - b[0], a[1] - b[1]);
        (dx * dx + dy * dy).sqrt() as i64
    };
    let width = edge(br, bl).max(edge(tr, tl));
    let height = edge(tr, br).max(edge(tl, bl));
    if width <= 0 || height <= 0 {
        return None;
    }
    let (w, h) = (width as f32, height as f32);
    let target = [
        [0.0, 0.0],
        [w - 1.0, 0.0],
        [w - 1.0, h - 1.0],
        [0.0, h - 1.0],
    ];
    let forward = perspective_transform(&c, &target)?;
    let inverse = invert3(&forward)?;
    let crop = warp_perspective(grey, &inverse, width as u32, height as u32);
    let polygon = [
        c[0][0], c[0][1], c[1][0], c[1][1], c[2][0], c[2][1], c[3][0], c[3][1],
    ];
    Some((polygon, crop))
}

/// `cv2.getPerspectiveTransform(src, dst)`: the 3x3 homography (row-major, `h[8] = 1`) that
/// maps each `src` corner onto its `dst` corner, from an 8x8 system solved in f64 (the
/// products of coordinates taken in f32, as OpenCV does with `Point2f`).
pub fn perspective_transform(src: &[[f32; 2]; 4], dst: &[[f32; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let ([sx, sy], [dx, dy]) = (src[i], dst[i]);
        a[i] = [
            sx.into(),
            sy.into(),
            1.0,
            0.0,
            0.0,
            0.0,
            (-sx * dx).into(),
            (-sy * dx).into(),
            dx.into(),
        ];
        a[i + 4] = [
            0.0,
            0.0,
            0.0,
            sx.into(),
            sy.into(),
            1.0,
            (-sx * dy).into(),
            (-sy * dy).into(),
            dy.into(),
        ];
    }
    let x = solve_lu(a)?;
    Some([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], 1.0])
}

/// Gaussian elimination with partial pivoting of an 8x8 system (its right-hand side in the
/// last column); `None` when singular.
fn solve_lu(mut a: [[f64; 9]; 8]) -> Option<[f64; 8]> {
    const N: usize = 8;
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col] == 0.0 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for row in a.iter_mut().skip(col + 1) {
            let factor = row[col] / pivot_row[col];
            for (v, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                *v -= factor * p;
            }
        }
    }
    let mut x = [0f64; N];
    for row in (0..N).rev() {
        let s: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][N] - s) / a[row][row];
    }
    Some(x)
}

/// The inverse of a 3x3 matrix by cofactors (OpenCV's `invert` of a 3x3 with `DECOMP_LU`, as
/// `warpPerspective` applies to its matrix); `None` when singular.
fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
        + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if det == 0.0 {
        return None;
    }
    let d = 1.0 / det;
    Some([
        (m[4] * m[8] - m[5] * m[7]) * d,
        (m[2] * m[7] - m[1] * m[8]) * d,
        (m[1] * m[5] - m[2] * m[4]) * d,
        (m[5] * m[6] - m[3] * m[8]) * d,
        (m[0] * m[8] - m[2] * m[6]) * d,
        (m[2] * m[3] - m[0] * m[5]) * d,
        (m[3] * m[7] - m[4] * m[6]) * d,
        (m[1] * m[6] - m[0] * m[7]) * d,
        (m[0] * m[4] - m[1] * m[3]) * d,
    ])
}

/// `cv2.warpPerspective` of an 8-bit grey image with `INTER_LINEAR` and `BORDER_CONSTANT` 0,
/// given the inverse map (output pixel -> source point, row-major 3x3), in OpenCV 5's f32
/// arithmetic: the source point (each row's terms summed first), then bilinear blending along
/// x and then y, rounded to nearest-even; source pixels outside the image count as 0.
/// Bit-exact with OpenCV 5.0 on the golden crops.
pub fn warp_perspective(src: &GrayImage, inverse: &[f64; 9], width: u32, height: u32) -> GrayImage {
    let m = inverse.map(|v| v as f32);
    let (sw, sh) = (i64::from(src.width()), i64::from(src.height()));
    let raw = src.as_raw();
    let at = |x: i64, y: i64| -> f32 {
        if (0..sw).contains(&x) && (0..sh).contains(&y) {
            f32::from(raw[(y * sw + x) as usize])
        } else {
            0.0
        }
    };
    GrayImage::from_fn(width, height, |x, y| {
        let (x, y) = (x as f32, y as f32);
        // The row's part first, then the column's: OpenCV's order, which the rounding sees.
        let w = m[6] * x + (m[7] * y + m[8]);
        let sx = (m[0] * x + (m[1] * y + m[2])) / w;
        let sy = (m[3] * x + (m[4] * y + m[5])) / w;
        if !(sx.is_finite() && sy.is_finite()) {
            return Luma([0]);
        }
        let (fx, fy) = (sx.floor(), sy.floor());
        let (ax, ay) = (sx - fx, sy - fy);
        let (ix, iy) = (fx as i64, fy as i64);
        let (p00, p01) = (at(ix, iy), at(ix + 1, iy));
        let (p10, p11) = (at(ix, iy + 1), at(ix + 1, iy + 1));
        let top = p00 + ax * (p01 - p00);
        let bottom = p10 + ax * (p11 - p10);
        let v = top + ay * (bottom - top);
        Luma([v.round_ties_even().clamp(0.0, 255.0) as u8])
    })
}

/// Sorts crops by the y of their top-left corner, stably, as `get_image_list` does with
/// `sort_output=True` (only `readtext`'s batched path, not its CPU one, sees that order).
pub fn sort_by_top<T>(crops: &mut [(Polygon, T)]) {
    crops.sort_by(|a, b| a.0[1].total_cmp(&b.0[1]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_past_the_image_is_clipped() {
        let grey = GrayImage::from_fn(10, 8, |x, y| Luma([(x + 10 * y) as u8]));
        let (polygon, crop) = crop_horizontal(&grey, &[-3, 4, 5, 12]).expect("crop");
        assert_eq!(polygon, [0.0, 5.0, 4.0, 5.0, 4.0, 8.0, 0.0, 8.0]);
        assert_eq!(crop.dimensions(), (4, 3));
        assert_eq!(crop.get_pixel(1, 0).0, [51]);
        assert!(crop_horizontal(&grey, &[12, 20, 0, 5]).is_none());
    }

    #[test]
    fn an_upright_rectangle_stretches_onto_its_crop() {
        // A linear ramp survives bilinear interpolation exactly.
        let grey = GrayImage::from_fn(20, 12, |x, y| Luma([(x * 7 + y * 3) as u8]));
        let corners = [[2.0, 3.0], [11.0, 3.0], [11.0, 8.0], [2.0, 8.0]];
        let (_, crop) = crop_free(&grey, &corners).expect("crop");
        assert_eq!(crop.dimensions(), (9, 5));
        for (x, y, p) in crop.enumerate_pixels() {
            // Output corners (0, 0) and (8, 4) take source corners (2, 3) and (11, 8).
            let (sx, sy) = (2.0 + x as f32 * 9.0 / 8.0, 3.0 + y as f32 * 5.0 / 4.0);
            let want = (7.0 * sx + 3.0 * sy).round() as u8;
            assert!(
                p.0[0].abs_diff(want) <= 1,
                "({x}, {y}): {} vs {want}",
                p.0[0]
            );
        }
    }

    #[test]
    fn the_homography_maps_corners_onto_targets() {
        let src = [[5.0, 4.0], [60.0, 12.0], [58.0, 40.0], [2.0, 30.0]];
        let dst = [[0.0, 0.0], [55.0, 0.0], [55.0, 27.0], [0.0, 27.0]];
        let h = perspective_transform(&src, &dst).expect("homography");
        for ([sx, sy], [dx, dy]) in src.iter().zip(&dst) {
            let (sx, sy) = (f64::from(*sx), f64::from(*sy));
            let w = h[6] * sx + h[7] * sy + h[8];
            let x = (h[0] * sx + h[1] * sy + h[2]) / w;
            let y = (h[3] * sx + h[4] * sy + h[5]) / w;
            assert!((x - f64::from(*dx)).abs() < 1e-9 && (y - f64::from(*dy)).abs() < 1e-9);
        }
    }
}
