//! Parity of the CLIP port with Hugging Face transformers' `CLIPModel`.
//!
//! `golden/clip_tiny/` was written by `infra/models/golden_clip.py` (torch 2.15.0,
//! transformers 5.24.0, CPU, float32, eager attention, eval mode; the versions are recorded in
//! `expected.json`): a small `CLIPConfig` (text: vocab 99, hidden 32, 2 layers, 4 heads,
//! quick_gelu, eos_token_id 49; vision: 32x32 images, 8x8 patches, hidden 32, 3 layers,
//! 4 heads, gelu; projection 16) with seeded random weights, saved as `config.json` +
//! `model.safetensors`, and its outputs on 2 token sequences and 2 images: the text and image
//! features, the text features under the legacy `eos_token_id == 2` pooling, and the projected
//! pooled token after every encoder layer (`hidden_states[L]`). Tolerance: max |a - b| < 1e-4
//! on every output (f32).
//!
//! A third test runs the real ViT-B/32 shapes on deterministic stand-in weights and checks
//! output shapes.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use vemo_models::models::clip::{ClipConfig, ClipModel};

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Expected {
    input_ids: Vec<Vec<u32>>,
    pixel_values_shape: Vec<usize>,
    pixel_values: Vec<f32>,
    text_features: Vec<Vec<f32>>,
    text_features_eos2: Vec<Vec<f32>>,
    image_features: Vec<Vec<f32>>,
    text_exits: Vec<Vec<Vec<f32>>>,
    image_exits: Vec<Vec<Vec<f32>>>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip_tiny")
}

fn expected() -> Expected {
    let path = golden_dir().join("expected.json");
    let json = std::fs::read_to_string(&path).expect("read expected.json");
    serde_json::from_str(&json).expect("parse expected.json")
}

fn inputs(e: &Expected) -> (Tensor, Tensor) {
    let ids = Tensor::new(e.input_ids.clone(), &Device::Cpu).expect("input_ids");
    let pixels = Tensor::from_vec(
        e.pixel_values.clone(),
        e.pixel_values_shape.clone(),
        &Device::Cpu,
    )
    .expect("pixel_values");
    (ids, pixels)
}

/// max |got - want| over a (batch, dim) output, after checking the shapes agree.
fn max_abs_diff(got: &Tensor, want: &[Vec<f32>]) -> f32 {
    let got = got.to_vec2::<f32>().expect("2-d output");
    assert_eq!(got.len(), want.len(), "batch size");
    got.iter()
        .zip(want)
        .flat_map(|(g, w)| {
            assert_eq!(g.len(), w.len(), "feature width");
            g.iter().zip(w).map(|(a, b)| (a - b).abs())
        })
        .fold(0.0, f32::max)
}

fn check(name: &str, got: &Tensor, want: &[Vec<f32>]) {
    let diff = max_abs_diff(got, want);
    println!("{name}: max |candle - transformers| = {diff:.3e}");
    assert!(
        diff < TOLERANCE,
        "{name}: max abs diff {diff} >= {TOLERANCE}"
    );
}

#[test]
fn tiny_clip_matches_transformers() {
    let e = expected();
    let (ids, pixels) = inputs(&e);
    let model = ClipModel::from_folder(&golden_dir(), &Device::Cpu).expect("load clip_tiny");
    let cfg = model.config();
    assert_eq!(cfg.text_config.eos_token_id, 49);
    assert_eq!(e.text_exits.len(), cfg.text_config.num_hidden_layers + 1);
    assert_eq!(e.image_exits.len(), cfg.vision_config.num_hidden_layers + 1);

    check(
        "text features",
        &model.encode_text(&ids).expect("text"),
        &e.text_features,
    );
    check(
        "image features",
        &model.encode_image(&pixels).expect("image"),
        &e.image_features,
    );

    let text_exits: Vec<usize> = (0..e.text_exits.len()).collect();
    let got = model
        .encode_text_exits(&ids, &text_exits)
        .expect("text exits");
    for (l, (g, w)) in got.iter().zip(&e.text_exits).enumerate() {
        check(&format!("text exit {l}"), g, w);
    }
    let image_exits: Vec<usize> = (0..e.image_exits.len()).collect();
    let got = model
        .encode_image_exits(&pixels, &image_exits)
        .expect("image exits");
    for (l, (g, w)) in got.iter().zip(&e.image_exits).enumerate() {
        check(&format!("image exit {l}"), g, w);
    }
    // A single shallow exit runs one layer and still matches.
    let got = model
        .encode_image_exits(&pixels, &[1])
        .expect("image exit 1");
    check("image exit 1 alone", &got[0], &e.image_exits[1]);
}

