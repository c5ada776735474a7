//! From the PP-OCR detector's probability map to text boxes: RapidOCR 3.10's `DBPostProcess`
//! (`ch_ppocr_det/utils.py`, score mode `fast`, dilation on) and `TextDetector.sorted_boxes`.
//!
//! The map is thresholded and dilated by a 2x2 square; each 8-connected region gives its
//! minimum-area rectangle (OpenCV's `findContours` + `minAreaRect`: the rectangle of a
//! region's outer contour is the rectangle of its pixels); a rectangle with a short side under
//! 3 pixels or a mean probability under `box_thresh` is dropped; the rest are grown by
//! `area * unclip_ratio / perimeter` on every side (pyclipper's round offset of a rectangle,
//! whose minimum rectangle is the grown rectangle), scaled to the image, ordered clockwise from
//! the top-left, clipped and sorted in reading order. Contours of holes, which `RETR_LIST`
//! also returns, are not made: their boxes enclose low probabilities and fail `box_thresh`.

use crate::models::craft_geometry::{Point, min_area_rect};

/// `DBPostProcess`'s settings, RapidOCR's defaults.
#[derive(Debug, Clone)]
pub struct DbConfig {
    pub thresh: f32,
    pub box_thresh: f32,
    pub max_candidates: usize,
    pub unclip_ratio: f64,
    pub min_size: f64,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            thresh: 0.3,
            box_thresh: 0.5,
            max_candidates: 1000,
            unclip_ratio: 1.6,
            min_size: 3.0,
        }
    }
}

/// A detected box: integer corners clockwise from the top-left, in image pixels, and the mean
/// probability inside the rectangle it grew from.
#[derive(Debug, Clone, PartialEq)]
pub struct TextBox {
    pub corners: [[f32; 2]; 4],
    pub score: f32,
}

/// The probability map of one image (`height x width`, row-major).
pub struct ProbabilityMap<'a> {
    pub values: &'a [f32],
    pub width: usize,
    pub height: usize,
}

/// The boxes of `map`, scaled to an image of `image_width x image_height`, in reading order.
pub fn text_boxes(
    map: &ProbabilityMap,
    image_width: usize,
    image_height: usize,
    config: &DbConfig,
) -> Vec<TextBox> {
    let mask = dilate(&threshold(map, config.thresh), map.width, map.height);
    let mut boxes = Vec::new();
    for region in regions(&mask, map.width, map.height)
        .into_iter()
        .take(config.max_candidates)
    {
        let (rect, short) = mini_box(&min_area_rect(&region));
        if short < config.min_size {
            continue;
        }
        let score = box_score_fast(map, &rect);
        if score < config.box_thresh {
            continue;
        }
        let (grown, short) = mini_box(&unclip(&rect, config.unclip_ratio));
        if short < config.min_size + 2.0 {
            continue;
        }
        let scale = |v: f64, from: usize, to: usize| {
            (v / from as f64 * to as f64)
                .round_ties_even()
                .clamp(0.0, to as f64)
        };
        let corners = grown.map(|p| {
            Point::new(
                scale(p.x, map.width, image_width),
                scale(p.y, map.height, image_height),
            )
        });
        if let Some(corners) = clockwise_clipped(corners, image_width, image_height) {
            boxes.push(TextBox { corners, score });
        }
    }
    sort_reading_order(&mut boxes);
    boxes
}

fn threshold(map: &ProbabilityMap, thresh: f32) -> Vec<bool> {
    map.values.iter().map(|&p| p > thresh).collect()
}

/// `cv2.dilate` with a 2x2 square (anchor at its centre, (1, 1)): a pixel is set when it or
/// its left, upper or upper-left neighbour is.
fn dilate(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    let at = |x: usize, y: usize| mask[y * width + x];
    let mut out = vec![false; mask.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = at(x, y)
                || (x > 0 && at(x - 1, y))
                || (y > 0 && (at(x, y - 1) || (x > 0 && at(x - 1, y - 1))));
        }
    }
    out
}

