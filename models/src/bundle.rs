//! Model bundles: a folder with `bundle.toml`, weights as safetensors and tokenizer files.
//!
//! A bundle lists its sub-modules (text tower, image tower with its ConSE class table, exit
//! heads); a job loads only those its tasks and exits need. Towers are BERT + EfficientNet-Lite0
//! (vemo-mini) or the two towers of one CLIP checkpoint in the Hugging Face layout (see
//! [`crate::hf_clip`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vemo_schemas::impl_by_name;

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
/// Where a bundle's exit heads live (written by `vemo models pull`, `vemo train align` and
/// `vemo train exits`).
pub const EXIT_HEADS_FILE: &str = "exit_heads.safetensors";

/// `architecture` of a bundle's `[text]` tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum TextArchitecture {
    /// `bert`: a BERT encoder, mean pooling.
    Bert,
    /// `clip`: the text tower of a Hugging Face CLIP checkpoint (see [`crate::hf_clip`]).
    Clip,
}

impl TextArchitecture {
    /// Every text architecture.
    pub const ALL: [Self; 2] = [Self::Bert, Self::Clip];

    /// The name `bundle.toml` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Clip => "clip",
        }
    }
}

impl_by_name!(TextArchitecture, "text architecture");

/// `architecture` of a bundle's `[image]` tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum ImageArchitecture {
    /// `efficientnet-lite0`: EfficientNet-Lite0, ConSE into the caption space.
    EfficientNetLite0,
    /// `clip`: the vision tower of a Hugging Face CLIP checkpoint (see [`crate::hf_clip`]).
    Clip,
}

impl ImageArchitecture {
    /// Every image architecture.
    pub const ALL: [Self; 2] = [Self::EfficientNetLite0, Self::Clip];

    /// The name `bundle.toml` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => "efficientnet-lite0",
            Self::Clip => "clip",
        }
    }
}

impl_by_name!(ImageArchitecture, "image architecture");

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
    /// The NER branch over the text tower, if trained (see `vemo train ner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ner: Option<NerSpec>,
    /// Trained exit heads (safetensors, see `vemo train exits`), relative to the bundle folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_heads: Option<String>,
    /// The scene-text detector and recognizer, if the bundle has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotting: Option<SpottingSpec>,
}

/// The scene-text spotting sub-module: which module jobs use, and the files of each module
/// the bundle has (`vemo models pull` installs both; switch by editing `module`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpottingSpec {
    /// `ppocr` (PP-OCRv6 small, the default) or `easyocr` (CRAFT + english_g2).
    pub module: SpottingModule,
    /// PP-OCRv6 small's detector and recognizer, if the bundle has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppocr: Option<PpocrSpec>,
    /// easyocr's CRAFT detector and english_g2 recognizer, if the bundle has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub easyocr: Option<EasyocrSpec>,
}

/// A spotting module: a text detector and a recognizer that reads its regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpottingModule {
    /// PP-OCRv6 small (DB detector, SVTR-style CTC recognizer) as RapidOCR 3.10 runs it.
    Ppocr,
    /// easyocr 1.7.2's CRAFT detector, line grouping and english_g2 recognizer.
    Easyocr,
}

impl std::fmt::Display for SpottingModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ppocr => "ppocr",
            Self::Easyocr => "easyocr",
        })
    }
}

impl std::str::FromStr for SpottingModule {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ppocr" => Ok(Self::Ppocr),
            "easyocr" => Ok(Self::Easyocr),
            other => Err(format!(
                "unknown spotting module `{other}` (ppocr or easyocr)"
            )),
        }
    }
}

/// PP-OCRv6 small: two ONNX files (the recognizer's characters are in its metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpocrSpec {
    /// The DB detector (ONNX), relative to the bundle folder.
    pub detector: String,
    /// The CTC recognizer (ONNX), relative to the bundle folder.
    pub recognizer: String,
    /// Where the files came from (package and version).
    pub source: String,
}

/// easyocr's models: CRAFT and english_g2 as safetensors, and english_g2's characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EasyocrSpec {
    /// CRAFT weights (safetensors), relative to the bundle folder.
    pub detector: String,
    /// Recognizer weights (safetensors, easyocr's `english_g2` layout).
    pub recognizer: String,
    /// The recognizer's classes after the CTC blank, one character each (UTF-8 text file).
    pub characters: String,
    /// Where the weights came from (package and version).
    pub source: String,
}

impl SpottingSpec {
    /// The files of every module listed, relative to the bundle folder.
    pub fn files(&self) -> Vec<&str> {
        let mut files = Vec::new();
        if let Some(p) = &self.ppocr {
            files.extend([p.detector.as_str(), p.recognizer.as_str()]);
        }
        if let Some(e) = &self.easyocr {
            files.extend([
                e.detector.as_str(),
                e.recognizer.as_str(),
                e.characters.as_str(),
            ]);
        }
        files
    }

