//! For tests and smoke runs: a tiny bundle of vemo-mini's real architectures with seeded
//! random weights, written from Rust, and the one guard for tests that need the pulled bundle.
//!
//! [`write_tiny_bundle`] writes every sub-module the `semantic`, `entities` and `spotting`
//! tasks load, in the layouts and tensor names of the pulled `vemo-mini` bundle, at a fraction
//! of its widths: a 6-layer BERT text tower of width 32 with a WordPiece `tokenizer.json` of
//! 164 entries (lower-case ASCII letters, digits, punctuation and some whole words; the
//! normaliser and pre-tokenizer of MiniLM's); EfficientNet-Lite0's 16 blocks, strides and
//! kernel sizes at widths 8 to 64; the ConSE table, computed as `vemo models pull` computes it
//! (1,000 made-up class names embedded by the tiny text tower); exit heads for text exit 3 and
//! image exits 4 and 6; the NER branch (3 shared + 3 branch layers); CRAFT with its VGG16-BN
//! backbone and U-Net decoder at widths 4 to 32; and a recognizer of the english_g2 layout
//! reading 36 characters. The whole bundle is 1.4 MB, written in about a second.
//!
//! Its outputs mean nothing, except for three rules set by hand so that tests can predict
//! them: the detector's last layer is zero with a region bias of 1 and an affinity bias of 0,
//! so each image gives exactly one text region (its whole canvas); the recognizer's blank class
//! is biased down, so that region reads as a few characters; the NER classifier tags a
//! capitalised word that does not start the text as a person (a run of them as one). Tests of
//! mechanics (exactly-once output, reruns, crashes, object stores, hostile input, output
//! formats) use it through [`tiny_bundle`] and never skip; tests whose assertions need real
//! weights (parity with golden files, entities found, words read, retrieval figures) call
//! [`pulled_bundle`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::bundle::{
    BUNDLE_FILE, Bundle, BundleManifest, ConseSpec, EasyocrSpec, ImageArchitecture, ImageTowerSpec,
    NerSpec, SpottingModule, SpottingSpec, TextArchitecture, TextTowerSpec, vemo_home,
};
use crate::models::conse::{CLASSES_TENSOR, embed_classes, imagenet_class_names};
use crate::models::exit_heads::head_name;
use crate::models::text_encoder::TextEncoder;
use crate::ner::model::CASE_FEATURES;
use crate::ner::tags::{NUM_TAGS, tag_index};
use crate::{Error, Result};
use vemo_schemas::Tower;

/// Width of the text tower, hence of every joint-space embedding column of the tiny bundle.
pub const TEXT_DIM: usize = 32;
/// Width of the image tower's pooled feature (`image_feat_e7`).
pub const FEATURE_DIM: usize = 64;
/// The `id` in the tiny bundle's `bundle.toml`.
pub const TINY_ID: &str = "vemo-tiny";

const TEXT_LAYERS: usize = 6;
const TEXT_HEADS: usize = 4;
const TEXT_INTERMEDIATE: usize = 64;
const MAX_POSITIONS: usize = 512;
const NER_SHARED: usize = 3;
/// Output channels of EfficientNet-Lite0's stem, of each of its 7 stages, and of its head.
const STEM: usize = 8;
const STAGE_CHANNELS: [usize; 7] = [8, 12, 16, 20, 24, 28, 32];
/// Blocks and kernel size per stage (Lite0's), and the expansion of stages 2-7 (Lite0: 6).
const STAGE_BLOCKS: [usize; 7] = [1, 2, 2, 3, 3, 4, 1];
const STAGE_KERNELS: [usize; 7] = [3, 3, 5, 3, 5, 5, 3];
const EXPAND: usize = 2;
const CLASSES: usize = 1000;
/// The recognizer's characters (after the CTC blank).
const CHARACTERS: &str = "0123456789abcdefghijklmnopqrstuvwxyz";
const SOURCE: &str = "vemo_models::tiny_bundle: seeded random weights, for tests (not trained)";

