//! CLIP: the paired image and text towers of a Hugging Face `CLIPModel`, with per-layer exits.
//!
//! Owns the CLIP config ([`ClipConfig`], parsed from `config.json`), the model
//! ([`ClipModel`], loaded from `model.safetensors` with the checkpoint's tensor names:
//! `text_model.*`, `vision_model.*`, `text_projection.weight`, `visual_projection.weight`) and
//! its forward passes: projected (not normalised) image and text features, and the same
//! projection applied to the pooled token after any encoder layer (early exits).
//!
//! A port of transformers 5.24's `CLIPModel` (models/clip/modeling_clip.py):
//! `get_image_features` (patch conv + class token + positions, `pre_layrnorm`, pre-LN encoder,
//! class token, `post_layernorm`, `visual_projection`) and `get_text_features` (token +
//! position embeddings, causal pre-LN encoder, `final_layer_norm`, the EOS token,
//! `text_projection`). candle-transformers' `clip` module is not used because it cannot stop
//! after a chosen layer and it departs from transformers in ways that change outputs: the
//! text tower always uses quick_gelu, the vision tower knows no activation but quick_gelu,
//! `layer_norm_eps` is fixed at 1e-5, and text pooling always takes `argmax(input_ids)`, which
//! is transformers' pooling only for legacy configs whose `eos_token_id` is 2.
//!
//! Not supported: padding attention masks (the pooled EOS token attends only to the tokens
//! before it under the causal mask, so right padding cannot change the features), and
//! `interpolate_pos_encoding` (images must be `image_size` square). The tokenizer
//! (`tokenizer.json` in the same folder) is loaded by the caller.

use std::path::Path;

use super::{layer_norm_f32, softmax_f32};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{
    Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear, linear_no_bias,
};
use serde::Deserialize;

