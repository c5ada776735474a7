//! Parity of the glue between detector and recognizer with easyocr 1.7.2.
//!
//! `golden/spotting_glue.json` and the images and crops under `fixtures/spotting/` were written
//! by `infra/models/golden_spotting_glue.py`: easyocr's own `Reader.detect` and `readtext` (CPU,
//! not quantised) on scikit-image's `page.png` and a drawn RGB scene with rotated words. The
//! detector's raw polygons recorded there go through the Rust grouping and crops.
//! Tolerances: the grey image bit-exact; the same axis-aligned boxes; free boxes within 1e-9
//! pixels; crops of the same size, pixels within 1 grey level (bit-exact here: 0 of 94,393
//! pixels differ, 12,458 of them warped; the warp's f32 rounding could still split a rare
//! pixel elsewhere; slices are exact); with the recognizer, readtext's strings
//! and confidences within 1e-3.
//!
//! The recognition step needs `english_g2.safetensors` and `english_g2_characters.txt` in
//! the pulled bundle's `spotting/`; it is skipped with a message when the bundle is absent unless
//! `VEMO_REQUIRE_BUNDLE=1` (`vemo_models::tiny_bundle::pulled_bundle`).

use std::path::{Path, PathBuf};

use candle_core::Device;
use image::GrayImage;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vemo_models::models::recognizer::{Recognizer, read_characters};
use vemo_models::spotting::crops::imread_grey;
use vemo_models::spotting::lines::{group_text_boxes, to_easyocr_ints};
use vemo_models::spotting::{GroupingConfig, TextCrop, boxes_to_crops};
use vemo_models::tiny_bundle::pulled_bundle;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spotting")
}

fn golden() -> Vec<Value> {
    let golden: Value =
        serde_json::from_str(include_str!("golden/spotting_glue.json")).expect("golden");
    golden["images"].as_array().expect("images").clone()
}

/// The grey image easyocr's recognizer reads for the file (`cv2.imread(.., GRAYSCALE)`).
fn grey(name: &str) -> GrayImage {
    let image = image::open(fixtures().join(format!("{name}.png"))).expect("image");
    match image {
        image::DynamicImage::ImageLuma8(grey) => grey,
        other => imread_grey(&other.to_rgb8()),
    }
}

fn raw_polys(image: &Value) -> Vec<[f32; 8]> {
    let ints: Vec<[i32; 8]> = serde_json::from_value(image["raw_polys"].clone()).expect("polys");
    ints.iter().map(|p| p.map(|v| v as f32)).collect()
}

fn crops(image: &Value) -> Vec<TextCrop> {
    let name = image["name"].as_str().expect("name");
    boxes_to_crops(&raw_polys(image), &grey(name), &GroupingConfig::default())
}

/// readtext's box of a result as a flat polygon.
fn readtext_polygon(result: &Value) -> [f32; 8] {
    let corners: Vec<[f64; 2]> = serde_json::from_value(result["box"].clone()).expect("box");
    let flat: Vec<f32> = corners.iter().flatten().map(|&v| v as f32).collect();
    flat.try_into().expect("4 corners")
}

#[test]
fn grey_levels_match_imread() {
    for image in golden() {
        let name = image["name"].as_str().expect("name");
        let digest = hex::encode(Sha256::digest(grey(name).as_raw()));
        assert_eq!(
            digest,
            image["grey_sha256"].as_str().expect("sha"),
            "{name}"
        );
    }
}

#[test]
fn grouping_matches_detect() {
    for image in golden() {
        let name = image["name"].as_str().expect("name");
        let ints: Vec<[i32; 8]> = raw_polys(&image).iter().map(to_easyocr_ints).collect();
        let boxes = group_text_boxes(&ints, &GroupingConfig::default());
        let horizontal: Vec<[i32; 4]> =
            serde_json::from_value(image["horizontal_list"].clone()).expect("horizontal");
        let free: Vec<[[f64; 2]; 4]> =
            serde_json::from_value(image["free_list"].clone()).expect("free");
        assert_eq!(boxes.horizontal, horizontal, "{name}: horizontal boxes");
        assert_eq!(boxes.free.len(), free.len(), "{name}: free boxes");
        let diff = boxes
            .free
            .iter()
            .flatten()
            .flatten()
            .zip(free.iter().flatten().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "{name}: {} raw polygons -> {} horizontal + {} free boxes, free max |diff| {diff:e}",
            ints.len(),
            horizontal.len(),
            free.len()
        );
        assert!(diff < 1e-9, "{name}: free boxes differ by {diff}");
    }
}

#[test]
fn crops_match_get_image_list() {
    for image in golden() {
        let name = image["name"].as_str().expect("name");
        let want = image["crops"].as_array().expect("crops");
        let got = crops(&image);
        assert_eq!(got.len(), want.len(), "{name}: crops");
        let results = image["readtext"].as_array().expect("readtext");
        for (k, ((crop, want), result)) in got.iter().zip(want).zip(results).enumerate() {
            let shape: Vec<u32> = serde_json::from_value(want["shape"].clone()).expect("shape");
            assert_eq!(
                [crop.image.height(), crop.image.width()],
                [shape[0], shape[1]],
                "{name} crop {k}: shape"
            );
            let file = want["file"].as_str().expect("file");
            let reference = image::open(fixtures().join(file)).expect("crop").to_luma8();
            let diffs: Vec<u8> = crop
                .image
                .iter()
                .zip(reference.iter())
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let max = diffs.iter().copied().max().unwrap_or(0);
            let off = diffs.iter().filter(|&&d| d > 0).count();
            println!(
                "{name} crop {k} {}x{}: max |diff| {max}, {off} of {} pixels differ",
                shape[1],
                shape[0],
                diffs.len()
            );
            assert!(max <= 1, "{name} crop {k}: pixels differ by {max}");
            let polygon = readtext_polygon(result);
            let corner_diff = crop
                .polygon
                .iter()
                .zip(&polygon)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                corner_diff < 1e-4,
                "{name} crop {k}: polygon {:?}",
                crop.polygon
            );
        }
    }
}

#[test]
fn recognized_crops_match_readtext() {
    let Some(bundle) = pulled_bundle("recognized_crops_match_readtext") else {
        return;
    };
    let dir = bundle.join("spotting");
    let weights = dir.join("english_g2.safetensors");
    let characters = read_characters(&dir.join("english_g2_characters.txt")).expect("characters");
    let recognizer = Recognizer::load(&weights, &characters, &Device::Cpu).expect("english_g2");
    let mut worst = 0f32;
    for image in golden() {
        let name = image["name"].as_str().expect("name");
        let images: Vec<GrayImage> = crops(&image).into_iter().map(|c| c.image).collect();
        let read = recognizer.recognize(&images).expect("recognize");
        let want = image["readtext"].as_array().expect("readtext");
        assert_eq!(read.len(), want.len(), "{name}: results");
        for (got, want) in read.iter().zip(want) {
            let confidence = want["confidence"].as_f64().expect("confidence") as f32;
            println!(
                "{name}: {:?} {:.4} (readtext {:?} {confidence:.4})",
                got.text, got.confidence, want["text"]
            );
            assert_eq!(got.text, want["text"].as_str().expect("text"), "{name}");
            worst = worst.max((got.confidence - confidence).abs());
        }
    }
    println!("confidence max |diff| {worst:e}");
    assert!(worst < 1e-3, "confidences differ by {worst}");
}