/// Words of the made-up ConSE class names (`"{a} {b}"` for 1,000 pairs), also whole words of
/// the tokenizer.
const CLASS_WORDS: [&str; 32] = [
    "red", "green", "blue", "yellow", "black", "white", "small", "large", "old", "new", "wooden",
    "metal", "striped", "spotted", "bright", "dark", "cat", "dog", "bird", "fish", "car", "bus",
    "boat", "tree", "house", "cup", "clock", "rocket", "horse", "coin", "book", "lamp",
];
/// Other whole words of the tokenizer (anything else is spelt in letter pieces).
const WORDS: [&str; 24] = [
    "a", "an", "the", "of", "in", "on", "with", "and", "at", "by", "photo", "picture", "image",
    "close", "up", "street", "sign", "says", "open", "caption", "number", "added", "tonight",
    "item",
];

/// Seeded random tensors, named as in the checkpoints they stand for.
struct Weights {
    rng: StdRng,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            tensors: HashMap::new(),
        }
    }

    /// `name`: values around `centre`, uniform in +-`bound`.
    fn put(&mut self, name: &str, shape: &[usize], centre: f32, bound: f32) -> Result<()> {
        let n = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| centre + self.rng.random_range(-bound..=bound))
            .collect();
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
        self.tensors.insert(name.to_string(), tensor);
        Ok(())
    }

    /// A `Linear` (`{prefix}.weight` (out, in), `{prefix}.bias`) keeping the variance.
    fn linear(&mut self, prefix: &str, out: usize, input: usize) -> Result<()> {
        let bound = (3.0 / input as f32).sqrt();
        self.put(&format!("{prefix}.weight"), &[out, input], 0.0, bound)?;
        self.put(&format!("{prefix}.bias"), &[out], 0.0, 0.1)
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize) -> Result<()> {
        self.put(&format!("{prefix}.weight"), &[dim], 1.0, 0.1)?;
        self.put(&format!("{prefix}.bias"), &[dim], 0.0, 0.1)
    }

    /// A batch norm in eval mode (`weight`, `bias`, `running_mean`, `running_var`).
    fn batch_norm(&mut self, prefix: &str, channels: usize) -> Result<()> {
        self.layer_norm(prefix, channels)?;
        self.put(&format!("{prefix}.running_mean"), &[channels], 0.0, 0.1)?;
        self.put(&format!("{prefix}.running_var"), &[channels], 1.0, 0.5)
    }

    /// A convolution weight (out, in / groups, k, k) with He scaling, and a bias if asked.
    fn conv(&mut self, name: &str, out: usize, input: usize, k: usize, bias: bool) -> Result<()> {
        let bound = (6.0 / (input * k * k) as f32).sqrt();
        self.put(&format!("{name}.weight"), &[out, input, k, k], 0.0, bound)?;
        match bias {
            true => self.put(&format!("{name}.bias"), &[out], 0.0, 0.1),
            false => Ok(()),
        }
    }

    /// A BERT layer named `{prefix}.attention...` as in `encoder.layer.N`.
    fn bert_layer(&mut self, prefix: &str) -> Result<()> {
        let h = TEXT_DIM;
        for part in ["query", "key", "value"] {
            self.linear(&format!("{prefix}.attention.self.{part}"), h, h)?;
        }
        self.linear(&format!("{prefix}.attention.output.dense"), h, h)?;
        self.layer_norm(&format!("{prefix}.attention.output.LayerNorm"), h)?;
        self.linear(
            &format!("{prefix}.intermediate.dense"),
            TEXT_INTERMEDIATE,
            h,
        )?;
        self.linear(&format!("{prefix}.output.dense"), h, TEXT_INTERMEDIATE)?;
        self.layer_norm(&format!("{prefix}.output.LayerNorm"), h)
    }

    /// Sets `name` to `value` everywhere.
    fn fill(&mut self, name: &str, shape: &[usize], value: f32) -> Result<()> {
        let tensor = (Tensor::ones(shape, DType::F32, &Device::Cpu)? * f64::from(value))?;
        self.tensors.insert(name.to_string(), tensor);
        Ok(())
    }

    /// Writes the tensors to `path` in `dtype`.
    fn save(self, path: &Path, dtype: DType) -> Result<()> {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_dtype(dtype)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        candle_core::safetensors::save(&tensors, path)?;
        Ok(())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.display().to_string(),
        cause,
    }
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(io(path))
}

