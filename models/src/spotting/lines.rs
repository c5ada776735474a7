//! Grouping of detected character-region boxes into text lines, as easyocr 1.7.2 does it
//! between its detector and its recognizer.
//!
//! A port of `utils.group_text_box` (`easyocr/utils.py`) as `Reader.detect` calls it with
//! `readtext`'s defaults, followed by `detect`'s `min_size` filter. Boxes whose top and bottom
//! edges are nearly level become axis-aligned boxes: they are sorted by vertical centre, cut
//! into lines where the centre jumps, and within a line neighbours of similar height and a
//! small gap are merged into one box (a phrase, not a word), grown by a margin. The other boxes
//! stay free quadrilaterals, pushed out along their diagonals by a margin.

use super::geometry::Point;

/// `readtext`'s parameters of the grouping (`Reader.readtext`'s defaults, which differ from
/// `group_text_box`'s own for `width_ths` and `add_margin`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupingConfig {
    /// Largest |slope| of the top and bottom edges of a box kept axis-aligned (0.1).
    pub slope_ths: f64,
    /// Largest vertical-centre distance, in mean heights of the line, to join a line (0.5).
    pub ycenter_ths: f64,
    /// Largest height difference, in mean heights, to merge with the box on the left (0.5).
    pub height_ths: f64,
    /// Largest horizontal gap, in box heights, to merge with the box on the left (0.5).
    pub width_ths: f64,
    /// Margin added around each box, as a fraction of its smaller side (0.1).
    pub add_margin: f64,
    /// Boxes whose larger extent is at most this many pixels are dropped (20; 0 keeps all).
    pub min_size: i32,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        Self {
            slope_ths: 0.1,
            ycenter_ths: 0.5,
            height_ths: 0.5,
            width_ths: 0.5,
            add_margin: 0.1,
            min_size: 20,
        }
    }
}

/// An axis-aligned box `[x_min, x_max, y_min, y_max]` in pixels; it may reach past the image.
pub type HorizontalBox = [i32; 4];

/// A free quadrilateral, clockwise from the top-left corner, in pixels (f64 as easyocr keeps
/// it until the crop is cut).
pub type FreeBox = [[f64; 2]; 4];

/// The grouped boxes of one image, each list in easyocr's order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextBoxes {
    /// Line by line from the top, left to right within a line.
    pub horizontal: Vec<HorizontalBox>,
    /// In the detector's order.
    pub free: Vec<FreeBox>,
}

/// A detector polygon `x1 y1 .. x4 y4` (clockwise from the top-left) as easyocr hands it to
/// the grouping: `np.array(box).astype(np.int32)`, which truncates towards zero.
pub fn to_easyocr_ints(poly: &[f32; 8]) -> [i32; 8] {
    poly.map(|v| v as i32)
}

