//! A CLIP bundle end to end against Hugging Face transformers: tokenizer, padding, pooling,
//! pixel normalisation, projection and normalisation, through [`TextEncoder`] and
//! [`ImageEncoder`].
//!
//! The bundle is made in a temporary folder by [`add_clip_bundle`] (what `vemo models add-clip`
//! runs) from `golden/clip_tiny/`: the tiny seeded CLIP checkpoint of
//! `infra/models/golden_clip.py` plus the `tokenizer.json` (a WordLevel tokenizer over its 99
//! ids), two 32x32 PNGs and `expected_bundle.json` written by
//! `infra/models/golden_clip_bundle.py` (torch 2.15.0, transformers 5.24.0, tokenizers 0.23.3;
//! CPU, float32, eager attention). Expected: L2-normalised embeddings of 3 sentences (one cut
//! at the checkpoint's 16 tokens) tokenized by that `tokenizer.json`, padded to the longest with
//! the pad id and masked, at text layers 1 and 2 (= `get_text_features`); and of the 2 images
//! scaled to 0..1 and normalised by CLIP's mean/std, at vision layers 1 and 3
//! (= `get_image_features`). Here the images go through the pipeline's preprocessing
//! (`classifier_crop`: short side to 32, centre crop 32, an identity at 32x32) and the
//! bundle's mean/std. Tolerance: max |a - b| < 1e-4 on every embedding (f32). Both towers in
//! bf16 (what `--precision auto` runs on CUDA; candle's CPU bf16 kernels here) are held to
//! the same embeddings within 0.015 (measured: 7.0e-3; bf16 keeps 8 significant bits, softmax
//! and layer norm run in f32).

use std::path::PathBuf;

use candle_core::Device;
use serde::Deserialize;
use std::collections::BTreeMap;
use vemo_models::bundle::Bundle;
use vemo_models::hf_clip::add_clip_bundle;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::pixels::{classifier_crop, decode_pixels};

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Expected {
    sentences: Vec<String>,
    token_ids: Vec<Vec<u32>>,
    images: Vec<String>,
    text: BTreeMap<usize, Vec<Vec<f32>>>,
    image: BTreeMap<usize, Vec<Vec<f32>>>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip_tiny")
}

fn expected() -> Expected {
    let json = std::fs::read_to_string(golden_dir().join("expected_bundle.json"))
        .expect("read expected_bundle.json");
    serde_json::from_str(&json).expect("parse expected_bundle.json")
}

/// The bundle, made by `vemo models add-clip`'s code; the tempdir must outlive it.
fn bundle() -> (tempfile::TempDir, Bundle) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = add_clip_bundle(
        &golden_dir(),
        &dir.path().join("clip-tiny"),
        "clip-tiny",
        &Device::Cpu,
    )
    .expect("add-clip on clip_tiny");
    (dir, bundle)
}

/// The golden images through the pipeline's preprocessing (`classifier_crop`).
fn crops(e: &Expected, resize: u32, side: u32) -> Vec<image::RgbImage> {
    e.images
        .iter()
        .map(|name| {
            let bytes = std::fs::read(golden_dir().join(name)).expect("read png");
            classifier_crop(&decode_pixels(&bytes).expect("decode"), resize, side)
        })
        .collect()
}

fn check(name: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    check_within(name, got, want, TOLERANCE);
}

fn check_within(name: &str, got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{name}: rows");
    let mut diff = 0f32;
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{name}: width");
        diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(diff, f32::max);
    }
    println!("{name}: max |vemo - transformers| = {diff:.3e}");
    assert!(
        diff < tolerance,
        "{name}: max abs diff {diff} >= {tolerance}"
    );
}