/// The tokenizer's vocabulary: special tokens (`[PAD]` is 0, as the text encoder pads with
/// id 0), single characters, `##` continuations, whole words.
fn vocabulary() -> Vec<String> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .map(String::from)
        .to_vec();
    let singles: Vec<char> = ('a'..='z')
        .chain('0'..='9')
        .chain(
            (0x21u8..0x7f)
                .map(char::from)
                .filter(char::is_ascii_punctuation),
        )
        .collect();
    vocab.extend(singles.iter().map(char::to_string));
    vocab.extend(
        singles
            .iter()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| format!("##{c}")),
    );
    vocab.extend(WORDS.iter().chain(&CLASS_WORDS).map(|w| w.to_string()));
    let mut seen = HashSet::new();
    vocab.retain(|t| seen.insert(t.clone()));
    vocab
}

/// `tokenizer.json` of an uncased WordPiece tokenizer laid out as MiniLM's.
fn tokenizer_json(vocab: &[String]) -> serde_json::Value {
    let ids: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    let id = |t: &str| vocab.iter().position(|v| v == t).unwrap_or(0);
    let added: Vec<serde_json::Value> = vocab[..5]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": i, "special": true, "content": t, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false})
        })
        .collect();
    let special =
        |t: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence =
        |s: &str, type_id: u32| serde_json::json!({"Sequence": {"id": s, "type_id": type_id}});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0),
                sequence("B", 1), special("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [id("[CLS]")], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [id("[SEP]")], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": ids},
    })
}

/// The text tower: `config.json`, `tokenizer.json`, `model.safetensors` (MiniLM's names,
/// without the `bert.` prefix).
fn write_text(dir: &Path) -> Result<()> {
    let vocab = vocabulary();
    let config = serde_json::json!({
        "architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": TEXT_DIM,
        "initializer_range": 0.02, "intermediate_size": TEXT_INTERMEDIATE,
        "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POSITIONS, "model_type": "bert",
        "num_attention_heads": TEXT_HEADS, "num_hidden_layers": TEXT_LAYERS, "pad_token_id": 0,
        "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": vocab.len(),
    });
    write(&dir.join("config.json"), config.to_string())?;
    write(
        &dir.join("tokenizer.json"),
        tokenizer_json(&vocab).to_string(),
    )?;
    let mut w = Weights::new(1);
    let e = "embeddings";
    w.put(
        &format!("{e}.word_embeddings.weight"),
        &[vocab.len(), TEXT_DIM],
        0.0,
        1.0,
    )?;
    w.put(
        &format!("{e}.position_embeddings.weight"),
        &[MAX_POSITIONS, TEXT_DIM],
        0.0,
        0.5,
    )?;
    w.put(
        &format!("{e}.token_type_embeddings.weight"),
        &[2, TEXT_DIM],
        0.0,
        0.5,
    )?;
    w.layer_norm(&format!("{e}.LayerNorm"), TEXT_DIM)?;
    for i in 0..TEXT_LAYERS {
        w.bert_layer(&format!("encoder.layer.{i}"))?;
    }
    w.save(&dir.join("model.safetensors"), DType::F32)
}

/// The NER branch: copies of layers shaped as the tower's top layers, the case projection
/// and the classifier, in f16 as `vemo train ner` saves them.
fn write_ner(path: &Path) -> Result<()> {
    let mut w = Weights::new(2);
    for i in 0..TEXT_LAYERS - NER_SHARED {
        w.bert_layer(&format!("branch.{i}"))?;
    }
    w.linear("case_input", TEXT_DIM, CASE_FEATURES)?;
    // The classifier: faint noise and a rule on the case features (`case_features`: index 1
    // Title case, 4 first word of the text), so that entities are predictable: a capitalised
    // word that does not start the text is a person, a run of them one person (I-PER beats
    // B-PER wherever the BIO constraint allows it).
    let inputs = 2 * TEXT_DIM + CASE_FEATURES;
    let mut weight: Vec<f32> = (0..NUM_TAGS * inputs)
        .map(|_| w.rng.random_range(-0.02..=0.02))
        .collect();
    let (title, first) = (2 * TEXT_DIM + 1, 2 * TEXT_DIM + 4);
    for (tag, if_title) in [("B-PER", 3.0), ("I-PER", 3.5)] {
        let row = tag_index(tag) * inputs;
        weight[row + title] = if_title;
        weight[row + first] = -4.0;
    }
    let mut bias = vec![0f32; NUM_TAGS];
    bias[tag_index("O")] = 1.0;
    for (name, values, shape) in [
        ("weight", weight, vec![NUM_TAGS, inputs]),
        ("bias", bias, vec![NUM_TAGS]),
    ] {
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu)?;
        w.tensors.insert(format!("classifier.{name}"), tensor);
    }
    w.save(path, DType::F16)
}

