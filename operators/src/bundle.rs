//! Model bundles: a folder with `bundle.toml`, weights as safetensors and tokenizer files.
//!
//! A bundle lists its sub-modules; a job loads only those its tasks need. Today the only
//! sub-module is the text tower.

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
    /// Where the weights came from (package and version).
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
        if let Some(image) = &bundle.manifest.image
            && !bundle.root.join(&image.weights).is_file()
        {
            return Err(fail(format!("missing file {}", image.weights)));
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

    /// Absolute path of a file named in the manifest.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}
