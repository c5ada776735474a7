//! The legacy `.pth` reader against torch itself.
//!
//! `fixtures/legacy.pth` and the expected values in `fixtures/legacy.json` were written by
//! `infra/models/legacy_pth_fixture.py` with torch 2.15.0 (`torch.save(...,
//! _use_new_zipfile_serialization=False)`): float32 tensors of ranks 0-4, an int64 scalar, an
//! `nn.Parameter`, a transposed (non-contiguous) view, two views sharing one storage at
//! different offsets, and a float16 tensor. Values must match exactly (tolerance 0: the bytes
//! are copied, float16 widened).

use vemo_models::torch_legacy::{TorchDtype, import_to_safetensors, read_state_dict};

#[test]
fn legacy_state_dict_matches_torch() {
    let tensors = read_state_dict(include_bytes!("fixtures/legacy.pth")).expect("read fixture");
    let expected: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/legacy.json")).expect("expected JSON");
    let expected = expected["tensors"].as_object().expect("tensors");
    let mut names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "_conv_stem.weight", "file order kept");
    names.sort_unstable();
    assert_eq!(
        names,
        expected.keys().map(String::as_str).collect::<Vec<_>>(),
        "same tensors"
    );
    for tensor in &tensors {
        let want = &expected[&tensor.name];
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).expect("shape");
        let values: Vec<f64> = serde_json::from_value(want["values"].clone()).expect("values");
        assert_eq!(tensor.shape, shape, "{}", tensor.name);
        let got = tensor.to_f32();
        assert_eq!(got.len(), values.len(), "{}", tensor.name);
        for (g, w) in got.iter().zip(&values) {
            assert_eq!(*g, *w as f32, "{}: {g} != {w}", tensor.name);
        }
    }
    let count = tensors
        .iter()
        .find(|t| t.name == "_bn0.num_batches_tracked")
        .expect("int tensor");
    assert_eq!(
        (count.dtype, count.to_f32()),
        (TorchDtype::I64, vec![123.0])
    );
}

#[test]
fn import_writes_safetensors_candle_can_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pth = dir.path().join("legacy.pth");
    std::fs::write(&pth, include_bytes!("fixtures/legacy.pth")).expect("write");
    let out = dir.path().join("legacy.safetensors");
    let summary = import_to_safetensors(&pth, &out).expect("import");
    assert_eq!(summary.tensors, 8);
    let loaded = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).expect("load");
    let transposed = loaded["transposed"].to_vec2::<f32>().expect("2-d f32");
    assert_eq!(
        transposed[0][1],
        6.0 / 7.0,
        "row-major copy of a transposed view"
    );
    assert_eq!(
        loaded["_bn0.num_batches_tracked"].dtype(),
        candle_core::DType::I64
    );
}