/// EfficientNet-Lite0 (efficientnet-lite-pytorch's state-dict names) at the widths above.
fn write_efficientnet(path: &Path) -> Result<()> {
    let mut w = Weights::new(3);
    w.conv("_conv_stem", STEM, 3, 3, false)?;
    w.batch_norm("_bn0", STEM)?;
    let mut input = STEM;
    let mut block = 0;
    for (stage, &out) in STAGE_CHANNELS.iter().enumerate() {
        let k = STAGE_KERNELS[stage];
        for _ in 0..STAGE_BLOCKS[stage] {
            let b = format!("_blocks.{block}");
            let inner = match stage {
                0 => input,
                _ => input * EXPAND,
            };
            if stage > 0 {
                w.conv(&format!("{b}._expand_conv"), inner, input, 1, false)?;
                w.batch_norm(&format!("{b}._bn0"), inner)?;
            }
            w.conv(&format!("{b}._depthwise_conv"), inner, 1, k, false)?;
            w.batch_norm(&format!("{b}._bn1"), inner)?;
            w.conv(&format!("{b}._project_conv"), out, inner, 1, false)?;
            w.batch_norm(&format!("{b}._bn2"), out)?;
            (input, block) = (out, block + 1);
        }
    }
    w.conv("_conv_head", FEATURE_DIM, input, 1, false)?;
    w.batch_norm("_bn1", FEATURE_DIM)?;
    w.linear("_fc", CLASSES, FEATURE_DIM)?;
    w.save(path, DType::F32)
}

/// Exit heads into the joint space: text exit 3, image exits 4 and 6.
fn write_exit_heads(path: &Path) -> Result<()> {
    let mut w = Weights::new(4);
    for (tower, exit, input) in [
        (Tower::Text, 3, TEXT_DIM),
        (Tower::Image, 4, STAGE_CHANNELS[3]),
        (Tower::Image, 6, STAGE_CHANNELS[5]),
    ] {
        w.linear(&head_name(tower, exit), TEXT_DIM, input)?;
    }
    w.save(path, DType::F32)
}

/// CRAFT (easyocr's state-dict names): VGG16-BN slices, the fc6/fc7 slice, four `double_conv`
/// decoder blocks and the head, whose last layer gives region 1 and affinity 0 everywhere.
fn write_craft(path: &Path) -> Result<()> {
    let mut w = Weights::new(5);
    // (slice, conv index, in, out); the batch norm is index + 1.
    let backbone = [
        (1, 0, 3, 4),
        (1, 3, 4, 4),
        (1, 7, 4, 8),
        (1, 10, 8, 8),
        (2, 14, 8, 16),
        (2, 17, 16, 16),
        (3, 20, 16, 16),
        (3, 24, 16, 32),
        (3, 27, 32, 32),
        (4, 30, 32, 32),
        (4, 34, 32, 32),
        (4, 37, 32, 32),
    ];
    for (slice, i, input, out) in backbone {
        let prefix = format!("basenet.slice{slice}");
        w.conv(&format!("{prefix}.{i}"), out, input, 3, true)?;
        w.batch_norm(&format!("{prefix}.{}", i + 1), out)?;
    }
    w.conv("basenet.slice5.1", 32, 32, 3, true)?;
    w.conv("basenet.slice5.2", 32, 32, 1, true)?;
    // upconvN: (1x1 in, 1x1 out = 3x3 in, 3x3 out); inputs are the previous block's output
    // and the skip (slice 4, 3, 2, 1 outputs: 32, 32, 16, 8).
    for (n, (input, mid, out)) in [(64, 32, 16), (48, 16, 8), (24, 8, 4), (12, 4, 4)]
        .into_iter()
        .enumerate()
    {
        let prefix = format!("upconv{}.conv", n + 1);
        w.conv(&format!("{prefix}.0"), mid, input, 1, true)?;
        w.batch_norm(&format!("{prefix}.1"), mid)?;
        w.conv(&format!("{prefix}.3"), out, mid, 3, true)?;
        w.batch_norm(&format!("{prefix}.4"), out)?;
    }
    for (i, input, out, k) in [(0, 4, 4, 3), (2, 4, 4, 3), (4, 4, 4, 3), (6, 4, 4, 1)] {
        w.conv(&format!("conv_cls.{i}"), out, input, k, true)?;
    }
    w.fill("conv_cls.8.weight", &[2, 4, 1, 1], 0.0)?;
    let bias = Tensor::new(&[1f32, 0.0], &Device::Cpu)?;
    w.tensors.insert("conv_cls.8.bias".into(), bias);
    w.save(path, DType::F32)
}