#[test]
fn add_clip_writes_the_expected_manifest() {
    let (_dir, bundle) = bundle();
    let text = bundle.text().expect("text");
    assert_eq!((text.exits.clone(), text.default_exit), (vec![1, 2], 2));
    assert_eq!(
        text.max_tokens, 16,
        "the checkpoint's max_position_embeddings"
    );
    let image = bundle.image().expect("image");
    assert_eq!((image.exits.clone(), image.default_exit), (vec![1, 3], 3));
    assert_eq!((image.input_size, image.resize), (32, 32));
    assert!(image.conse.is_none());
    assert_eq!(bundle.manifest.version.len(), 12);
    let again = add_clip_bundle(&golden_dir(), &bundle.root, "clip-tiny", &Device::Cpu);
    assert!(
        again
            .expect_err("exists")
            .to_string()
            .contains("already holds a bundle")
    );
}

#[test]
fn clip_text_tower_matches_transformers() {
    let e = expected();
    let (_dir, bundle) = bundle();
    // The Rust tokenizers crate reads the file as Python's did (truncation keeps the EOS).
    let mut tokenizer =
        tokenizers::Tokenizer::from_file(golden_dir().join("tokenizer.json")).expect("tokenizer");
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: 16,
            ..Default::default()
        }))
        .expect("truncation");
    for (sentence, want) in e.sentences.iter().zip(&e.token_ids) {
        let ids = tokenizer.encode(sentence.as_str(), true).expect("encode");
        assert_eq!(ids.get_ids(), want.as_slice(), "{sentence}");
    }
    let refs: Vec<&str> = e.sentences.iter().map(String::as_str).collect();
    let encoder = TextEncoder::load(&bundle, &[1, 2], &Device::Cpu).expect("text encoder");
    assert_eq!(encoder.dim(), 16);
    // All at once (padded to the longest), one by one (no padding), and in batches of 2.
    for (how, batch) in [("batch of 3", 3), ("one by one", 1), ("batches of 2", 2)] {
        let got = encoder.encode_all(&refs, batch).expect("encode");
        check(&format!("text exit 1, {how}"), &got[0], &e.text[&1]);
        check(&format!("text exit 2, {how}"), &got[1], &e.text[&2]);
    }
}

#[test]
fn clip_image_tower_matches_transformers() {
    let e = expected();
    let (_dir, bundle) = bundle();
    let encoder = ImageEncoder::load(&bundle, &[3, 1], &Device::Cpu).expect("image encoder");
    assert!(!encoder.has_features());
    let names: Vec<String> = encoder
        .columns()
        .expect("columns")
        .iter()
        .map(|c| format!("{}:{}", c.name(), c.dim))
        .collect();
    assert_eq!(names, ["image_emb_e3:16", "image_emb_e1:16"]);
    let (resize, side) = encoder.input_geometry();
    let crops = crops(&e, resize, side);
    let refs: Vec<_> = crops.iter().collect();
    let got = encoder.encode_all(&refs, 1).expect("encode");
    assert!(got.features.is_none());
    check("image exit 3", &got.joint[0], &e.image[&3]);
    check("image exit 1", &got.joint[1], &e.image[&1]);
}

#[test]
fn clip_towers_in_bf16_stay_close_to_transformers() {
    let e = expected();
    let (_dir, bundle) = bundle();
    let bf16 = vemo_models::device::Precision::Bf16;
    let text = TextEncoder::load_in(&bundle, &[1, 2], false, &Device::Cpu, bf16).expect("text");
    let refs: Vec<&str> = e.sentences.iter().map(String::as_str).collect();
    let got = text.encode_all(&refs, 3).expect("encode text");
    check_within("bf16 text exit 1", &got[0], &e.text[&1], 0.015);
    check_within("bf16 text exit 2", &got[1], &e.text[&2], 0.015);
    let image = ImageEncoder::load_in(&bundle, &[3, 1], &Device::Cpu, bf16).expect("image");
    let (resize, side) = image.input_geometry();
    let crops = crops(&e, resize, side);
    let refs: Vec<_> = crops.iter().collect();
    let got = image.encode_all(&refs, 2).expect("encode images");
    check_within("bf16 image exit 3", &got.joint[0], &e.image[&3], 0.015);
    check_within("bf16 image exit 1", &got.joint[1], &e.image[&1], 0.015);
}
