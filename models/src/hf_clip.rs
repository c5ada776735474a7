//! Bundles from a CLIP checkpoint in the Hugging Face layout: `config.json`,
//! `model.safetensors` and `tokenizer.json`, as `CLIPModel.save_pretrained` and
//! `CLIPProcessor.save_pretrained` write them.
//!
//! [`add_clip_bundle`] (what `vemo models add-clip` runs) checks such a folder, hard-links (or
//! copies) its three files into a bundle folder and writes a `bundle.toml` whose text and image
//! towers are the checkpoint's two towers ([`clip_manifest`]).

use std::path::Path;

use candle_core::{DType, Device};
use sha2::{Digest, Sha256};

use crate::bundle::{
    BUNDLE_FILE, Bundle, BundleManifest, ImageArchitecture, ImageTowerSpec, TextArchitecture,
    TextTowerSpec,
};
use crate::models::clip::{ClipConfig, ClipModel};
use crate::{Error, Result};

/// The files of a Hugging Face CLIP folder that a bundle uses.
pub const FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// CLIP's pixel mean (R, G, B) on 0..1 pixels, from OpenAI's preprocessing: 0.48145466,
/// 0.4578275, 0.40821073.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's pixel standard deviation (R, G, B) on 0..1 pixels: OpenAI's 0.26862954, 0.26130258,
/// 0.27577711 as the nearest f32 (written with the fewest digits that give it).
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// CLIP's context length: captions are cut to this many tokens (or the checkpoint's
/// `max_position_embeddings`, if smaller).
pub const MAX_TOKENS: usize = 77;

/// Exits offered for a tower of `layers` layers: the middle layer and the last.
pub fn default_exits(layers: usize) -> Vec<usize> {
    let mut exits = vec![(layers / 2).max(1), layers];
    exits.dedup();
    exits
}

/// The manifest of a bundle made of one CLIP checkpoint's files (named as in [`FILES`]):
/// exits at the middle and last layer of each tower (the last is the default), captions cut at
/// [`MAX_TOKENS`], images centre-cropped to the checkpoint's `image_size` (short side resized
/// to it), CLIP's mean and std.
pub fn clip_manifest(id: &str, version: &str, cfg: &ClipConfig, source: &str) -> BundleManifest {
    let [config, weights, tokenizer] = FILES.map(String::from);
    let text_exits = default_exits(cfg.text_config.num_hidden_layers);
    let image_exits = default_exits(cfg.vision_config.num_hidden_layers);
    BundleManifest {
        id: id.into(),
        version: version.into(),
        text: Some(TextTowerSpec {
            architecture: TextArchitecture::Clip,
            config: config.clone(),
            weights: weights.clone(),
            tokenizer,
            max_tokens: MAX_TOKENS.min(cfg.text_config.max_position_embeddings),
            default_exit: cfg.text_config.num_hidden_layers,
            exits: text_exits,
            source: source.into(),
        }),
        image: Some(ImageTowerSpec {
            architecture: ImageArchitecture::Clip,
            config: Some(config),
            weights,
            input_size: cfg.vision_config.image_size,
            resize: cfg.vision_config.image_size,
            default_exit: cfg.vision_config.num_hidden_layers,
            exits: image_exits,
            source: source.into(),
            mean: Some(CLIP_MEAN),
            std: Some(CLIP_STD),
            conse: None,
        }),
        exit_heads: None,
        spotting: None,
        ner: None,
    }
}

