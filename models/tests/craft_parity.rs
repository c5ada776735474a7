//! Parity of the CRAFT port (network, pre- and post-processing) with easyocr 1.7.2.
//!
//! `golden/craft.json` was written by `infra/models/golden_craft.py`: easyocr's own `CRAFT`
//! in eval mode, torch 2.15.0 on CPU, its `resize_aspect_ratio` / `normalizeMeanVariance`
//! pre-processing and `getDetBoxes` + `adjustResultCoordinates` with `readtext`'s defaults, on
//! scikit-image's `page.png` and `text.png` (in `fixtures/craft/`) and a tinted colour version
//! of `page.png` that this test rebuilds. Tolerances: region and affinity maps max |a - b| <
//! 1e-3 (sampled every 2nd row and column, plus each map's max and mean); the same number of
//! boxes, each golden box matched one to one with a box at IoU > 0.9.
//!
//! Needs the pulled bundle's `spotting/craft_mlt_25k.safetensors`; skips with a message when
//! the bundle is absent unless `VEMO_REQUIRE_BUNDLE=1`
//! (`vemo_models::tiny_bundle::pulled_bundle`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;
use serde::Deserialize;
use vemo_models::models::craft::Craft;
use vemo_models::models::craft::Detection;
use vemo_models::models::craft_geometry::{Point, convex_iou};
use vemo_models::tiny_bundle::pulled_bundle;

#[derive(Deserialize)]
struct Golden {
    grid_stride: usize,
    images: Vec<GoldenImage>,
}

#[derive(Deserialize)]
struct GoldenImage {
    name: String,
    map: [usize; 2],
    region: MapDigest,
    affinity: MapDigest,
    boxes: Vec<[[f64; 2]; 4]>,
}

#[derive(Deserialize)]
struct MapDigest {
    grid: Vec<Vec<f32>>,
    max: f32,
    mean: f64,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/craft")
}

fn open(name: &str) -> RgbImage {
    image::open(fixtures().join(name))
        .expect("open fixture")
        .to_rgb8()
}

/// The golden script's `page_tinted`: (p, p * 3 / 4, p / 2) from page.png's grey level.
fn page_tinted() -> RgbImage {
    let mut image = open("page.png");
    for px in image.pixels_mut() {
        let p = u16::from(px[0]);
        *px = image::Rgb([px[0], (p * 3 / 4) as u8, (p / 2) as u8]);
    }
    image
}

fn fixture(name: &str) -> RgbImage {
    match name {
        "page_tinted" => page_tinted(),
        file => open(file),
    }
}

/// The converted detector, or `None` (after saying so) when absent and not required.
fn model(test: &str) -> Option<Craft> {
    let weights = pulled_bundle(test)?.join("spotting/craft_mlt_25k.safetensors");
    Some(Craft::load(&weights, &Device::Cpu).expect("load CRAFT"))
}

fn map_diff(got: &[f32], width: usize, want: &MapDigest, stride: usize) -> f32 {
    let mut diff = 0f32;
    for (gy, row) in want.grid.iter().enumerate() {
        for (gx, &w) in row.iter().enumerate() {
            diff = diff.max((got[gy * stride * width + gx * stride] - w).abs());
        }
    }
    let max = got.iter().copied().fold(f32::MIN, f32::max);
    let mean = got.iter().map(|&v| f64::from(v)).sum::<f64>() / got.len() as f64;
    diff.max((max - want.max).abs())
        .max((mean - want.mean).abs() as f32)
}

fn points(polygon: &[[f64; 2]]) -> Vec<Point> {
    polygon.iter().map(|p| Point::new(p[0], p[1])).collect()
}

fn detection_points(d: &Detection) -> Vec<Point> {
    d.polygon
        .iter()
        .map(|p| Point::new(f64::from(p[0]), f64::from(p[1])))
        .collect()
}

/// Matches each golden box to its best unused detection; returns the lowest IoU.
fn worst_match(golden: &[[[f64; 2]; 4]], got: &[Detection]) -> f64 {
    let mut used = vec![false; got.len()];
    let mut worst = 1f64;
    for want in golden {
        let want = points(want);
        let best = got
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, d)| (i, convex_iou(&want, &detection_points(d))))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, iou)) = best else { return 0.0 };
        used[i] = true;
        worst = worst.min(iou);
    }
    worst
}