/// An axis-aligned box with its vertical centre and height, as `group_text_box` lists it.
#[derive(Debug, Clone, Copy)]
struct Level {
    x_min: i32,
    x_max: i32,
    y_min: i32,
    y_max: i32,
    y_center: f64,
    height: i32,
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Slope of an edge from `(x0, y0)` to `(x1, y1)`, its run floored at 10 pixels.
fn slope(x0: i32, y0: i32, x1: i32, y1: i32) -> f64 {
    f64::from(y1 - y0) / f64::from((x1 - x0).max(10))
}

/// `int(add_margin * extent)`: truncated towards zero.
fn margin(add_margin: f64, extent: i32) -> i32 {
    (add_margin * f64::from(extent)) as i32
}

/// The free quadrilateral of a tilted polygon, each corner moved out by a margin.
fn free_box(p: &[i32; 8], add_margin: f64) -> FreeBox {
    // `np.linalg.norm`: the square root of the sum of squares (not `hypot`).
    let norm = |dx: i32, dy: i32| f64::from(dx * dx + dy * dy).sqrt();
    let height = norm(p[6] - p[0], p[7] - p[1]);
    let width = norm(p[2] - p[0], p[3] - p[1]);
    let margin = f64::from((1.44 * add_margin * width.min(height)) as i32);
    let theta13 = slope(p[4], p[5], p[0], p[1]).atan().abs();
    let theta24 = slope(p[6], p[7], p[2], p[3]).atan().abs();
    let (x, y) = (|i: usize| f64::from(p[i]), |i: usize| f64::from(p[i + 1]));
    [
        [x(0) - theta13.cos() * margin, y(0) - theta13.sin() * margin],
        [x(2) + theta24.cos() * margin, y(2) - theta24.sin() * margin],
        [x(4) + theta13.cos() * margin, y(4) + theta13.sin() * margin],
        [x(6) - theta24.cos() * margin, y(6) + theta24.sin() * margin],
    ]
}

/// Cuts boxes sorted by vertical centre into lines: a box joins the current line while its
/// centre is within `ycenter_ths` mean heights of the line's mean centre.
fn split_lines(levels: &[Level], ycenter_ths: f64) -> Vec<Vec<Level>> {
    let mut lines: Vec<Vec<Level>> = Vec::new();
    let (mut heights, mut centers) = (Vec::new(), Vec::new());
    for level in levels {
        let joins = !centers.is_empty()
            && (mean(&centers) - level.y_center).abs() < ycenter_ths * mean(&heights);
        if !joins {
            lines.push(Vec::new());
            heights.clear();
            centers.clear();
        }
        heights.push(f64::from(level.height));
        centers.push(level.y_center);
        if let Some(line) = lines.last_mut() {
            line.push(*level);
        }
    }
    lines
}

/// Merges the boxes of one line, sorted by `x_min`, into runs of similar height with small
/// gaps; `x_max` of a run is that of its last box (as easyocr tracks it).
fn merge_runs(line: &[Level], config: &GroupingConfig) -> Vec<Vec<Level>> {
    let mut runs: Vec<Vec<Level>> = Vec::new();
    let mut heights: Vec<f64> = Vec::new();
    let mut x_max = 0;
    for level in line {
        let joins = !heights.is_empty() && {
            let mean_height = mean(&heights);
            (mean_height - f64::from(level.height)).abs() < config.height_ths * mean_height
                && f64::from(level.x_min - x_max)
                    < config.width_ths * f64::from(level.y_max - level.y_min)
        };
        if !joins {
            runs.push(Vec::new());
            heights.clear();
        }
        heights.push(f64::from(level.height));
        x_max = level.x_max;
        if let Some(run) = runs.last_mut() {
            run.push(*level);
        }
    }
    runs
}

/// The box around a run of boxes, grown by the margin of its smaller side.
fn enclose(run: &[Level], add_margin: f64) -> Option<HorizontalBox> {
    let x_min = run.iter().map(|l| l.x_min).min()?;
    let x_max = run.iter().map(|l| l.x_max).max()?;
    let y_min = run.iter().map(|l| l.y_min).min()?;
    let y_max = run.iter().map(|l| l.y_max).max()?;
    let m = margin(add_margin, (x_max - x_min).min(y_max - y_min));
    Some([x_min - m, x_max + m, y_min - m, y_max + m])
}

/// `group_text_box(polys, ...)` with `sort_output=True`, then `detect`'s `min_size` filter.
/// `polys` are the detector's polygons after [`to_easyocr_ints`].
pub fn group_text_boxes(polys: &[[i32; 8]], config: &GroupingConfig) -> TextBoxes {
    let mut levels = Vec::new();
    let mut free = Vec::new();
    for p in polys {
        let slope_up = slope(p[0], p[1], p[2], p[3]);
        let slope_down = slope(p[6], p[7], p[4], p[5]);
        if slope_up.abs().max(slope_down.abs()) < config.slope_ths {
            let xs = [p[0], p[2], p[4], p[6]];
            let ys = [p[1], p[3], p[5], p[7]];
            let (x_min, x_max) = (xs.into_iter().min(), xs.into_iter().max());
            let (y_min, y_max) = (ys.into_iter().min(), ys.into_iter().max());
            if let (Some(x_min), Some(x_max), Some(y_min), Some(y_max)) =
                (x_min, x_max, y_min, y_max)
            {
                levels.push(Level {
                    x_min,
                    x_max,
                    y_min,
                    y_max,
                    y_center: 0.5 * f64::from(y_min + y_max),
                    height: y_max - y_min,
                });
            }
        } else {
            free.push(free_box(p, config.add_margin));
        }
    }
    // A stable sort, as Python's `sorted`.
    levels.sort_by(|a, b| a.y_center.total_cmp(&b.y_center));

    let mut horizontal = Vec::new();
    for line in split_lines(&levels, config.ycenter_ths) {
        if let [only] = line.as_slice() {
            let m = margin(
                config.add_margin,
                (only.x_max - only.x_min).min(only.height),
            );
            horizontal.push([
                only.x_min - m,
                only.x_max + m,
                only.y_min - m,
                only.y_max + m,
            ]);
            continue;
        }
        let mut line = line;
        line.sort_by_key(|l| l.x_min);
        horizontal.extend(
            merge_runs(&line, config)
                .iter()
                .filter_map(|run| enclose(run, config.add_margin)),
        );
    }
    if config.min_size > 0 {
        let min_size = f64::from(config.min_size);
        horizontal.retain(|b| (b[1] - b[0]).max(b[3] - b[2]) > config.min_size);
        free.retain(|q| {
            let spread = |axis: usize| {
                let values = q.map(|c| c[axis]);
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let min = values.iter().copied().fold(f64::INFINITY, f64::min);
                max - min
            };
            spread(0).max(spread(1)) > min_size
        });
    }
    TextBoxes { horizontal, free }
}

/// The corners of a free box as `Point`s (f32), clockwise from the top-left.
pub fn free_corners(free: &FreeBox) -> [Point; 4] {
    free.map(|[x, y]| [x as f32, y as f32])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x0: i32, y0: i32, x1: i32, y1: i32) -> [i32; 8] {
        [x0, y0, x1, y0, x1, y1, x0, y1]
    }