    /// Whether the bundle lists the files of `module`.
    pub fn has(&self, module: SpottingModule) -> bool {
        match module {
            SpottingModule::Ppocr => self.ppocr.is_some(),
            SpottingModule::Easyocr => self.easyocr.is_some(),
        }
    }
}

/// The image tower of a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageTowerSpec {
    /// Architecture: `efficientnet-lite0` or `clip` (the vision tower of a CLIP checkpoint).
    pub architecture: ImageArchitecture,
    /// `config.json` of the checkpoint, relative to the bundle folder; required for `clip`,
    /// unused by `efficientnet-lite0`. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Weights (safetensors), relative to the bundle folder.
    pub weights: String,
    /// Side of the square model input in pixels.
    pub input_size: usize,
    /// The short side is resized to this before the centre crop of `input_size`.
    pub resize: usize,
    /// Exits. `efficientnet-lite0`: stage numbers (1..=7) after which an embedding may be
    /// taken; the last stage is the full classifier, whose embedding is ConSE's; lower ones need
    /// a trained exit head. `clip`: vision layer counts (1..=layers); every exit's class token
    /// goes through the checkpoint's `post_layernorm` and `visual_projection`.
    pub exits: Vec<usize>,
    /// Exit used when a job names none.
    pub default_exit: usize,
    /// Where the weights came from (package and version).
    pub source: String,
    /// Per-channel mean subtracted from pixels scaled to 0..1 (with `std`). Default none: the
    /// TF-Lite normalisation (pixel - 127) / 128 that EfficientNet-Lite was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation the centred 0..1 pixels are divided by (with `mean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// ConSE: the class-embedding table that puts the classifier's output in the caption
    /// space; required for `efficientnet-lite0`, unused by `clip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conse: Option<ConseSpec>,
}

impl ImageTowerSpec {
    /// How pixels are normalised: the spec's `mean`/`std`, else TF-Lite's.
    pub fn pixel_norm(&self) -> crate::pixels::PixelNorm {
        match (self.mean, self.std) {
            (Some(mean), Some(std)) => crate::pixels::PixelNorm::MeanStd { mean, std },
            _ => crate::pixels::PixelNorm::TfLite,
        }
    }

    /// What is wrong with the spec beyond its files, if anything.
    fn problem(&self) -> Option<String> {
        if !self.exits.contains(&self.default_exit) {
            return Some(format!(
                "image default_exit {} not in exits",
                self.default_exit
            ));
        }
        if self.mean.is_some() != self.std.is_some() {
            return Some("[image] needs both `mean` and `std`, or neither".into());
        }
        if self.std.is_some_and(|std| std.iter().any(|s| *s <= 0.0)) {
            return Some("[image] std must be positive".into());
        }
        match self.architecture {
            ImageArchitecture::EfficientNetLite0 if self.conse.is_none() => Some(format!(
                "an {} image tower needs an [image.conse] table",
                self.architecture
            )),
            ImageArchitecture::Clip if self.config.is_none() => Some(format!(
                "a {} image tower needs `config` (the checkpoint's config.json)",
                self.architecture
            )),
            ImageArchitecture::EfficientNetLite0 | ImageArchitecture::Clip => None,
        }
    }
}