#[test]
fn craft_maps_and_boxes_match_easyocr() {
    let Some(model) = model("craft_maps_and_boxes_match_easyocr") else {
        return;
    };
    let golden: Golden =
        serde_json::from_str(include_str!("golden/craft.json")).expect("golden json");
    for want in &golden.images {
        let image = fixture(&want.name);
        let started = Instant::now();
        let maps = model.score_maps(&image).expect("score maps");
        let forward = started.elapsed();
        let boxes = model.detect(&image).expect("detect");
        assert_eq!(
            [maps.height, maps.width],
            want.map,
            "{}: map size",
            want.name
        );
        let dr = map_diff(&maps.region, maps.width, &want.region, golden.grid_stride);
        let da = map_diff(
            &maps.affinity,
            maps.width,
            &want.affinity,
            golden.grid_stride,
        );
        let worst = worst_match(&want.boxes, &boxes);
        println!(
            "{}: max |vemo - easyocr| region {dr:e}, affinity {da:e}; boxes {} (easyocr {}), \
             worst IoU {worst:.4}; maps in {forward:.2?}",
            want.name,
            boxes.len(),
            want.boxes.len()
        );
        assert!(dr < 1e-3, "{}: region maps differ by {dr}", want.name);
        assert!(da < 1e-3, "{}: affinity maps differ by {da}", want.name);
        assert_eq!(boxes.len(), want.boxes.len(), "{}: box count", want.name);
        assert!(worst > 0.9, "{}: a box matches at IoU {worst}", want.name);
    }
}

#[test]
fn batched_detection_equals_one_by_one() {
    let Some(model) = model("batched_detection_equals_one_by_one") else {
        return;
    };
    let images = [open("page.png"), open("text.png"), page_tinted()];
    let batched = model.detect_batch(&images).expect("batch");
    for (image, got) in images.iter().zip(&batched) {
        let single = model.detect(image).expect("detect");
        assert_eq!(got.len(), single.len());
        for (a, b) in got.iter().zip(&single) {
            for (p, q) in a.polygon.iter().zip(&b.polygon) {
                assert!((p[0] - q[0]).abs() < 1e-3 && (p[1] - q[1]).abs() < 1e-3);
            }
        }
    }
}

/// A `width` x `height` image tiled with page.png (text everywhere: the post-processing's worst
/// case).
fn tiled_page(width: u32, height: u32) -> RgbImage {
    let page = open("page.png");
    RgbImage::from_fn(width, height, |x, y| {
        *page.get_pixel(x % page.width(), y % page.height())
    })
}

/// Images per second of detection on CPU: `cargo test -p vemo-operators --test craft_parity
/// -- --ignored --nocapture craft_throughput`.
#[test]
#[ignore = "benchmark"]
fn craft_throughput() {
    let Some(model) = model("craft_throughput") else {
        return;
    };
    for (name, image) in [
        ("page.png", open("page.png")),
        ("640x480", tiled_page(640, 480)),
    ] {
        model.detect(&image).expect("warm-up");
        let runs = 3;
        let started = Instant::now();
        let mut boxes = 0;
        for _ in 0..runs {
            boxes = model.detect(&image).expect("detect").len();
        }
        let per_image = started.elapsed().as_secs_f64() / f64::from(runs);
        let maps_started = Instant::now();
        model.score_maps(&image).expect("maps");
        let network = maps_started.elapsed().as_secs_f64();
        println!(
            "{name} ({}x{}): {:.2} images/s ({per_image:.2} s/image, network {network:.2} s), \
             {boxes} boxes",
            image.width(),
            image.height(),
            1.0 / per_image
        );
    }
}

/// Box counts on ICDAR 2015 scenes against easyocr's boxes for the same images (a JSON object
/// image name -> list of 4-point boxes, from a throwaway run of easyocr's CRAFT and
/// getDetBoxes): `CRAFT_REFERENCE=boxes.json VEMO_ICDAR_DEV=.../icdar2015/dev cargo test ...
/// -- --ignored --nocapture craft_icdar_box_counts`.
#[test]
#[ignore = "needs a reference file and the ICDAR 2015 dev images"]
fn craft_icdar_box_counts() {
    let Some(model) = model("craft_icdar_box_counts") else {
        return;
    };
    let (Ok(reference), Ok(dev)) = (
        std::env::var("CRAFT_REFERENCE"),
        std::env::var("VEMO_ICDAR_DEV"),
    ) else {
        eprintln!("SKIPPED craft_icdar_box_counts: set CRAFT_REFERENCE and VEMO_ICDAR_DEV");
        return;
    };
    let reference: std::collections::BTreeMap<String, Vec<[[f64; 2]; 4]>> =
        serde_json::from_str(&std::fs::read_to_string(reference).expect("read reference"))
            .expect("reference json");
    let (mut ours, mut theirs, mut matched) = (0, 0, 0);
    let started = Instant::now();
    for (name, want) in &reference {
        let image = image::open(Path::new(&dev).join("images").join(name))
            .expect("open scene")
            .to_rgb8();
        let got = model.detect(&image).expect("detect");
        let hits = want
            .iter()
            .filter(|w| {
                let w = points(&w[..]);
                got.iter()
                    .any(|d| convex_iou(&w, &detection_points(d)) > 0.9)
            })
            .count();
        println!(
            "{name}: {} boxes, easyocr {}, matched at IoU > 0.9: {hits}",
            got.len(),
            want.len()
        );
        (ours, theirs, matched) = (ours + got.len(), theirs + want.len(), matched + hits);
    }
    println!(
        "total: {ours} boxes, easyocr {theirs}, matched {matched}; {:.2} images/s",
        reference.len() as f64 / started.elapsed().as_secs_f64()
    );
}