/// The 8-connected regions of `mask`, each as its pixels' leftmost and rightmost point per
/// row (all a convex hull needs), in the order a raster scan meets them.
fn regions(mask: &[bool], width: usize, height: usize) -> Vec<Vec<Point>> {
    let mut label = vec![u32::MAX; mask.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || label[start] != u32::MAX {
            continue;
        }
        let id = out.len() as u32;
        let mut rows: std::collections::BTreeMap<usize, (usize, usize)> = Default::default();
        label[start] = id;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            let e = rows.entry(y).or_insert((x, x));
            (e.0, e.1) = (e.0.min(x), e.1.max(x));
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if mask[j] && label[j] == u32::MAX {
                        label[j] = id;
                        stack.push(j);
                    }
                }
            }
        }
        let mut points = Vec::with_capacity(rows.len() * 2);
        for (y, (lo, hi)) in rows {
            points.push(Point::new(lo as f64, y as f64));
            if hi != lo {
                points.push(Point::new(hi as f64, y as f64));
            }
        }
        out.push(points);
    }
    out
}

/// `get_mini_boxes`: the rectangle's corners ordered top-left, top-right, bottom-right,
/// bottom-left as RapidOCR picks them (sorted by x, then by y within each pair), and its
/// short side.
fn mini_box(rect: &[Point; 4]) -> ([Point; 4], f64) {
    let mut p = *rect;
    p.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (i1, i4) = if p[1].y > p[0].y { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3].y > p[2].y { (2, 3) } else { (3, 2) };
    let short = rect[0].distance(rect[1]).min(rect[1].distance(rect[2]));
    ([p[i1], p[i2], p[i3], p[i4]], short)
}

/// `box_score_fast`: the mean probability over the pixels of the quadrilateral (its corners
/// truncated to integers, as `cv2.fillPoly` gets them) within its clipped bounding box.
fn box_score_fast(map: &ProbabilityMap, quad: &[Point; 4]) -> f32 {
    let (w, h) = (map.width as i64, map.height as i64);
    let clip = |v: f64, hi: i64| (v as i64).clamp(0, hi - 1);
    let xmin = clip(quad.iter().map(|p| p.x).fold(f64::MAX, f64::min).floor(), w);
    let xmax = clip(quad.iter().map(|p| p.x).fold(f64::MIN, f64::max).ceil(), w);
    let ymin = clip(quad.iter().map(|p| p.y).fold(f64::MAX, f64::min).floor(), h);
    let ymax = clip(quad.iter().map(|p| p.y).fold(f64::MIN, f64::max).ceil(), h);
    let poly: Vec<(f64, f64)> = quad
        .iter()
        .map(|p| ((p.x - xmin as f64).trunc(), (p.y - ymin as f64).trunc()))
        .collect();
    let (mut sum, mut count) = (0f64, 0usize);
    for y in 0..=(ymax - ymin) {
        let Some((lo, hi)) = row_span(&poly, y as f64) else {
            continue;
        };
        let lo = (lo.round() as i64).max(0);
        let hi = (hi.round() as i64).min(xmax - xmin);
        for x in lo..=hi {
            sum += f64::from(map.values[((y + ymin) * w + x + xmin) as usize]);
            count += 1;
        }
    }
    if count == 0 {
        0.0
    } else {
        (sum / count as f64) as f32
    }
}

/// Where the horizontal line at `y` crosses the closed convex polygon (edges included).
fn row_span(poly: &[(f64, f64)], y: f64) -> Option<(f64, f64)> {
    let mut span: Option<(f64, f64)> = None;
    let mut widen = |x: f64| {
        span = Some(span.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))));
    };
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        if (a.1 - y) * (b.1 - y) > 0.0 {
            continue;
        }
        if a.1 == b.1 {
            widen(a.0);
            widen(b.0);
        } else {
            widen(a.0 + (y - a.1) / (b.1 - a.1) * (b.0 - a.0));
        }
    }
    span
}

/// `unclip` for a rectangle: each side moved out by `area * ratio / perimeter`.
fn unclip(rect: &[Point; 4], ratio: f64) -> [Point; 4] {
    let (a, b, c) = (rect[0], rect[1], rect[2]);
    let (w, h) = (a.distance(b), b.distance(c));
    if w == 0.0 || h == 0.0 {
        return *rect;
    }
    let d = w * h * ratio / (2.0 * (w + h));
    let u = Point::new((b.x - a.x) / w, (b.y - a.y) / w);
    let v = Point::new((c.x - b.x) / h, (c.y - b.y) / h);
    let centre = Point::new((a.x + c.x) / 2.0, (a.y + c.y) / 2.0);
    let (hw, hh) = (w / 2.0 + d, h / 2.0 + d);
    let at = |su: f64, sv: f64| {
        Point::new(
            centre.x + su * hw * u.x + sv * hh * v.x,
            centre.y + su * hw * u.y + sv * hh * v.y,
        )
    };
    [at(-1.0, -1.0), at(1.0, -1.0), at(1.0, 1.0), at(-1.0, 1.0)]
}

