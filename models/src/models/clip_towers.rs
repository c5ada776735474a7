//! The CLIP side of a bundle's towers: the one [`ClipModel`] that a bundle's text and image
//! towers share, the checks of a CLIP tower's exits, and the token rows CLIP's text tower takes.
//!
//! [`TextEncoder`](super::text_encoder::TextEncoder) and
//! [`ImageEncoder`](super::image_encoder::ImageEncoder) come here for `architecture = "clip"`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use candle_core::{DType, Device, Tensor};
use vemo_schemas::Tower;

use super::clip::ClipModel;
use crate::bundle::Bundle;
use crate::{Error, Result};

/// A model loaded by this process: its files, device, dtype, and the model while anyone holds it.
type Loaded = (PathBuf, PathBuf, Device, DType, Weak<ClipModel>);

/// Models loaded by this process and still in use, so that the text and the image tower of a
/// bundle (both `model.safetensors`) hold one copy of the weights.
static LOADED: Mutex<Vec<Loaded>> = Mutex::new(Vec::new());

/// The CLIP model in `config` + `weights` (paths relative to the bundle) on `device` in
/// `dtype`: the one already loaded if another tower still holds it, else freshly loaded.
pub fn shared_model(
    bundle: &Bundle,
    config: &str,
    weights: &str,
    device: &Device,
    dtype: DType,
) -> Result<Arc<ClipModel>> {
    let (config, weights) = (bundle.file(config), bundle.file(weights));
    // A panic while loading cannot leave the list inconsistent: take it back.
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    loaded.retain(|(_, _, _, _, model)| model.strong_count() > 0);
    let same = |(c, w, d, t, _): &&Loaded| {
        *c == config && *w == weights && d.same_device(device) && *t == dtype
    };
    if let Some(model) = loaded.iter().find(same).and_then(|l| l.4.upgrade()) {
        return Ok(model);
    }
    let model = Arc::new(ClipModel::from_files(&config, &weights, device, dtype)?);
    loaded.push((
        config,
        weights,
        device.clone(),
        dtype,
        Arc::downgrade(&model),
    ));
    Ok(model)
}

/// A bundle error unless every exit is a layer count the tower has (0..=`layers`).
pub fn check_exits(bundle: &Bundle, tower: Tower, exits: &[usize], layers: usize) -> Result<()> {
    match exits.iter().find(|&&e| e > layers) {
        Some(bad) => Err(Error::Bundle {
            path: bundle.root.display().to_string(),
            reason: format!(
                "{tower} exit {bad} is deeper than the CLIP {tower} tower ({layers} layers)"
            ),
        }),
        None => Ok(()),
    }
}

/// (batch, `len`) token ids: each row right-padded to `len` with a copy of its own last token
/// (an empty row with zeros).
///
/// CLIP pools one token per row: the first `eos_token_id`, or, for legacy configs
/// (`eos_token_id == 2`), the first largest id. A copy of a token already in the row, placed
/// after it, moves neither, and the causal mask keeps the pooled token from seeing anything
/// after it, so a row's embedding does not depend on the padding, whatever the tokenizer's
/// pad id (transformers pads with the pad id and masks it; it gets the same result).
pub fn padded_ids(rows: &[&[u32]], len: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<Vec<u32>> = rows
        .iter()
        .map(|row| {
            let row = &row[..row.len().min(len)];
            let pad = row.last().copied().unwrap_or(0);
            let mut padded = row.to_vec();
            padded.resize(len, pad);
            padded
        })
        .collect();
    Ok(Tensor::new(data, device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn towers_of_one_bundle_share_one_model() -> Result<()> {
        let bundle = Bundle {
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip_tiny"),
            manifest: crate::hf_clip::clip_manifest("t", "1", &Default::default(), "test"),
        };
        let load = || {
            shared_model(
                &bundle,
                "config.json",
                "model.safetensors",
                &Device::Cpu,
                DType::F32,
            )
        };
        let (text, image) = (load()?, load()?);
        assert!(Arc::ptr_eq(&text, &image));
        let weak = Arc::downgrade(&text);
        drop((text, image));
        assert!(
            weak.upgrade().is_none(),
            "the cache does not keep a model alive"
        );
        assert_eq!(load()?.config().projection_dim, 16);
        Ok(())
    }

    #[test]
    fn rows_are_padded_with_their_last_token() -> Result<()> {
        let rows: [&[u32]; 3] = [&[0, 5, 9], &[0, 7, 3, 8, 9], &[]];
        let ids = padded_ids(&rows, 5, &Device::Cpu)?.to_vec2::<u32>()?;
        assert_eq!(
            ids,
            vec![vec![0, 5, 9, 9, 9], vec![0, 7, 3, 8, 9], vec![0; 5]]
        );
        let cut = padded_ids(&rows[1..2], 3, &Device::Cpu)?.to_vec2::<u32>()?;
        assert_eq!(cut, vec![vec![0, 7, 3]]);
        Ok(())
    }
}