#[test]
fn tiny_clip_legacy_eos_pooling_matches_transformers() {
    let e = expected();
    let (ids, _) = inputs(&e);
    let dir = golden_dir();
    let json = std::fs::read_to_string(dir.join("config.json")).expect("read config.json");
    let mut cfg = ClipConfig::from_json(&json).expect("parse config.json");
    cfg.text_config.eos_token_id = 2;
    let weights = std::fs::read(dir.join("model.safetensors")).expect("read weights");
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .expect("safetensors");
    let model = ClipModel::load(vb, &cfg).expect("load with eos 2");
    check(
        "text features, eos_token_id 2",
        &model.encode_text(&ids).expect("text"),
        &e.text_features_eos2,
    );
}

/// Deterministic stand-in weights, fast at any size: element `i` of tensor `name` is
/// `sin(0.7 i + h(name)) / sqrt(last dim)`. candle's `VarMap` random init takes ~85 s for
/// ViT-B/32's 151M parameters in a dev build (the `rand` crates are not optimised there);
/// this takes well under a second.
struct PatternWeights;

impl candle_nn::var_builder::SimpleBackend for PatternWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let phase = name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 628;
        let scale = 1.0 / (*shape.dims().last().unwrap_or(&1) as f64).sqrt();
        Tensor::arange(0u32, shape.elem_count() as u32, dev)?
            .to_dtype(DType::F32)?
            .affine(0.7, f64::from(phase) / 100.0)?
            .sin()?
            .affine(scale, 0.0)?
            .reshape(shape)?
            .to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("PatternWeights needs a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// max |a - b| of two tensors of one shape.
fn tensor_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("diff")
}

/// ViT-B/32 (the default `ClipConfig`, transformers' openai/clip-vit-base-patch32 shapes) on
/// [`PatternWeights`]: one 224x224 image and one 7-token sequence give finite (1, 512)
/// features and exits, and the deepest exits equal the features.
#[test]
fn vit_b32_shapes_on_pattern_weights() {
    let started = Instant::now();
    let cfg = ClipConfig::vit_base_patch32();
    assert_eq!(cfg, ClipConfig::from_json("{}").expect("empty config"));
    let vb = VarBuilder::from_backend(Box::new(PatternWeights), DType::F32, Device::Cpu);
    let model = ClipModel::load(vb, &cfg).expect("ViT-B/32 on pattern weights");
    let loaded = started.elapsed();
    let finite = |t: &Tensor| {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values")
            .iter()
            .all(|v| v.is_finite())
    };

    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu).expect("pixels");
    let image = model.encode_image(&pixels).expect("image");
    assert_eq!(image.dims(), &[1, 512]);
    assert!(finite(&image));
    let exits = model
        .encode_image_exits(&pixels, &[4, 8, 12])
        .expect("image exits");
    assert!(exits.iter().all(|t| t.dims() == [1, 512] && finite(t)));
    assert!(tensor_diff(&exits[2], &image) < 1e-5);

    let ids = Tensor::new(
        &[[49406u32, 320, 1125, 539, 320, 2368, 49407]],
        &Device::Cpu,
    )
    .expect("ids");
    let text = model.encode_text(&ids).expect("text");
    assert_eq!(text.dims(), &[1, 512]);
    assert!(finite(&text));
    let exits = model
        .encode_text_exits(&ids, &[0, 6, 12])
        .expect("text exits");
    assert!(exits.iter().all(|t| t.dims() == [1, 512] && finite(t)));
    assert!(tensor_diff(&exits[2], &text) < 1e-5);
    println!(
        "ViT-B/32: weights {:.1?}, forward passes {:.1?}",
        loaded,
        started.elapsed() - loaded
    );
}