/// The NER branch of a bundle: fine-tuned copies of the text tower's top layers over its
/// shared lower layers, and a token classifier (CoNLL-2003 tags in BIO form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NerSpec {
    /// Weights (safetensors: `branch.{i}.*`, `classifier.*`), relative to the bundle folder.
    pub weights: String,
    /// Text-tower layers shared with semantic search; the branch reads their output.
    pub shared_layers: usize,
    /// Layers in the branch.
    pub branch_layers: usize,
    /// How the weights were trained (command, data, dev F1).
    pub source: String,
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
    /// Architecture: `bert` (mean pooling) or `clip` (the text tower of a CLIP checkpoint:
    /// the EOS token through `final_layer_norm` and `text_projection`).
    pub architecture: TextArchitecture,
    /// `config.json` of the checkpoint, relative to the bundle folder.
    pub config: String,
    /// Weights (safetensors), relative to the bundle folder.
    pub weights: String,
    /// `tokenizer.json` (Hugging Face tokenizers), relative to the bundle folder.
    pub tokenizer: String,
    /// Longest caption in tokens; longer ones are truncated (the checkpoint's own limit).
    pub max_tokens: usize,
    /// Exits (layer counts after which an embedding may be taken; for `clip` 1..=layers).
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
            if let Some(problem) = image.problem() {
                return Err(fail(problem));
            }
            let conse = image.conse.as_ref().map(|c| &c.classes);
            for rel in std::iter::once(&image.weights)
                .chain(image.config.as_ref())
                .chain(conse)
            {
                if !bundle.root.join(rel).is_file() {
                    return Err(fail(format!("missing file {rel}")));
                }
            }
        }
        if let Some(ner) = &bundle.manifest.ner
            && !bundle.root.join(&ner.weights).is_file()
        {
            return Err(fail(format!("missing file {}", ner.weights)));
        }
        if let Some(rel) = &bundle.manifest.exit_heads
            && !bundle.root.join(rel).is_file()
        {
            return Err(fail(format!("missing file {rel}")));
        }
        if let Some(spotting) = &bundle.manifest.spotting {
            if !spotting.has(spotting.module) {
                let module = spotting.module;
                return Err(fail(format!(
                    "[spotting] module = \"{module}\" but there is no [spotting.{module}] table"
                )));
            }
            for rel in spotting.files() {
                if !bundle.root.join(rel).is_file() {
                    return Err(fail(format!("missing file {rel}")));
                }
            }
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

    /// The spotting sub-module, or a bundle error naming what is missing.
    pub fn spotting(&self) -> Result<&SpottingSpec> {
        self.manifest.spotting.as_ref().ok_or_else(|| Error::Bundle {
            path: self.root.display().to_string(),
            reason: "the job asks for spotted text and this bundle has no [spotting] section (run `vemo models pull`)".into(),
        })
    }

    /// The ConSE table of an EfficientNet-Lite0 image tower, or a bundle error.
    pub fn conse(&self) -> Result<&ConseSpec> {
        self.image()?.conse.as_ref().ok_or_else(|| Error::Bundle {
            path: self.root.display().to_string(),
            reason: "the image tower has no [image.conse] table".into(),
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

    /// Writes `heads` as the bundle's heads file and names it in `bundle.toml`; returns its path.
    pub fn save_exit_heads(
        &mut self,
        heads: &crate::models::exit_heads::ExitHeads,
    ) -> Result<PathBuf> {
        let path = self.file(EXIT_HEADS_FILE);
        heads.save(&path)?;
        self.manifest.exit_heads = Some(EXIT_HEADS_FILE.into());
        self.save_manifest()?;
        Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "[image]\nweights = \"w\"\ninput_size = 8\nresize = 8\nexits = [1]\n\
                         default_exit = 1\nsource = \"test\"\n";

    /// Opens a bundle whose only tower is `image` plus `extra` lines.
    fn open_image(architecture: &str, extra: &str) -> Result<Bundle> {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["w", "c", "classes"] {
            std::fs::write(dir.path().join(file), b"x").expect("write");
        }
        let toml = format!(
            "id = \"t\"\nversion = \"1\"\n{IMAGE}architecture = \"{architecture}\"\n{extra}"
        );
        std::fs::write(dir.path().join(BUNDLE_FILE), toml).expect("write");
        Bundle::open(dir.path())
    }

    #[test]
    fn image_tower_needs_what_its_architecture_uses() {
        let conse = "[image.conse]\nclasses = \"classes\"\ntop_k = 5\ntemperature = 1.0\n\
                     source = \"test\"\n";
        let err = open_image("efficientnet-lite0", "").expect_err("no conse");
        assert!(err.to_string().contains("[image.conse]"), "{err}");
        let bundle = open_image("efficientnet-lite0", conse).expect("with conse");
        assert_eq!(
            bundle.image().expect("image").pixel_norm(),
            crate::pixels::PixelNorm::TfLite
        );
        let err = open_image("clip", "").expect_err("no config");
        assert!(err.to_string().contains("needs `config`"), "{err}");
        let clip = "config = \"c\"\nmean = [0.5, 0.5, 0.5]\nstd = [0.25, 0.25, 0.25]\n";
        let bundle = open_image("clip", clip).expect("clip");
        assert!(bundle.conse().is_err());
        let err = open_image("clip", "config = \"c\"\nmean = [0.5, 0.5, 0.5]\n").expect_err("mean");
        assert!(err.to_string().contains("both `mean` and `std`"), "{err}");
        let err = open_image("resnet", "").expect_err("unknown");
        assert!(
            err.to_string().contains(
                "image architecture `resnet` is not available; image architectures are \
                 efficientnet-lite0, clip"
            ),
            "{err}"
        );
        let err = open_image("clip", "config = \"missing\"\n").expect_err("missing file");
        assert!(err.to_string().contains("missing file missing"), "{err}");
    }

    #[test]
    fn architectures_round_trip_by_name() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Towers {
            text: TextArchitecture,
            image: ImageArchitecture,
        }
        for (text, image) in TextArchitecture::ALL
            .into_iter()
            .zip(ImageArchitecture::ALL)
        {
            let towers = Towers { text, image };
            let toml = toml::to_string(&towers).expect("serialise");
            assert_eq!(
                toml,
                format!("text = \"{}\"\nimage = \"{}\"\n", text.name(), image.name())
            );
            assert_eq!(toml::from_str::<Towers>(&toml).expect("parse"), towers);
            assert_eq!(text.name().parse::<TextArchitecture>().ok(), Some(text));
            assert_eq!(
                image.to_string().parse::<ImageArchitecture>().ok(),
                Some(image)
            );
        }
        assert_eq!(
            ImageArchitecture::EfficientNetLite0.name(),
            "efficientnet-lite0"
        );
        assert_eq!(TextArchitecture::Bert.name(), "bert");
        let err = "gpt2".parse::<TextArchitecture>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "text architecture `gpt2` is not available; text architectures are bert, clip"
        );
    }
}
