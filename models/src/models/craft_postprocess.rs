//! CRAFT's post-processing: from the region and affinity maps to word boxes.
//!
//! A port of `getDetBoxes_core` and `adjustResultCoordinates` of easyocr 1.7.2
//! (`easyocr/craft_utils.py`, without the optional polygon refinement): threshold both maps,
//! label 4-connected components of their union, drop small or faint ones, dilate each
//! component's text pixels by a size-dependent square, fit the minimum-area rotated rectangle
//! (OpenCV's `minAreaRect`, [`super::craft_geometry`]), replace near-square rectangles by the
//! axis-aligned box, order the corners clockwise from the top-left and scale them back to the
//! original image.

use super::craft::CraftConfig;
use super::craft_geometry::{Point, min_area_rect};

/// Components smaller than this many map pixels are dropped (`getDetBoxes_core`).
const MIN_COMPONENT_AREA: usize = 10;

/// The two output maps of the network for one image, row-major, at half the canvas
/// resolution.
#[derive(Debug, Clone)]
pub struct ScoreMaps {
    /// Region (character) score per map pixel.
    pub region: Vec<f32>,
    /// Affinity (link between characters) score per map pixel.
    pub affinity: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// Original-image pixels per map pixel (2 / the canvas resize ratio).
    pub scale: f64,
}

/// One detected text box.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Four corners in original-image pixels (x, y), clockwise from the top-left.
    pub polygon: [[f32; 2]; 4],
    /// The highest region score inside the box's component, in [0, 1] (about).
    pub score: f32,
}

/// A 4-connected component of the thresholded maps.
struct Component {
    /// Map pixel indices (y * width + x).
    pixels: Vec<usize>,
    left: usize,
    top: usize,
    right: usize,
    bottom: usize,
    max_region: f32,
}

/// The text boxes that `maps` hold, in the order of their components' first pixels (row-major),
/// as `getDetBoxes` followed by `adjustResultCoordinates` returns them.
pub fn detections(maps: &ScoreMaps, config: &CraftConfig) -> Vec<Detection> {
    let text: Vec<bool> = maps.region.iter().map(|&v| v > config.low_text).collect();
    let link: Vec<bool> = maps
        .affinity
        .iter()
        .map(|&v| v > config.link_threshold)
        .collect();
    let foreground: Vec<bool> = text.iter().zip(&link).map(|(&t, &l)| t || l).collect();
    components(&foreground, &maps.region, maps.width)
        .into_iter()
        .filter(|c| c.pixels.len() >= MIN_COMPONENT_AREA && c.max_region >= config.text_threshold)
        .map(|c| {
            let points = dilated_text_pixels(&c, &text, &link, maps.width, maps.height);
            let corners = word_box(&points);
            Detection {
                polygon: corners.map(|p| [(p.x * maps.scale) as f32, (p.y * maps.scale) as f32]),
                score: c.max_region,
            }
        })
        .collect()
}

/// 4-connected components of `foreground`, numbered in the row-major order of their first
/// pixels (as OpenCV's `connectedComponentsWithStats` labels them).
fn components(foreground: &[bool], region: &[f32], width: usize) -> Vec<Component> {
    let mut seen = vec![false; foreground.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..foreground.len() {
        if !foreground[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (x0, y0) = (start % width, start / width);
        let mut c = Component {
            pixels: Vec::new(),
            left: x0,
            top: y0,
            right: x0,
            bottom: y0,
            max_region: f32::MIN,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            c.pixels.push(i);
            (c.left, c.right) = (c.left.min(x), c.right.max(x));
            (c.top, c.bottom) = (c.top.min(y), c.bottom.max(y));
            c.max_region = c.max_region.max(region[i]);
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < width).then_some(i + 1),
                (y > 0).then(|| i - width),
                (i + width < foreground.len()).then_some(i + width),
            ];
            for n in neighbours.into_iter().flatten() {
                if foreground[n] && !seen[n] {
                    seen[n] = true;
                    stack.push(n);
                }
            }
        }
        out.push(c);
    }
    out
}

/// The component's pixels less its link-only ones, dilated by a square of side
/// `1 + niter` (OpenCV's anchor at the centre, `niter = int(sqrt(area * min(w, h) / (w * h))
/// * 2)`), as (x, y) map coordinates in row-major order.
fn dilated_text_pixels(
    c: &Component,
    text: &[bool],
    link: &[bool],
    width: usize,
    height: usize,
) -> Vec<Point> {
    let (w, h) = (c.right - c.left + 1, c.bottom - c.top + 1);
    let niter = ((c.pixels.len() * w.min(h)) as f64 / (w * h) as f64).sqrt() * 2.0;
    let niter = niter as usize;
    let (sx, sy) = (c.left.saturating_sub(niter), c.top.saturating_sub(niter));
    let (ex, ey) = (
        (c.right + 1 + niter + 1).min(width),
        (c.bottom + 1 + niter + 1).min(height),
    );
    let (rw, rh) = (ex - sx, ey - sy);
    let mut mask = vec![false; rw * rh];
    for &i in &c.pixels {
        if text[i] || !link[i] {
            mask[(i / width - sy) * rw + (i % width - sx)] = true;
        }
    }
    let mask = dilate(&mask, rw, rh, niter + 1);
    mask.iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| Point::new((sx + i % rw) as f64, (sy + i / rw) as f64))
        .collect()
}