/// The MLP activation (`hidden_act` in `config.json`), as transformers' `ACT2FN` defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)`, the original OpenAI CLIP's activation (transformers' default).
    QuickGelu,
    /// The exact, erf-based GELU.
    Gelu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`).
    #[serde(alias = "gelu_pytorch_tanh")]
    GeluNew,
}

impl HiddenAct {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            HiddenAct::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            HiddenAct::Gelu => x.gelu_erf(),
            HiddenAct::GeluNew => x.gelu(),
        }
    }
}

/// `text_config` of a CLIP `config.json`. Missing fields take transformers'
/// `CLIPTextConfig` defaults (those of openai/clip-vit-base-patch32); fields this port does not
/// use (dropout, init ranges, `bos_token_id`, ...) are ignored, since Hugging Face configs carry
/// many of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Token vocabulary size. Default 49408.
    pub vocab_size: usize,
    /// Width of the transformer. Default 512.
    pub hidden_size: usize,
    /// Width of the MLP. Default 2048.
    pub intermediate_size: usize,
    /// Encoder layers. Default 12.
    pub num_hidden_layers: usize,
    /// Attention heads; must divide `hidden_size`. Default 8.
    pub num_attention_heads: usize,
    /// Longest input sequence. Default 77.
    pub max_position_embeddings: usize,
    /// MLP activation. Default quick_gelu.
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon. Default 1e-5.
    pub layer_norm_eps: f64,
    /// The token whose final state is pooled. Default 49407. The value 2 (found in the configs
    /// of the original OpenAI checkpoints) selects transformers' legacy pooling, the position
    /// of the largest token id.
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// `vision_config` of a CLIP `config.json`. Missing fields take transformers'
/// `CLIPVisionConfig` defaults (ViT-B/32); unused fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Width of the transformer. Default 768.
    pub hidden_size: usize,
    /// Width of the MLP. Default 3072.
    pub intermediate_size: usize,
    /// Encoder layers. Default 12.
    pub num_hidden_layers: usize,
    /// Attention heads; must divide `hidden_size`. Default 12.
    pub num_attention_heads: usize,
    /// Input channels. Default 3.
    pub num_channels: usize,
    /// Side of the square input image, in pixels. Default 224.
    pub image_size: usize,
    /// Side of a square patch; must divide `image_size`. Default 32.
    pub patch_size: usize,
    /// MLP activation. Default quick_gelu.
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon. Default 1e-5.
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// A CLIP `config.json` (transformers' `CLIPConfig`). The default is ViT-B/32
/// (openai/clip-vit-base-patch32's shapes), as in transformers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// The text tower.
    pub text_config: ClipTextConfig,
    /// The image tower.
    pub vision_config: ClipVisionConfig,
    /// Width of the shared embedding space. Default 512.
    pub projection_dim: usize,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self::vit_base_patch32()
    }
}

impl ClipConfig {
    /// ViT-B/32: text 512 wide, 12 layers, 8 heads; vision 768 wide, 12 layers, 12 heads,
    /// 224-pixel images in 32-pixel patches; 512-d embeddings.
    pub fn vit_base_patch32() -> Self {
        Self {
            text_config: ClipTextConfig::default(),
            vision_config: ClipVisionConfig::default(),
            projection_dim: 512,
        }
    }

    /// Parses a Hugging Face `config.json`.
    pub fn from_json(json: &str) -> serde_json::Result<Self> {
        serde_json::from_str(json)
    }
}

/// One pre-LN transformer layer (`CLIPEncoderLayer`), shared by both towers.
#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: HiddenAct,
    heads: usize,
    head_dim: usize,
    span: tracing::Span,
}

/// The shapes an encoder layer needs, common to both tower configs.
struct LayerShape {
    hidden: usize,
    intermediate: usize,
    heads: usize,
    act: HiddenAct,
    eps: f64,
}

impl EncoderLayer {
    fn load(vb: VarBuilder, s: &LayerShape, tower: &'static str, index: usize) -> Result<Self> {
        let h = s.hidden;
        let attn = vb.pp("self_attn");
        let mlp = vb.pp("mlp");
        Ok(Self {
            layer_norm1: layer_norm(h, s.eps, vb.pp("layer_norm1"))?,
            q_proj: linear(h, h, attn.pp("q_proj"))?,
            k_proj: linear(h, h, attn.pp("k_proj"))?,
            v_proj: linear(h, h, attn.pp("v_proj"))?,
            out_proj: linear(h, h, attn.pp("out_proj"))?,
            layer_norm2: layer_norm(h, s.eps, vb.pp("layer_norm2"))?,
            fc1: linear(h, s.intermediate, mlp.pp("fc1"))?,
            fc2: linear(s.intermediate, h, mlp.pp("fc2"))?,
            act: s.act,
            heads: s.heads,
            head_dim: h / s.heads,
            span: tracing::trace_span!("clip_layer", tower, index),
        })
    }

    /// `x`: (batch, seq, hidden); `mask`: an additive (seq, seq) bias or `None`.
    fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (b, l, h) = x.dims3()?;
        let normed = layer_norm_f32(&self.layer_norm1, x)?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q_proj.forward(&normed)?)?;
        let k = split(self.k_proj.forward(&normed)?)?;
        let v = split(self.v_proj.forward(&normed)?)?;
        let scale = (self.head_dim as f64).powf(-0.5);
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = softmax_f32(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, h))?;
        let x = (x + self.out_proj.forward(&context)?)?;
        let inner = self
            .act
            .apply(&self.fc1.forward(&layer_norm_f32(&self.layer_norm2, &x)?)?)?;
        &x + self.fc2.forward(&inner)?
    }
}

/// Runs `layers` on `hidden` only as deep as the deepest of `exits`, and returns `pick` of the
/// hidden state after each exit (0: the input to the first layer), in the order of `exits`.
fn run_to_exits(
    layers: &[EncoderLayer],
    mut hidden: Tensor,
    mask: Option<&Tensor>,
    exits: &[usize],
    pick: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Vec<Tensor>> {
    let Some(&deepest) = exits.iter().max() else {
        return Ok(Vec::new());
    };
    if deepest > layers.len() {
        candle_core::bail!("exits {exits:?} outside 0..={}", layers.len());
    }
    let mut picked = Vec::with_capacity(deepest + 1);
    picked.push(pick(&hidden)?);
    for layer in &layers[..deepest] {
        hidden = layer.forward(&hidden, mask)?;
        picked.push(pick(&hidden)?);
    }
    Ok(exits.iter().map(|&e| picked[e].clone()).collect())
}

/// `CLIPTextModel` without its pooling head: embeddings, causal encoder, final LayerNorm.
#[derive(Debug, Clone)]
struct TextTower {
    token_embedding: Embedding,
    /// (max_position_embeddings, hidden)
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    eos_token_id: u32,
}

impl TextTower {
    fn load(vb: VarBuilder, c: &ClipTextConfig) -> Result<Self> {
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "text hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let shape = LayerShape {
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        };
        let emb = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::load(vb.pp(format!("encoder.layers.{i}")), &shape, "text", i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: embedding(c.vocab_size, c.hidden_size, emb.pp("token_embedding"))?,
            position_embedding: emb.get(
                (c.max_position_embeddings, c.hidden_size),
                "position_embedding.weight",
            )?,
            layers,
            final_layer_norm: layer_norm(
                c.hidden_size,
                c.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            eos_token_id: c.eos_token_id,
        })
    }

    /// (batch, seq) ids -> (batch, seq, hidden).
    fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let seq_len = input_ids.dim(1)?;
        let max = self.position_embedding.dim(0)?;
        if seq_len > max {
            candle_core::bail!("{seq_len} tokens, more than max_position_embeddings {max}");
        }
        self.token_embedding
            .forward(input_ids)?
            .broadcast_add(&self.position_embedding.narrow(0, 0, seq_len)?)
    }

    /// The additive causal mask (seq, seq): 0 on and below the diagonal, the dtype's minimum
    /// above it (transformers' eager `create_causal_mask`).
    fn causal_mask(seq_len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let mask: Vec<f32> = (0..seq_len)
            .flat_map(|i| (0..seq_len).map(move |j| if j > i { f32::MIN } else { 0.0 }))
            .collect();
        Tensor::from_vec(mask, (seq_len, seq_len), device)?.to_dtype(dtype)
    }
}

/// The position pooled in each row of `ids`, as transformers' `CLIPTextModel.forward` picks
/// it: with `eos_token_id == 2` (legacy configs) the first position of the largest id, else the
/// first position holding `eos_token_id`, and 0 for a row without one (transformers' argmax of
/// an all-false row; tokenizers always append EOS).
fn pooled_positions(ids: &[Vec<i64>], eos_token_id: u32) -> Vec<usize> {
    let first_max = |row: &[i64]| {
        // First index of the maximum, as torch.argmax returns it.
        let mut best = 0;
        for (i, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = i;
            }
        }
        best
    };
    ids.iter()
        .map(|row| {
            if eos_token_id == 2 {
                first_max(row)
            } else {
                row.iter()
                    .position(|&t| t == i64::from(eos_token_id))
                    .unwrap_or(0)
            }
        })
        .collect()
}

/// `CLIPVisionModel` without its pooling head: patch embeddings, `pre_layrnorm`, encoder,
/// `post_layernorm`.
#[derive(Debug, Clone)]
struct VisionTower {
    /// (hidden, channels, patch, patch)
    patch_embedding: Tensor,
    /// (hidden,)
    class_embedding: Tensor,
    /// (1 + patches, hidden)
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    image_size: usize,
    patch_size: usize,
}

impl VisionTower {
    fn load(vb: VarBuilder, c: &ClipVisionConfig) -> Result<Self> {
        if c.num_attention_heads == 0 || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "vision hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            candle_core::bail!(
                "image_size {} is not a multiple of patch_size {}",
                c.image_size,
                c.patch_size
            );
        }
        let h = c.hidden_size;
        let positions = (c.image_size / c.patch_size).pow(2) + 1;
        let shape = LayerShape {
            hidden: h,
            intermediate: c.intermediate_size,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        };
        let emb = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| EncoderLayer::load(vb.pp(format!("encoder.layers.{i}")), &shape, "vision", i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embedding: emb.get(
                (h, c.num_channels, c.patch_size, c.patch_size),
                "patch_embedding.weight",
            )?,
            class_embedding: emb.get(h, "class_embedding")?,
            position_embedding: emb.get((positions, h), "position_embedding.weight")?,
            // Sic: transformers' name.
            pre_layrnorm: layer_norm(h, c.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers,
            post_layernorm: layer_norm(h, c.layer_norm_eps, vb.pp("post_layernorm"))?,
            image_size: c.image_size,
            patch_size: c.patch_size,
        })
    }

    /// (batch, channels, size, size) -> (batch, 1 + patches, hidden), after `pre_layrnorm`.
    fn embed(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let (b, _, height, width) = pixel_values.dims4()?;
        if height != self.image_size || width != self.image_size {
            candle_core::bail!(
                "input image size ({height}*{width}) doesn't match model ({0}*{0})",
                self.image_size
            );
        }
        // The patch convolution (kernel = stride = patch) as one matrix product over the
        // patches: the same sums as transformers' Conv2d, one GEMM on any device, and it runs
        // in bf16 on the CPU too (candle's CPU convolution has no bf16 kernel).
        let pixels = pixel_values.to_dtype(self.patch_embedding.dtype())?;
        let (p, side) = (self.patch_size, self.image_size / self.patch_size);
        let (width, channels, _, _) = self.patch_embedding.dims4()?;
        let rows = pixels
            .reshape((b, channels, side, p, side, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b * side * side, channels * p * p))?;
        let kernel = self.patch_embedding.reshape((width, channels * p * p))?;
        let patches = rows
            .matmul(&kernel.t()?)?
            .reshape((b, side * side, width))?;
        let hidden = self.class_embedding.dim(0)?;
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((b, 1, hidden))?
            .contiguous()?;
        let embeddings =
            Tensor::cat(&[class, patches], 1)?.broadcast_add(&self.position_embedding)?;
        layer_norm_f32(&self.pre_layrnorm, &embeddings)
    }
}

/// A CLIP model: both towers and their projections into the shared embedding space.
#[derive(Debug, Clone)]
pub struct ClipModel {
    text: TextTower,
    vision: VisionTower,
    text_projection: Linear,
    visual_projection: Linear,
    config: ClipConfig,
}

impl ClipModel {
    /// Loads a CLIP model from a state dict with transformers' names (the root of
    /// `CLIPModel`'s `state_dict`). `logit_scale`, if present, is not read.
    pub fn load(vb: VarBuilder, cfg: &ClipConfig) -> Result<Self> {
        let text = TextTower::load(vb.pp("text_model"), &cfg.text_config)?;
        let vision = VisionTower::load(vb.pp("vision_model"), &cfg.vision_config)?;
        let text_projection = linear_no_bias(
            cfg.text_config.hidden_size,
            cfg.projection_dim,
            vb.pp("text_projection"),
        )?;
        let visual_projection = linear_no_bias(
            cfg.vision_config.hidden_size,
            cfg.projection_dim,
            vb.pp("visual_projection"),
        )?;
        Ok(Self {
            text,
            vision,
            text_projection,
            visual_projection,
            config: cfg.clone(),
        })
    }

    /// Loads `config.json` and `model.safetensors` (any float dtype, computed in f32) from a
    /// folder in the Hugging Face layout. A malformed config, a missing or misshapen tensor is
    /// a [`crate::Error::Bundle`]; an unreadable file an [`crate::Error::Io`].
    pub fn from_folder(dir: &Path, device: &Device) -> crate::Result<Self> {
        Self::from_files(
            &dir.join("config.json"),
            &dir.join("model.safetensors"),
            device,
            DType::F32,
        )
    }

    /// [`Self::from_folder`] with the two files named separately (as a bundle names them),
    /// the weights and activations in `dtype` (f32 or bf16).
    pub fn from_files(
        config: &Path,
        weights: &Path,
        device: &Device,
        dtype: DType,
    ) -> crate::Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|cause| crate::Error::Io {
                path: path.display().to_string(),
                cause,
            })
        };
        let bad = |path: &Path, reason: String| crate::Error::Bundle {
            path: path.display().to_string(),
            reason,
        };
        let config_path = config;
        let config = read(config_path)?;
        let config = std::str::from_utf8(&config)
            .map_err(|e| e.to_string())
            .and_then(|json| ClipConfig::from_json(json).map_err(|e| e.to_string()))
            .map_err(|reason| bad(config_path, format!("not a CLIP config: {reason}")))?;
        let bytes = read(weights)?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, device)
            .map_err(|e| bad(weights, e.to_string()))?;
        Self::load(vb, &config).map_err(|e| bad(weights, e.to_string()))
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Projected text features (batch, projection_dim), not normalised: transformers'
    /// `get_text_features(input_ids).pooler_output`. `input_ids`: (batch, seq), u32 or i64.
    pub fn encode_text(&self, input_ids: &Tensor) -> Result<Tensor> {
        let deepest = self.text.layers.len();
        Ok(self.encode_text_exits(input_ids, &[deepest])?.remove(0))
    }

    /// Projected image features (batch, projection_dim), not normalised: transformers'
    /// `get_image_features(pixel_values).pooler_output`. `pixel_values`: (batch, channels,
    /// image_size, image_size), already resized and normalised.
    pub fn encode_image(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let deepest = self.vision.layers.len();
        Ok(self.encode_image_exits(pixel_values, &[deepest])?.remove(0))
    }

    /// For each exit `L` in `exits` (0..=text layers, in any order), the EOS token's state
    /// after `L` encoder layers (transformers' `hidden_states[L]`) through `final_layer_norm`
    /// and `text_projection`: (batch, projection_dim). The deepest exit equals
    /// [`Self::encode_text`]. Runs the encoder only as deep as the deepest exit.
    pub fn encode_text_exits(&self, input_ids: &Tensor, exits: &[usize]) -> Result<Vec<Tensor>> {
        let (b, l) = input_ids.dims2()?;
        let ids = input_ids.to_dtype(DType::I64)?.to_vec2::<i64>()?;
        let rows: Vec<u32> = pooled_positions(&ids, self.text.eos_token_id)
            .into_iter()
            .enumerate()
            .map(|(row, pos)| (row * l + pos) as u32)
            .collect();
        let rows = Tensor::from_vec(rows, b, input_ids.device())?;
        let hidden = self.text.embed(input_ids)?;
        let mask = TextTower::causal_mask(l, hidden.dtype(), hidden.device())?;
        let pick = |h: &Tensor| h.reshape((b * l, ()))?.index_select(&rows, 0);
        run_to_exits(&self.text.layers, hidden, Some(&mask), exits, pick)?
            .iter()
            .map(|pooled| {
                self.text_projection
                    .forward(&layer_norm_f32(&self.text.final_layer_norm, pooled)?)
            })
            .collect()
    }

    /// For each exit `L` in `exits` (0..=vision layers, in any order), the class token's state
    /// after `L` encoder layers (transformers' `hidden_states[L][:, 0]`) through
    /// `post_layernorm` and `visual_projection`: (batch, projection_dim). The deepest exit
    /// equals [`Self::encode_image`]. Runs the encoder only as deep as the deepest exit.
    pub fn encode_image_exits(
        &self,
        pixel_values: &Tensor,
        exits: &[usize],
    ) -> Result<Vec<Tensor>> {
        let hidden = self.vision.embed(pixel_values)?;
        let pick = |h: &Tensor| h.i((.., 0))?.contiguous();
        run_to_exits(&self.vision.layers, hidden, None, exits, pick)?
            .iter()
            .map(|cls| {
                self.visual_projection
                    .forward(&layer_norm_f32(&self.vision.post_layernorm, cls)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny_config(eos_token_id: u32) -> ClipConfig {
        ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: 40,
                hidden_size: 16,
                intermediate_size: 24,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                max_position_embeddings: 10,
                eos_token_id,
                ..ClipTextConfig::default()
            },
            vision_config: ClipVisionConfig {
                hidden_size: 16,
                intermediate_size: 24,
                num_hidden_layers: 3,
                num_attention_heads: 2,
                image_size: 16,
                patch_size: 4,
                ..ClipVisionConfig::default()
            },
            projection_dim: 8,
        }
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn empty_config_is_vit_b32_and_activations_parse() {
        let cfg = ClipConfig::from_json("{}").expect("empty config");
        assert_eq!(cfg, ClipConfig::vit_base_patch32());
        assert_eq!(cfg.projection_dim, 512);
        assert_eq!(cfg.vision_config.patch_size, 32);
        let cfg = ClipConfig::from_json(
            r#"{"text_config": {"hidden_act": "gelu", "eos_token_id": 2, "unknown": 1},
                "vision_config": {"hidden_act": "gelu_pytorch_tanh"}, "projection_dim": 64}"#,
        )
        .expect("partial config");
        assert_eq!(cfg.text_config.hidden_act, HiddenAct::Gelu);
        assert_eq!(cfg.text_config.eos_token_id, 2);
        assert_eq!(cfg.vision_config.hidden_act, HiddenAct::GeluNew);
        assert_eq!(cfg.projection_dim, 64);
        assert!(ClipConfig::from_json(r#"{"text_config": {"hidden_act": "relu"}}"#).is_err());
    }

    #[test]
    fn pooled_positions_follow_transformers() {
        let ids = vec![vec![0, 30, 7, 9, 9], vec![0, 5, 9, 31, 2]];
        // eos 9: the first 9, not the largest id.
        assert_eq!(pooled_positions(&ids, 9), vec![3, 2]);
        // Legacy eos 2: the first largest id.
        assert_eq!(pooled_positions(&ids, 2), vec![1, 3]);
        // No EOS in the row: position 0, as transformers' argmax of an all-false row.
        assert_eq!(pooled_positions(&[vec![4, 5]], 9), vec![0]);
    }

    /// Random weights shared with candle-transformers' `ClipModel`, in the configuration
    /// where both implement transformers (quick_gelu, eps 1e-5, legacy eos 2): features must
    /// agree (f32: text 1e-5; image 1e-4, as our patch embedding is one GEMM where theirs is a
    /// convolution, which sums in another order: unseeded weights gave up to 1.6e-5), and
    /// exits must not depend on which others are asked for.
    #[test]
    fn agrees_with_candle_transformers_clip_on_random_weights() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = tiny_config(2);
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let ours = ClipModel::load(vb.clone(), &cfg)?;
        for var in varmap.all_vars() {
            let noise = Tensor::randn(0f32, 0.3, var.shape(), &dev)?;
            var.set(&(var.as_tensor() + noise)?)?;
        }
        use candle_transformers::models::clip as ct;
        let mut text = ct::text_model::ClipTextConfig::vit_base_patch32();
        text.vocab_size = 40;
        text.embed_dim = 16;
        text.intermediate_size = 24;
        text.num_hidden_layers = 2;
        text.num_attention_heads = 4;
        text.max_position_embeddings = 10;
        text.projection_dim = 8;
        let mut vision = ct::vision_model::ClipVisionConfig::vit_base_patch32();
        vision.embed_dim = 16;
        vision.intermediate_size = 24;
        vision.num_hidden_layers = 3;
        vision.num_attention_heads = 2;
        vision.image_size = 16;
        vision.patch_size = 4;
        vision.projection_dim = 8;
        let theirs_cfg = ct::ClipConfig {
            text_config: text,
            vision_config: vision,
            logit_scale_init_value: 2.6592,
            image_size: 16,
        };
        let theirs = ct::ClipModel::new(vb, &theirs_cfg)?;

        let ids = Tensor::new(&[[0u32, 5, 39, 2, 2], [0, 7, 3, 8, 1]], &dev)?;
        let pixels = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &dev)?;
        let text_diff = max_abs_diff(&ours.encode_text(&ids)?, &theirs.get_text_features(&ids)?)?;
        let image_diff = max_abs_diff(
            &ours.encode_image(&pixels)?,
            &theirs.get_image_features(&pixels)?,
        )?;
        println!("max |ours - candle-transformers|: text {text_diff:e}, image {image_diff:e}");
        assert!(text_diff < 1e-5 && image_diff < 1e-4);

        let all = ours.encode_image_exits(&pixels, &[0, 1, 2, 3])?;
        let some = ours.encode_image_exits(&pixels, &[2, 1, 2])?;
        assert_eq!(some.len(), 3);
        assert_eq!(max_abs_diff(&some[0], &all[2])?, 0.0);
        assert_eq!(max_abs_diff(&some[1], &all[1])?, 0.0);
        assert!(ours.encode_image_exits(&pixels, &[4]).is_err());
        assert!(
            ours.encode_text_exits(&ids, &[])
                .expect("no exits")
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn rejects_wrong_image_size_and_long_text() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = tiny_config(9);
        let model = ClipModel::load(VarBuilder::zeros(DType::F32, &dev), &cfg)?;
        assert!(
            model
                .encode_image(&Tensor::zeros((1, 3, 20, 20), DType::F32, &dev)?)
                .is_err()
        );
        assert!(
            model
                .encode_text(&Tensor::zeros((1, 11), DType::U32, &dev)?)
                .is_err()
        );
        let features = model.encode_text(&Tensor::zeros((1, 10), DType::U32, &dev)?)?;
        assert_eq!(features.dims(), &[1, 8]);
        Ok(())
    }
}
