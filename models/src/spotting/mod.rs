//! Scene-text spotting around the detector and recognizer models: the [`Spotter`] that chains
//! them, easyocr's glue between them (line grouping and crops), polygon geometry, ICDAR 2015
//! ground truth and figures, and matching character queries against spotted words (the search
//! over a Lance dataset is in vemo-operators).

pub mod crops;
pub mod geometry;
pub mod icdar;
pub mod lines;
pub mod metrics;
mod spotter;
pub mod text_match;

use image::GrayImage;

pub use crops::Polygon;
pub use lines::GroupingConfig;
pub use spotter::{Spotted, Spotter};

/// The `spotted_text` of an image: its regions' texts joined by spaces, in reading order.
pub fn spotted_text(words: &[vemo_schemas::SpottedWord]) -> String {
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    texts.join(" ")
}

/// One region for the recognizer: its polygon in image pixels (clockwise from the top-left,
/// as easyocr reports it) and its upright grey crop, not yet resized.
#[derive(Debug, Clone)]
pub struct TextCrop {
    pub polygon: Polygon,
    pub image: GrayImage,
}

/// easyocr 1.7.2's glue from detector polygons (`x1 y1 .. x4 y4` in image pixels, clockwise
/// from the top-left, in the detector's order) to recognizer crops of `grey`: the polygons
/// truncated to integers, grouped into lines ([`lines::group_text_boxes`]), then cut
/// ([`crops`]). The order is `readtext`'s on CPU: the axis-aligned boxes line by line, then
/// the free ones; [`crops::sort_by_top`] gives its batched order. Boxes that leave nothing to
/// crop are skipped.
pub fn boxes_to_crops(
    polys: &[[f32; 8]],
    grey: &GrayImage,
    config: &GroupingConfig,
) -> Vec<TextCrop> {
    let ints: Vec<[i32; 8]> = polys.iter().map(lines::to_easyocr_ints).collect();
    let boxes = lines::group_text_boxes(&ints, config);
    let horizontal = boxes
        .horizontal
        .iter()
        .filter_map(|b| crops::crop_horizontal(grey, b));
    let free = boxes.free.iter().filter_map(|q| crops::crop_free(grey, q));
    horizontal
        .chain(free)
        .map(|(polygon, image)| TextCrop { polygon, image })
        .collect()
}
