//! Towers with the real architectures' shapes on random weights, so that throughput and
//! CPU-vs-device parity can be measured where the checkpoints cannot travel (the GPU machine
//! takes 64 MiB per call; CLIP ViT-B/32 alone is 600 MB). Throughput depends on shapes, not
//! on weight values. The weights are drawn once on the CPU and copied to each device, so both
//! sides of a parity check run the same model.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use vemo_models::models::bert::{BertEncoder, Config as BertConfig};
use vemo_models::models::clip::{ClipConfig, ClipModel};
use vemo_models::models::l2_normalize;

/// Tokens per caption in the text benchmarks (the PyTorch anchors used 32).
pub const TOKENS: usize = 32;

/// The architectures the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// CLIP ViT-B/32 (224 px, 12 + 12 layers, 512-d joint space).
    ClipB32,
    /// CLIP ViT-B/16.
    ClipB16,
    /// BERT-base (12 layers, 768 wide) with a 9-tag token-classification head (CoNLL).
    BertBase,
    /// all-MiniLM-L6-v2's shape: vemo-mini's text tower (6 layers, 384 wide).
    MiniLm,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::ClipB32 => "clip-vit-b32",
            Arch::ClipB16 => "clip-vit-b16",
            Arch::BertBase => "bert-base-ner",
            Arch::MiniLm => "minilm-l6",
        }
    }
}

/// One tower of an architecture, ready to run on a device.
pub enum Tower {
    ClipImage(ClipModel),
    ClipText(ClipModel),
    /// The encoder and, for token classification, the tag head.
    Bert(BertEncoder, Option<Linear>),
}

/// Which tower of an architecture: the image or the text side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Image,
    Text,
}

/// An architecture's random weights (f32, on the CPU).
pub struct Weights {
    arch: Arch,
    tensors: HashMap<String, Tensor>,
}

fn clip_config(arch: Arch) -> ClipConfig {
    let mut cfg = ClipConfig::vit_base_patch32();
    if arch == Arch::ClipB16 {
        cfg.vision_config.patch_size = 16;
    }
    cfg
}

fn bert_config(arch: Arch) -> Result<BertConfig> {
    let (hidden, layers, heads, inner) = match arch {
        Arch::MiniLm => (384, 6, 12, 1536),
        _ => (768, 12, 12, 3072),
    };
    Ok(serde_json::from_value(serde_json::json!({
        "vocab_size": 30522, "hidden_size": hidden, "num_hidden_layers": layers,
        "num_attention_heads": heads, "intermediate_size": inner, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "model_type": "bert"
    }))?)
}

/// Tags of the token-classification head (CoNLL-2003 BIO).
const TAGS: usize = 9;

impl Weights {
    /// Draws the weights of `arch`: candle's default initialisations plus N(0, 0.02) on every
    /// tensor, so that no bias or embedding is all zeros.
    pub fn random(arch: Arch) -> Result<Self> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        match arch {
            Arch::ClipB32 | Arch::ClipB16 => {
                ClipModel::load(vb, &clip_config(arch))?;
            }
            Arch::BertBase | Arch::MiniLm => {
                let cfg = bert_config(arch)?;
                BertEncoder::load(vb.clone(), &cfg, cfg.num_hidden_layers)?;
                if arch == Arch::BertBase {
                    candle_nn::linear(cfg.hidden_size, TAGS, vb.pp("classifier"))?;
                }
            }
        }
        let data = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("varmap"))?;
        let mut tensors = HashMap::with_capacity(data.len());
        for (name, var) in data.iter() {
            let t = var.as_tensor();
            let noise = Tensor::randn(0f32, 0.02, t.shape(), &Device::Cpu)?;
            tensors.insert(name.clone(), (t + noise)?);
        }
        Ok(Self { arch, tensors })
    }

    /// The `side` tower on `device` with weights and activations in `dtype`.
    pub fn tower(&self, side: Side, device: &Device, dtype: DType) -> Result<Tower> {
        let vb = VarBuilder::from_tensors(self.tensors.clone(), dtype, device);
        Ok(match (self.arch, side) {
            (Arch::ClipB32 | Arch::ClipB16, Side::Image) => {
                Tower::ClipImage(ClipModel::load(vb, &clip_config(self.arch))?)
            }
            (Arch::ClipB32 | Arch::ClipB16, Side::Text) => {
                Tower::ClipText(ClipModel::load(vb, &clip_config(self.arch))?)
            }
            (arch, _) => {
                let cfg = bert_config(arch)?;
                let encoder = BertEncoder::load(vb.clone(), &cfg, cfg.num_hidden_layers)?;
                let head = match arch {
                    Arch::BertBase => Some(candle_nn::linear(
                        cfg.hidden_size,
                        TAGS,
                        vb.pp("classifier"),
                    )?),
                    _ => None,
                };
                Tower::Bert(encoder, head)
            }
        })
    }
}

/// A batch of `batch` inputs for `side` of `arch` on `device`: normalised pixels (random, as
/// after preprocessing) or token ids (`TOKENS` per row, the last one the end token). The same
/// seed gives the same batch on every device.
pub fn inputs(arch: Arch, side: Side, batch: usize, device: &Device, seed: u64) -> Result<Tensor> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    match side {
        Side::Image => {
            let n = batch * 3 * 224 * 224;
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.8f32..2.1)).collect();
            Ok(Tensor::from_vec(data, (batch, 3, 224, 224), device)?)
        }
        Side::Text => {
            let (vocab, end) = match arch {
                Arch::ClipB32 | Arch::ClipB16 => (49406u32, 49407u32),
                _ => (30000, 102),
            };
            let data: Vec<u32> = (0..batch * TOKENS)
                .map(|i| match i % TOKENS {
                    last if last == TOKENS - 1 => end,
                    _ => rng.random_range(1000..vocab),
                })
                .collect();
            Ok(Tensor::from_vec(data, (batch, TOKENS), device)?)
        }
    }
}

impl Tower {
    /// Runs the tower on a batch: unit embeddings (batch, dim) for the encoders, per-token tag
    /// log-probabilities (batch, tokens, tags) for token classification; always f32.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Tower::ClipImage(clip) => l2_normalize(&clip.encode_image(input)?)?,
            Tower::ClipText(clip) => l2_normalize(&clip.encode_text(input)?)?,
            Tower::Bert(encoder, head) => {
                let ones = input.ones_like()?;
                let types = input.zeros_like()?;
                let depth = encoder.depth();
                let hidden = encoder
                    .forward_exits(input, &types, &ones, &[depth])?
                    .remove(0);
                match head {
                    Some(head) => {
                        let logits = head.forward(&hidden)?.to_dtype(DType::F32)?;
                        candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1)?
                    }
                    None => vemo_models::models::bert::mean_pool_normalized(&hidden, &ones)?,
                }
            }
        })
    }
}