/// Binary dilation of a `width` x `height` mask by a `k` x `k` square anchored at (k / 2,
/// k / 2), pixels outside the mask counting as off (OpenCV's `dilate` on an ROI).
fn dilate(mask: &[bool], width: usize, height: usize, k: usize) -> Vec<bool> {
    if k <= 1 {
        return mask.to_vec();
    }
    let anchor = k / 2;
    // dst(x) = max src(x - anchor ..= x - anchor + k - 1), separably along rows then columns.
    let window = |x: usize, len: usize| {
        let lo = x.saturating_sub(anchor);
        let hi = (x + k - 1).saturating_sub(anchor).min(len - 1);
        lo..=hi
    };
    let mut rows = vec![false; mask.len()];
    for y in 0..height {
        let line = &mask[y * width..(y + 1) * width];
        for x in 0..width {
            rows[y * width + x] = line[window(x, width)].iter().any(|&on| on);
        }
    }
    let mut out = vec![false; mask.len()];
    for x in 0..width {
        for y in 0..height {
            out[y * width + x] = window(y, height).any(|yy| rows[yy * width + x]);
        }
    }
    out
}

/// The minimum-area rectangle around `points`, or their axis-aligned bounding box when that
/// rectangle is within 10% of a square, clockwise (in image coordinates) from the corner
/// with the smallest x + y.
fn word_box(points: &[Point]) -> [Point; 4] {
    let mut corners = min_area_rect(points);
    let (w, h) = (
        corners[0].distance(corners[1]),
        corners[1].distance(corners[2]),
    );
    let ratio = w.max(h) / (w.min(h) + 1e-5);
    if (1.0 - ratio).abs() <= 0.1 {
        let fold = |f: fn(f64, f64) -> f64, init: f64, get: fn(&Point) -> f64| {
            points.iter().map(get).fold(init, f)
        };
        let (l, r) = (
            fold(f64::min, f64::MAX, |p| p.x),
            fold(f64::max, f64::MIN, |p| p.x),
        );
        let (t, b) = (
            fold(f64::min, f64::MAX, |p| p.y),
            fold(f64::max, f64::MIN, |p| p.y),
        );
        corners = [
            Point::new(l, t),
            Point::new(r, t),
            Point::new(r, b),
            Point::new(l, b),
        ];
    }
    if super::craft_geometry::signed_area(&corners) < 0.0 {
        corners.reverse();
    }
    let start = (0..4)
        .min_by(|&a, &b| {
            let (sa, sb) = (corners[a].x + corners[a].y, corners[b].x + corners[b].y);
            sa.total_cmp(&sb)
        })
        .unwrap_or(0);
    corners.rotate_left(start);
    corners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(rows: &[&str]) -> ScoreMaps {
        let region: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| if c == '#' { 0.9 } else { 0.0 }))
            .collect();
        let affinity = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| if c == '-' { 0.9 } else { 0.0 }))
            .collect();
        ScoreMaps {
            region,
            affinity,
            height: rows.len(),
            width: rows[0].len(),
            scale: 2.0,
        }
    }

    #[test]
    fn two_characters_linked_make_one_word() {
        let m = maps(&[
            "..............",
            "..###....###..",
            "..###----###..",
            "..###....###..",
            "..............",
            "..............",
        ]);
        let boxes = detections(&m, &CraftConfig::default());
        assert_eq!(boxes.len(), 1);
        // Component 10 x 3 of area 22: niter = int(sqrt(22 * 3 / 30) * 2) = 2, a 3x3 square
        // grows the text pixels (the links removed) by 1; easyocr gives the same box.
        let p = boxes[0].polygon;
        assert_eq!(p, [[2.0, 0.0], [24.0, 0.0], [24.0, 8.0], [2.0, 8.0]]);
        assert_eq!(boxes[0].score, 0.9);
    }

    #[test]
    fn small_or_faint_components_are_dropped() {
        let mut m = maps(&["........", ".###....", ".###....", "........"]);
        assert!(detections(&m, &CraftConfig::default()).is_empty(), "area 6");
        m = maps(&["..........", ".#####....", ".#####....", ".........."]);
        m.region.iter_mut().for_each(|v| *v *= 0.7);
        assert!(
            detections(&m, &CraftConfig::default()).is_empty(),
            "max 0.63"
        );
    }

    #[test]
    fn dilation_follows_the_opencv_anchor() {
        let mut mask = vec![false; 7];
        mask[3] = true;
        let out = dilate(&mask, 7, 1, 4);
        assert_eq!(out, [false, false, true, true, true, true, false]);
    }
}
