//! Parity of the english_g2 recognizer port with easyocr 1.7.2.
//!
//! `golden/recognizer.json` and the crops under `fixtures/recognizer/` were written by
//! `infra/models/golden_recognizer.py`: easyocr's own recognizer (f32, not quantised, eval mode,
//! CPU, torch 2.15.0) on seven word crops, 64 pixels high, cut from scikit-image's `page.png` or
//! rendered with Pillow's default font. Tolerances: logits max |a - b| < 1e-3 (the golden
//! values are rounded to 1e-4), the same strings, confidence within 1e-3.
//!
//! Needs the pulled bundle's `spotting/english_g2.safetensors` and `english_g2_characters.txt`;
//! skips with a message when the bundle is absent unless `VEMO_REQUIRE_BUNDLE=1`
//! (`vemo_models::tiny_bundle::pulled_bundle`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use vemo_models::models::recognizer::{Recognizer, read_characters};
use vemo_models::tiny_bundle::pulled_bundle;

/// The english_g2 recognizer, or `None` (after saying so) when the bundle is absent and not
/// required.
fn recognizer(test: &str) -> Option<Recognizer> {
    let dir = pulled_bundle(test)?.join("spotting");
    let characters = read_characters(&dir.join("english_g2_characters.txt")).expect("characters");
    let weights = dir.join("english_g2.safetensors");
    Some(Recognizer::load(&weights, &characters, &Device::Cpu).expect("load english_g2"))
}

fn fixture(name: &str) -> image::GrayImage {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/recognizer/{name}.png"));
    image::open(&path).expect("fixture crop").to_luma8()
}

fn golden() -> Vec<serde_json::Value> {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/recognizer.json")).expect("golden");
    golden["crops"].as_array().expect("crops").clone()
}

#[test]
fn logits_strings_and_confidences_match_easyocr() {
    let Some(recognizer) = recognizer("logits_strings_and_confidences_match_easyocr") else {
        return;
    };
    let crops = golden();
    let images: Vec<_> = crops
        .iter()
        .map(|c| fixture(c["name"].as_str().expect("name")))
        .collect();
    let read = recognizer.recognize(&images).expect("recognize");
    for ((crop, image), got) in crops.iter().zip(&images).zip(&read) {
        let name = crop["name"].as_str().expect("name");
        let want: Vec<f32> = serde_json::from_value(crop["logits"].clone()).expect("logits");
        let (logits, steps) = recognizer.logits(image).expect("logits");
        assert_eq!(
            steps,
            crop["steps"].as_u64().expect("steps") as usize,
            "{name}: steps"
        );
        assert_eq!(logits.len(), want.len(), "{name}: logits");
        let diff = logits
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let want_confidence = crop["confidence"].as_f64().expect("confidence") as f32;
        println!(
            "{name}: {:?} {:.4} (easyocr {:?} {want_confidence:.4}), logits max |diff| {diff:e}",
            got.text, got.confidence, crop["text"]
        );
        assert!(diff < 1e-3, "{name}: logits differ by {diff}");
        assert_eq!(
            got.text,
            crop["text"].as_str().expect("text"),
            "{name}: text"
        );
        assert!(
            (got.confidence - want_confidence).abs() < 1e-3,
            "{name}: confidence {} vs {want_confidence}",
            got.confidence
        );
    }
}

/// Throughput on CPU: 32 crops of one padded width in one batch. Run with
/// `cargo test -p vemo-operators --test recognizer_parity -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn crops_per_second_in_batches_of_32() {
    let Some(recognizer) = recognizer("crops_per_second_in_batches_of_32") else {
        return;
    };
    let names = ["region_based", "segmentation", "open_24h"];
    let crops: Vec<_> = (0..32).map(|i| fixture(names[i % names.len()])).collect();
    recognizer.recognize(&crops[..2]).expect("warm-up");
    let runs = 3;
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    for _ in 0..runs {
        recognizer.recognize(&crops).expect("recognize");
    }
    let crops_run = (runs * crops.len()) as f64;
    let per_s = crops_run / start.elapsed().as_secs_f64();
    let per_cpu_s = crops_run / (cpu_seconds() - cpu_start);
    println!(
        "english_g2 on CPU: {per_s:.1} crops/s wall, {per_cpu_s:.1} crops per CPU-second \
         (batches of 32 crops padded to 320 x 64)"
    );
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, 100 ticks/s), so
/// that a figure taken on a shared machine can be read per CPU-second.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Case-insensitive word accuracy on the first `VEMO_CROPS_LIMIT` (500) crops of an ICDAR 2015
/// style `gt.txt` in `VEMO_CROPS_DIR` (lines `word_1.png, "Text"`), a sanity figure next to
/// easyocr's on the same crops. Writes `NAME\tTEXT\tCONFIDENCE` lines to `VEMO_CROPS_OUT` if set.
#[test]
#[ignore = "needs VEMO_CROPS_DIR"]
fn word_accuracy_on_icdar_crops() {
    let Some(recognizer) = recognizer("word_accuracy_on_icdar_crops") else {
        return;
    };
    let Some(dir) = std::env::var_os("VEMO_CROPS_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED word_accuracy_on_icdar_crops: VEMO_CROPS_DIR is not set");
        return;
    };
    let limit: usize = std::env::var("VEMO_CROPS_LIMIT").map_or(500, |v| v.parse().expect("limit"));
    let gt = std::fs::read_to_string(dir.join("gt.txt")).expect("gt.txt");
    let rows: Vec<(String, String)> = gt
        .trim_start_matches('\u{feff}')
        .lines()
        .filter_map(|line| line.split_once(", "))
        .map(|(name, text)| {
            let text = text
                .trim()
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(text);
            (name.to_string(), text.replace("\\\"", "\""))
        })
        .take(limit)
        .collect();
    let crops: Vec<_> = rows
        .iter()
        .map(|(name, _)| {
            let rgb = image::open(dir.join(name)).expect("crop").to_rgb8();
            vemo_models::models::recognizer::prepare::to_gray(&rgb)
        })
        .collect();
    let start = Instant::now();
    let read = recognizer.recognize(&crops).expect("recognize");
    let seconds = start.elapsed().as_secs_f64();
    let correct = rows
        .iter()
        .zip(&read)
        .filter(|((_, want), got)| got.text.to_lowercase() == want.to_lowercase())
        .count();
    if let Some(out) = std::env::var_os("VEMO_CROPS_OUT") {
        let lines: String = rows
            .iter()
            .zip(&read)
            .map(|((name, _), got)| format!("{name}\t{}\t{:.5}\n", got.text, got.confidence))
            .collect();
        std::fs::write(out, lines).expect("write");
    }
    println!(
        "english_g2 (vemo): {correct}/{} = {:.4} case-insensitive word accuracy, {:.1} crops/s",
        rows.len(),
        correct as f64 / rows.len() as f64,
        rows.len() as f64 / seconds
    );
}