/// The recognizer (easyocr's `english_g2` names): 7 convolutions (two with batch norm), two
/// BiLSTM blocks of width 16, the per-step classifier over blank + [`CHARACTERS`].
fn write_recognizer(path: &Path) -> Result<()> {
    let mut w = Weights::new(6);
    let f = "FeatureExtraction.ConvNet";
    for (i, input, out, bn) in [
        (0, 1, 4, false),
        (3, 4, 8, false),
        (6, 8, 16, false),
        (8, 16, 16, false),
        (11, 16, 16, true),
        (14, 16, 16, true),
    ] {
        w.conv(&format!("{f}.{i}"), out, input, 3, !bn)?;
        if bn {
            w.batch_norm(&format!("{f}.{}", i + 1), out)?;
        }
    }
    w.conv(&format!("{f}.18"), 16, 16, 2, true)?;
    let hidden = 16;
    for block in 0..2 {
        let prefix = format!("SequenceModeling.{block}");
        // torch.nn.LSTM's parameters and initialisation: uniform in +-1/sqrt(hidden).
        let bound = (1.0 / hidden as f32).sqrt();
        for suffix in ["", "_reverse"] {
            for kind in ["ih", "hh"] {
                let name = |part: &str| format!("{prefix}.rnn.{part}_{kind}_l0{suffix}");
                w.put(&name("weight"), &[4 * hidden, hidden], 0.0, bound)?;
                w.put(&name("bias"), &[4 * hidden], 0.0, bound)?;
            }
        }
        w.linear(&format!("{prefix}.linear"), hidden, 2 * hidden)?;
    }
    let classes = CHARACTERS.chars().count() + 1;
    w.linear("Prediction", classes, hidden)?;
    // The blank loses: every step reads a character, so each region reads as some text.
    let mut bias = vec![0.1f32; classes];
    bias[0] = -3.0;
    w.tensors.insert(
        "Prediction.bias".into(),
        Tensor::from_vec(bias, classes, &Device::Cpu)?,
    );
    w.save(path, DType::F32)
}

/// The made-up class names, as ImageNet's synset list and lemma table (`n{index:08}`).
fn class_files() -> (String, String) {
    let (mut synsets, mut lemmas) = (String::new(), String::new());
    for i in 0..CLASSES {
        let name = format!(
            "{} {}",
            CLASS_WORDS[i % CLASS_WORDS.len()],
            CLASS_WORDS[i / CLASS_WORDS.len()]
        );
        synsets.push_str(&format!("n{i:08}\n"));
        lemmas.push_str(&format!("n{i:08}\t{name}\n"));
    }
    (synsets, lemmas)
}