/// Makes the bundle `id` in `target` from the Hugging Face CLIP folder `source` and opens it.
/// The checkpoint is loaded once on `device` to check it. A missing file, a config that is not
/// a CLIP config, weights that do not fit it, an unreadable tokenizer, or a `target` that
/// already holds a bundle is a [`Error::Bundle`] (a user error) saying what to fix.
pub fn add_clip_bundle(source: &Path, target: &Path, id: &str, device: &Device) -> Result<Bundle> {
    let fail = |path: &Path, reason: String| Error::Bundle {
        path: path.display().to_string(),
        reason,
    };
    for file in FILES {
        if !source.join(file).is_file() {
            let hint = match file {
                "model.safetensors" if source.join("pytorch_model.bin").is_file() => {
                    "; only pytorch_model.bin is there: save the model again with \
                     save_pretrained(..., safe_serialization=True)"
                }
                "tokenizer.json" => {
                    "; save the fast tokenizer there (CLIPProcessor or CLIPTokenizerFast \
                     .save_pretrained)"
                }
                _ => "",
            };
            return Err(fail(
                source,
                format!(
                    "missing {file}: a Hugging Face CLIP folder holds {}{hint}",
                    FILES.join(", ")
                ),
            ));
        }
    }
    let config_path = source.join(FILES[0]);
    let json = std::fs::read_to_string(&config_path).map_err(|cause| Error::Io {
        path: config_path.display().to_string(),
        cause,
    })?;
    let raw: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| fail(&config_path, format!("not JSON: {e}")))?;
    let model_type = raw.get("model_type").and_then(|v| v.as_str());
    if model_type != Some("clip") {
        return Err(fail(
            &config_path,
            format!(
                "model_type is {}, not \"clip\": add-clip takes the folder of a \
                 transformers CLIPModel (CLIPModel.save_pretrained)",
                model_type.map_or("missing".into(), |t| format!("\"{t}\""))
            ),
        ));
    }
    let cfg = ClipConfig::from_json(&json)
        .map_err(|e| fail(&config_path, format!("not a CLIP config: {e}")))?;
    ClipModel::from_files(&config_path, &source.join(FILES[1]), device, DType::F32)?;
    let tokenizer_path = source.join(FILES[2]);
    tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| fail(&tokenizer_path, format!("not a tokenizers file: {e}")))?;

    if target.join(BUNDLE_FILE).exists() {
        return Err(fail(
            target,
            "already holds a bundle: remove the folder or choose another name".into(),
        ));
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |cause| Error::Io { path, cause }
    };
    std::fs::create_dir_all(target).map_err(io(target))?;
    for file in FILES {
        let (from, to) = (source.join(file), target.join(file));
        if to.exists() {
            std::fs::remove_file(&to).map_err(io(&to))?;
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io(&to))?;
        }
    }
    let version = weights_digest(&target.join(FILES[1]))?;
    let transformers = raw
        .get("transformers_version")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    let origin = format!(
        "Hugging Face CLIP folder {} (transformers {transformers})",
        source.display()
    );
    let manifest = clip_manifest(id, &version, &cfg, &origin);
    let toml = toml::to_string(&manifest).map_err(|e| fail(target, e.to_string()))?;
    let header = format!(
        "# {id}: a CLIP checkpoint in the Hugging Face layout, added by `vemo models add-clip`.\n\
         # version: the first 12 hex digits of model.safetensors' SHA-256.\n\n"
    );
    let path = target.join(BUNDLE_FILE);
    std::fs::write(&path, header + &toml).map_err(io(&path))?;
    Bundle::open(target)
}

/// The first 12 hex digits of the SHA-256 of a file.
fn weights_digest(path: &Path) -> Result<String> {
    let io = |cause| Error::Io {
        path: path.display().to_string(),
        cause,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(hex::encode(hasher.finalize())[..12].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_the_middle_and_last_layer() {
        assert_eq!(default_exits(12), vec![6, 12]);
        assert_eq!(default_exits(3), vec![1, 3]);
        assert_eq!(default_exits(1), vec![1]);
    }

    #[test]
    fn manifest_round_trips_through_toml() {
        let cfg = ClipConfig::vit_base_patch32();
        let manifest = clip_manifest("clip-b32", "abc", &cfg, "test");
        let text = toml::to_string_pretty(&manifest).expect("serialise");
        let back: BundleManifest = toml::from_str(&text).expect("parse");
        assert_eq!(back, manifest);
        let image = back.image.expect("image tower");
        assert_eq!((image.input_size, image.resize), (224, 224));
        assert_eq!(image.exits, vec![6, 12]);
        assert_eq!(back.text.expect("text tower").max_tokens, 77);
    }

    #[test]
    fn a_folder_without_weights_or_of_another_model_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("out");
        let err = add_clip_bundle(dir.path(), &target, "x", &Device::Cpu).expect_err("empty");
        assert!(
            err.is_user_error() && err.to_string().contains("missing config.json"),
            "{err}"
        );
        for file in FILES {
            std::fs::write(dir.path().join(file), "{\"model_type\": \"bert\"}").expect("write");
        }
        let err = add_clip_bundle(dir.path(), &target, "x", &Device::Cpu).expect_err("bert");
        assert!(
            err.is_user_error() && err.to_string().contains("\"bert\""),
            "{err}"
        );
        assert!(!target.exists());
    }
}