    #[test]
    fn neighbouring_words_on_a_line_merge_into_one_box() {
        let polys = [
            rect(50, 10, 90, 30),
            rect(10, 10, 45, 30),
            rect(10, 60, 40, 80),
        ];
        let boxes = group_text_boxes(&polys, &GroupingConfig::default());
        // Line 1: gap 5 < 0.5 * 20, merged to 10..90, margin int(0.1 * 20) = 2.
        // Line 2: alone, margin int(0.1 * min(30, 20)) = 2.
        assert_eq!(boxes.horizontal, vec![[8, 92, 8, 32], [8, 42, 58, 82]]);
        assert!(boxes.free.is_empty());
    }

    #[test]
    fn a_wide_gap_splits_a_line_and_small_boxes_are_dropped() {
        let polys = [
            rect(10, 10, 45, 30),
            rect(80, 10, 120, 30),
            rect(200, 12, 210, 22),
        ];
        let boxes = group_text_boxes(&polys, &GroupingConfig::default());
        assert_eq!(boxes.horizontal, vec![[8, 47, 8, 32], [78, 122, 8, 32]]);
    }

    #[test]
    fn a_tilted_box_stays_free_with_a_margin() {
        let poly = [10, 10, 110, 40, 100, 70, 0, 40];
        let boxes = group_text_boxes(&[poly], &GroupingConfig::default());
        assert!(boxes.horizontal.is_empty());
        let [tl, _, br, _] = boxes.free[0];
        assert!(tl[0] < 10.0 && tl[1] < 10.0 && br[0] > 100.0 && br[1] > 70.0);
    }

    #[test]
    fn ints_truncate_towards_zero() {
        let poly = [-0.7, 1.9, 2.5, -3.2, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(to_easyocr_ints(&poly), [0, 1, 2, -3, 0, 0, 0, 0]);
    }
}