fn manifest() -> BundleManifest {
    BundleManifest {
        id: TINY_ID.into(),
        version: "0.1.0".into(),
        text: Some(TextTowerSpec {
            architecture: TextArchitecture::Bert,
            config: "text/config.json".into(),
            weights: "text/model.safetensors".into(),
            tokenizer: "text/tokenizer.json".into(),
            max_tokens: 256,
            exits: vec![3, 6],
            default_exit: 6,
            source: SOURCE.into(),
        }),
        image: Some(ImageTowerSpec {
            architecture: ImageArchitecture::EfficientNetLite0,
            config: None,
            weights: "image/efficientnet_lite0.safetensors".into(),
            input_size: 224,
            resize: 256,
            exits: vec![4, 6, 7],
            default_exit: 7,
            source: SOURCE.into(),
            mean: None,
            std: None,
            conse: Some(ConseSpec {
                classes: "image/conse_classes.safetensors".into(),
                top_k: CLASSES,
                temperature: 2.0,
                source: "1,000 made-up class names, 6 prompts, tiny text tower exit 6, centred"
                    .into(),
            }),
        }),
        ner: Some(NerSpec {
            weights: "ner/ner_branch.safetensors".into(),
            shared_layers: NER_SHARED,
            branch_layers: TEXT_LAYERS - NER_SHARED,
            source: SOURCE.into(),
        }),
        exit_heads: Some("exit_heads.safetensors".into()),
        spotting: Some(SpottingSpec {
            module: SpottingModule::Easyocr,
            ppocr: None,
            easyocr: Some(EasyocrSpec {
                detector: "spotting/craft_mlt_25k.safetensors".into(),
                recognizer: "spotting/english_g2.safetensors".into(),
                characters: "spotting/english_g2_characters.txt".into(),
                source: SOURCE.into(),
            }),
        }),
    }
}

/// Writes the tiny bundle into the folder `dir` (created if missing; files there are
/// overwritten) and returns `dir`. The same bytes on every call on one machine: every weight
/// comes from a fixed seed; the ConSE table is computed by the tiny text tower.
pub fn write_tiny_bundle(dir: &Path) -> Result<PathBuf> {
    for part in ["text", "image", "ner", "spotting"] {
        let sub = dir.join(part);
        std::fs::create_dir_all(&sub).map_err(io(&sub))?;
    }
    let manifest = manifest();
    write_text(&dir.join("text"))?;
    write_ner(&dir.join("ner/ner_branch.safetensors"))?;
    write_efficientnet(&dir.join("image/efficientnet_lite0.safetensors"))?;
    write_exit_heads(&dir.join("exit_heads.safetensors"))?;
    write_craft(&dir.join("spotting/craft_mlt_25k.safetensors"))?;
    write_recognizer(&dir.join("spotting/english_g2.safetensors"))?;
    write(
        &dir.join("spotting/english_g2_characters.txt"),
        format!("{CHARACTERS}\n"),
    )?;
    let (synsets, lemmas) = class_files();
    write(&dir.join("image/imagenet_synsets.txt"), &synsets)?;
    write(&dir.join("image/imagenet_synset_to_lemma.txt"), &lemmas)?;
    // ConSE as `vemo models pull` builds it: every class name embedded by the text tower.
    let bundle = Bundle {
        root: dir.to_path_buf(),
        manifest,
    };
    let encoder = TextEncoder::load_without_heads(&bundle, &[TEXT_LAYERS], &Device::Cpu)?;
    let rows = embed_classes(&encoder, &imagenet_class_names(&synsets, &lemmas)?)?;
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    let table = Tensor::from_vec(flat, (CLASSES, TEXT_DIM), &Device::Cpu)?;
    let conse = dir.join("image/conse_classes.safetensors");
    candle_core::safetensors::save(
        &HashMap::from([(CLASSES_TENSOR.to_string(), table)]),
        &conse,
    )?;
    bundle.save_manifest()?;
    Bundle::open(dir)?;
    Ok(dir.to_path_buf())
}

/// The tiny bundle in `$TMPDIR/vemo-tiny-bundles/<key>`, written on the first call on a
/// machine and reused by later calls and other processes; the key is a hash of this file's
/// source, so a change here writes a new bundle. Concurrency-safe: a process writes into a
/// staging folder of its own and renames it into place; one that loses the race uses the
/// winner's copy.
pub fn tiny_bundle() -> Result<PathBuf> {
    static CACHED: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut cached = CACHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    let key = hex::encode(Sha256::digest(include_str!("tiny_bundle.rs")));
    let base = std::env::temp_dir().join("vemo-tiny-bundles");
    let target = base.join(&key[..16]);
    if Bundle::open(&target).is_err() {
        std::fs::create_dir_all(&base).map_err(io(&base))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let staging = base.join(format!(".staging-{}-{nanos}", std::process::id()));
        let written = write_tiny_bundle(&staging)
            .and_then(|_| std::fs::rename(&staging, &target).map_err(io(&target)));
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        // A failed rename is fine when another process renamed its copy into place first.
        if let (Err(e), Err(_)) = (written, Bundle::open(&target)) {
            return Err(e);
        }
    }
    *cached = Some(target.clone());
    Ok(target)
}