/// `filter_det_res`: corners ordered clockwise from the top-left (`order_points_clockwise`),
/// clipped to the image and truncated; `None` for a box 3 pixels or less across.
fn clockwise_clipped(p: [Point; 4], width: usize, height: usize) -> Option<[[f32; 2]; 4]> {
    let mut by_x = p;
    by_x.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (mut left, mut right) = ([by_x[0], by_x[1]], [by_x[2], by_x[3]]);
    left.sort_by(|a, b| a.y.total_cmp(&b.y));
    right.sort_by(|a, b| a.y.total_cmp(&b.y));
    let clip = |q: Point| {
        [
            q.x.clamp(0.0, width as f64 - 1.0).trunc() as f32,
            q.y.clamp(0.0, height as f64 - 1.0).trunc() as f32,
        ]
    };
    let corners = [clip(left[0]), clip(right[0]), clip(right[1]), clip(left[1])];
    let len = |a: [f32; 2], b: [f32; 2]| ((a[0] - b[0]).hypot(a[1] - b[1])) as i64;
    (len(corners[0], corners[1]) > 3 && len(corners[0], corners[3]) > 3).then_some(corners)
}

/// `sorted_boxes`: by the top-left corner's y (stable), grouped into lines where consecutive
/// y values differ by less than 10 pixels, then by x within each line.
fn sort_reading_order(boxes: &mut [TextBox]) {
    boxes.sort_by(|a, b| a.corners[0][1].total_cmp(&b.corners[0][1]));
    let mut line = 0usize;
    let mut keyed: Vec<(usize, f32, TextBox)> = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        if i > 0 && b.corners[0][1] - boxes[i - 1].corners[0][1] >= 10.0 {
            line += 1;
        }
        keyed.push((line, b.corners[0][0], b.clone()));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for (slot, (_, _, b)) in boxes.iter_mut().zip(keyed) {
        *slot = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with_block(
        width: usize,
        height: usize,
        x0: usize,
        y0: usize,
        x1: usize,
        y1: usize,
    ) -> Vec<f32> {
        let mut v = vec![0.0; width * height];
        for y in y0..y1 {
            for x in x0..x1 {
                v[y * width + x] = 0.9;
            }
        }
        v
    }

    #[test]
    fn a_block_becomes_one_grown_box() {
        let values = map_with_block(64, 32, 10, 10, 40, 20);
        let map = ProbabilityMap {
            values: &values,
            width: 64,
            height: 32,
        };
        let boxes = text_boxes(&map, 64, 32, &DbConfig::default());
        assert_eq!(boxes.len(), 1);
        let b = &boxes[0];
        // Dilated pixels span x 10..=40, y 10..=20: a 30 x 10 rectangle grown by 6 px a side;
        // its score counts the dilated, empty last row and column: 0.9 * 300 / 341.
        assert!((b.score - 0.9 * 300.0 / 341.0).abs() < 1e-3, "{b:?}");
        assert_eq!(
            b.corners,
            [[4.0, 4.0], [46.0, 4.0], [46.0, 26.0], [4.0, 26.0]]
        );
    }

    #[test]
    fn faint_and_thin_regions_are_dropped() {
        let mut values = map_with_block(64, 32, 10, 10, 40, 20);
        values.iter_mut().for_each(|v| *v *= 0.45);
        let map = ProbabilityMap {
            values: &values,
            width: 64,
            height: 32,
        };
        assert!(text_boxes(&map, 64, 32, &DbConfig::default()).is_empty());
        let values = map_with_block(64, 32, 10, 10, 40, 11);
        let map = ProbabilityMap {
            values: &values,
            width: 64,
            height: 32,
        };
        assert!(text_boxes(&map, 64, 32, &DbConfig::default()).is_empty());
    }

    #[test]
    fn boxes_sort_into_lines_then_left_to_right() {
        let b = |x: f32, y: f32| TextBox {
            corners: [[x, y]; 4],
            score: 1.0,
        };
        let mut boxes = vec![b(50.0, 14.0), b(10.0, 40.0), b(5.0, 10.0)];
        sort_reading_order(&mut boxes);
        let order: Vec<_> = boxes.iter().map(|b| b.corners[0]).collect();
        assert_eq!(order, vec![[5.0, 10.0], [50.0, 14.0], [10.0, 40.0]]);
    }
}
