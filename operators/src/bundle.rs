//! Model bundles: a folder with `bundle.toml`, weights as safetensors and tokenizer files.
//!
//! A bundle lists its sub-modules (text tower, image tower with its ConSE class table, exit
//! heads); a job loads only those its tasks and exits need.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The vemo home folder holding `models/`, `cache/` and `corpus/`: `$VEMO_HOME`, else
/// `~/.cache/vemo`.
pub fn vemo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("VEMO_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    user_home.join(".cache").join("vemo")
}

/// Name of the bundle's description file.
pub const BUNDLE_FILE: &str = "bundle.toml";

/// `bundle.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Bundle name, e.g. `vemo-mini`.
    pub id: String,
    /// Bundle version; rows record `id@version`.
    pub version: String,
    /// The text tower, if the bundle has one.
    pub text: Option<TextTowerSpec>,
    /// The image tower, if the bundle has one.
    pub image: Option<ImageTowerSpec>,
    /// Trained exit heads (safetensors, see `vemo train exits`), relative to the bundle folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_heads: Option<String>,
}

/// The image tower of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTowerSpec {
    /// Architecture; only `efficientnet-lite0` so far.
    pub architecture: String,
    /// Weights (safetensors), relative to the bundle folder.
    pub weights: String,
    /// Side of the square model input in pixels.
    pub input_size: usize,
    /// The short side is resized to this before the centre crop of `input_size`.
    pub resize: usize,
    /// Exits: stage numbers (1..=7) after which an embedding may be taken; the last stage is
    /// the full classifier, whose embedding is ConSE's; lower ones need a trained exit head.
    pub exits: Vec<usize>,
    /// Exit used when a job names none.
    pub default_exit: usize,
    /// Where the weights came from (package and version).
    pub source: String,
    /// ConSE: the class-embedding table that puts the classifier's output in the caption space.
    pub conse: ConseSpec,
}

/// ConSE settings of an image tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConseSpec {
    /// Class embeddings (safetensors, tensor `class_embeddings`), relative to the bundle folder.
    pub classes: String,
    /// Classes each image's embedding mixes (T); the class count or more mixes all.
    pub top_k: usize,
    /// Softmax temperature applied to the logits.
    pub temperature: f64,
    /// Where the class names came from and how they were embedded.
    pub source: String,
}

/// The text tower of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTowerSpec {
    /// Architecture; only `bert` so far.
    pub architecture: String,
    /// `config.json` of the checkpoint, relative to the bundle folder.
    pub config: String,
    /// Weights (safetensors), relative to the bundle folder.
    pub weights: String,
    /// `tokenizer.json` (Hugging Face tokenizers), relative to the bundle folder.
    pub tokenizer: String,
    /// Longest caption in tokens; longer ones are truncated (the checkpoint's own limit).
    pub max_tokens: usize,
    /// Exits (layer counts after which an embedding may be taken).
    pub exits: Vec<usize>,
    /// Exit used when a job names none.
    pub default_exit: usize,
    /// Where the weights came from (package and version).
    pub source: String,
}

/// An opened bundle: its folder and its manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle folder.
    pub root: PathBuf,
    /// The parsed `bundle.toml`.
    pub manifest: BundleManifest,
}

impl Bundle {
    /// Opens and checks the bundle in `root`: the manifest parses and every file it names exists.
    pub fn open(root: &Path) -> Result<Self> {
        let fail = |reason: String| Error::Bundle {
            path: root.display().to_string(),
            reason,
        };
        let file = root.join(BUNDLE_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            fail(format!(
                "cannot read {BUNDLE_FILE}: {e} (run `vemo models pull` first)"
            ))
        })?;
        let manifest: BundleManifest =
            toml::from_str(&text).map_err(|e| fail(format!("{BUNDLE_FILE}: {e}")))?;
        let bundle = Bundle {
            root: root.to_path_buf(),
            manifest,
        };
        if let Some(text) = &bundle.manifest.text {
            for rel in [&text.config, &text.weights, &text.tokenizer] {
                if !bundle.root.join(rel).is_file() {
                    return Err(fail(format!("missing file {rel}")));
                }
            }
            if !text.exits.contains(&text.default_exit) {
                return Err(fail(format!(
                    "default_exit {} not in exits",
                    text.default_exit
                )));
            }
        }
        if let Some(image) = &bundle.manifest.image {
            for rel in [&image.weights, &image.conse.classes] {
                if !bundle.root.join(rel).is_file() {
                    return Err(fail(format!("missing file {rel}")));
                }
            }
            if !image.exits.contains(&image.default_exit) {
                return Err(fail(format!(
                    "image default_exit {} not in exits",
                    image.default_exit
                )));
            }
        }
        if let Some(rel) = &bundle.manifest.exit_heads
            && !bundle.root.join(rel).is_file()
        {
            return Err(fail(format!("missing file {rel}")));
        }
        Ok(bundle)
    }

    /// `id@version`, written into every row.
    pub fn id(&self) -> String {
        format!("{}@{}", self.manifest.id, self.manifest.version)
    }

    /// The text tower, or a bundle error naming what is missing.
    pub fn text(&self) -> Result<&TextTowerSpec> {
        self.manifest.text.as_ref().ok_or_else(|| Error::Bundle {
            path: self.root.display().to_string(),
            reason: "the job needs a text tower and this bundle has none".into(),
        })
    }

    /// The image tower, or a bundle error naming what is missing.
    pub fn image(&self) -> Result<&ImageTowerSpec> {
        self.manifest.image.as_ref().ok_or_else(|| Error::Bundle {
            path: self.root.display().to_string(),
            reason: "the job needs an image tower and this bundle has none".into(),
        })
    }

    /// The trained exit heads (none when the bundle has no heads file).
    pub fn exit_heads(
        &self,
        device: &candle_core::Device,
    ) -> Result<crate::models::exit_heads::ExitHeads> {
        match &self.manifest.exit_heads {
            Some(rel) => crate::models::exit_heads::ExitHeads::load(&self.file(rel), device),
            None => Ok(Default::default()),
        }
    }

    /// Rewrites `bundle.toml` from the manifest (after `vemo train exits` adds heads).
    pub fn save_manifest(&self) -> Result<()> {
        let text = toml::to_string_pretty(&self.manifest).map_err(|e| Error::Bundle {
            path: self.root.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = self.root.join(BUNDLE_FILE);
        std::fs::write(&path, text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            cause: e,
        })
    }

    /// Absolute path of a file named in the manifest.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}