/// Whether a missing pulled bundle (or sample corpus) fails a test instead of skipping it:
/// `VEMO_REQUIRE_BUNDLE=1`, which `infra/test.sh` sets.
pub fn bundle_required() -> bool {
    std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() == Ok("1")
}

/// The guard of every test that needs real weights: the pulled `vemo-mini` bundle
/// (`$VEMO_HOME/models/vemo-mini`, see `vemo models pull`), or `None` after printing
/// `SKIPPED {test}` when it is absent. Panics instead when [`bundle_required`].
pub fn pulled_bundle(test: &str) -> Option<PathBuf> {
    let dir = vemo_home().join("models/vemo-mini");
    present_or_skip(test, &dir.join(BUNDLE_FILE), "run `vemo models pull`").then_some(dir)
}

/// The sample corpus (`$VEMO_HOME/corpus/sample`, see `vemo corpus sample`) for a test whose
/// assertions are about those photos, or `None` after printing `SKIPPED {test}`; panics
/// instead when [`bundle_required`].
pub fn sample_corpus(test: &str) -> Option<PathBuf> {
    let dir = vemo_home().join("corpus/sample");
    present_or_skip(
        test,
        &dir.join("manifest.jsonl"),
        "run `vemo corpus sample`",
    )
    .then_some(dir)
}

fn present_or_skip(test: &str, file: &Path, how: &str) -> bool {
    if file.is_file() {
        return true;
    }
    assert!(
        !bundle_required(),
        "VEMO_REQUIRE_BUNDLE=1 but {} is missing: {how}",
        file.display()
    );
    eprintln!("SKIPPED {test}: no {} ({how})", file.display());
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::image_encoder::ImageEncoder;
    use crate::spotting::Spotter;

    /// Every task's modules load from the tiny bundle and run; a second write gives the same
    /// bytes.
    #[test]
    fn every_task_runs_on_the_tiny_bundle_and_the_bytes_repeat() -> Result<()> {
        let (a, b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let started = std::time::Instant::now();
        write_tiny_bundle(a.path())?;
        println!("tiny bundle written in {:?}", started.elapsed());
        write_tiny_bundle(b.path())?;
        for file in [
            "text/model.safetensors",
            "image/conse_classes.safetensors",
            BUNDLE_FILE,
        ] {
            let read = |dir: &Path| std::fs::read(dir.join(file)).expect("read");
            assert!(read(a.path()) == read(b.path()), "{file} differs");
        }

        let bundle = Bundle::open(a.path())?;
        let device = Device::Cpu;
        let text = TextEncoder::load_with_ner(&bundle, &[3, 6], &device)?;
        let captions = [
            "A photo of a red cat.",
            "Then Angela Merkel visited Paris in 2024!",
        ];
        let (embeddings, entities) = text.encode_all_with_entities(&captions, 8)?;
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings[1][0].len(), TEXT_DIM);
        let cosine: f32 = embeddings[1][0]
            .iter()
            .zip(&embeddings[1][1])
            .map(|(a, b)| a * b)
            .sum();
        println!("cosine of the two captions at exit 6: {cosine}");
        assert!(cosine < 0.99, "captions should differ: {cosine}");
        let keys: Vec<Vec<String>> = entities
            .iter()
            .map(|list| list.iter().map(|e| e.key()).collect())
            .collect();
        assert_eq!(keys, [vec![], vec!["PER:angela merkel", "PER:paris"]]);

        let image = ImageEncoder::load(&bundle, &[4, 6, 7], &device)?;
        let crop = image::RgbImage::from_fn(224, 224, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let out = image.encode(&[&crop])?;
        assert_eq!(out.joint.len(), 3);
        assert!(out.joint.iter().all(|e| e[0].len() == TEXT_DIM));
        assert_eq!(out.features.expect("features")[0].len(), FEATURE_DIM);

        let spotter = Spotter::from_bundle(&bundle, &device)?;
        let words = spotter.spot(&image::RgbImage::from_pixel(40, 20, image::Rgb([9, 9, 9])))?;
        assert_eq!(words.len(), 1, "one region, the whole image: {words:?}");
        assert!(!words[0].text.is_empty());
        Ok(())
    }
}
