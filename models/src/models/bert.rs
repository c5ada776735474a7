//! BERT encoder with early exits, for the text tower.
//!
//! A port of Hugging Face transformers' `BertModel` (modeling_bert.py: embeddings, then
//! `num_hidden_layers` post-LayerNorm transformer layers), with the checkpoint's tensor names.
//! candle-transformers' `BertModel` returns only the last layer; VEMO's elastic exits need the
//! hidden states after chosen layers from one pass, and only the layers up to the deepest exit
//! are loaded. The serde config is candle-transformers' own, which mirrors `config.json`.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};
pub use candle_transformers::models::bert::Config;
use vemo_kernels::{Activation, FastLinear};

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        Ok(Self {
            word: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> Result<Tensor> {
        let seq_len = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let sum = self
            .word
            .forward(input_ids)?
            .add(&self.token_type.forward(token_type_ids)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        super::layer_norm_f32(&self.norm, &sum)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
    eps: f64,
    span: tracing::Span,
    /// Set for weights that never change once loaded: inference then runs on `fast`.
    frozen: bool,
    /// The same linear layers on vemo-kernels' AVX-512 or AVX2 product, made at the first
    /// inference pass of a frozen layer in f32 on a CPU that has either (`None` elsewhere;
    /// training always runs candle's layers).
    fast: std::sync::OnceLock<Option<FastLayers>>,
}

/// A layer's linear layers as [`FastLinear`]s, query, key and value as one product.
struct FastLayers {
    qkv: FastLinear,
    attention_out: FastLinear,
    intermediate: FastLinear,
    output: FastLinear,
}

impl FastLayers {
    fn new(layer: &Layer) -> Result<Option<Self>> {
        let f32_cpu = |l: &Linear| l.weight().dtype() == DType::F32 && l.weight().device().is_cpu();
        let all = [
            &layer.query,
            &layer.key,
            &layer.value,
            &layer.attention_out,
            &layer.intermediate,
            &layer.output,
        ];
        if !all.iter().all(|l| f32_cpu(l)) {
            return Ok(None);
        }
        let fast = |ls: &[&Linear]| {
            let weights: Vec<&Tensor> = ls.iter().map(|l| l.weight()).collect();
            let biases: Vec<Option<&Tensor>> = ls.iter().map(|l| l.bias()).collect();
            FastLinear::new(&weights, &biases)
        };
        let qkv = fast(&[&layer.query, &layer.key, &layer.value])?;
        let (attention_out, intermediate, output) = (
            fast(&[&layer.attention_out])?,
            fast(&[&layer.intermediate])?,
            fast(&[&layer.output])?,
        );
        Ok(match (qkv, attention_out, intermediate, output) {
            (Some(qkv), Some(attention_out), Some(intermediate), Some(output)) => Some(Self {
                qkv,
                attention_out,
                intermediate,
                output,
            }),
            _ => None,
        })
    }
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &Config, index: usize) -> Result<Self> {
        let h = cfg.hidden_size;
        let attn = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, attn.pp("self").pp("query"))?,
            key: linear(h, h, attn.pp("self").pp("key"))?,
            value: linear(h, h, attn.pp("self").pp("value"))?,
            attention_out: linear(h, h, attn.pp("output").pp("dense"))?,
            attention_norm: layer_norm(h, cfg.layer_norm_eps, attn.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            eps: cfg.layer_norm_eps,
            span: tracing::trace_span!("bert_layer", index),
            frozen: false,
            fast: std::sync::OnceLock::new(),
        })
    }

    /// Runs inference on [`FastLinear`] copies of the weights, made at the first inference
    /// pass. Only for weights that no longer change: the copies do not follow a training step.
    fn freeze_for_inference(&mut self) {
        self.frozen = true;
    }

    /// `x`: (batch, seq, hidden); `mask_bias`: (batch, 1, 1, seq), 0 for tokens, -inf-ish for
    /// padding.
    fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        self.forward_t(x, mask_bias, false)
    }

    /// [`Self::forward`]; with `train`, softmax and layer norm are built from differentiable
    /// tensor ops (candle-nn's fused kernels for them have no backward pass, so gradients
    /// would stop at them).
    fn forward_t(&self, x: &Tensor, mask_bias: &Tensor, train: bool) -> Result<Tensor> {
        let _enter = self.span.enter();
        if self.frozen && !train && x.dtype() == DType::F32 && x.device().is_cpu() {
            let fast = self
                .fast
                .get_or_init(|| FastLayers::new(self).ok().flatten());
            if let Some(fast) = fast {
                return self.forward_fast(fast, x, mask_bias);
            }
        }
        let (b, l, _) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask_bias)?;
        // In bf16, softmax and layer norm run in f32 (their sums need the range), the
        // matrix products in bf16.
        let probs = match train {
            true => candle_nn::ops::softmax(&scores, D::Minus1)?,
            false => super::softmax_f32(&scores)?,
        };
        let context =
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, l, self.heads * self.head_dim))?;
        let norm = |layer: &LayerNorm, x: &Tensor| match (train, layer.bias()) {
            (true, Some(bias)) => {
                candle_nn::ops::layer_norm_slow(x, layer.weight(), bias, self.eps as f32)
            }
            _ => super::layer_norm_f32(layer, x),
        };
        let attended = norm(
            &self.attention_norm,
            &(self.attention_out.forward(&context)? + x)?,
        )?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        norm(
            &self.output_norm,
            &(self.output.forward(&inner)? + attended)?,
        )
    }

    /// [`Self::forward`] in f32 on the CPU with the linear layers on [`FastLinear`]s (the
    /// GELU fused into the intermediate one); attention, softmax and layer norms as above.
    fn forward_fast(&self, fast: &FastLayers, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (b, l, hidden) = x.dims3()?;
        let qkv = fast.qkv.forward(x, Activation::Identity)?;
        let part = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * hidden, hidden)?
                .reshape((b, l, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask_bias)?;
        let probs = super::softmax_f32(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, hidden))?;
        let attended = super::layer_norm_f32(
            &self.attention_norm,
            &(fast.attention_out.forward(&context, Activation::Identity)? + x)?,
        )?;
        let inner = fast.intermediate.forward(&attended, Activation::Gelu)?;
        super::layer_norm_f32(
            &self.output_norm,
            &(fast.output.forward(&inner, Activation::Identity)? + attended)?,
        )
    }
}

/// A BERT encoder truncated after its deepest requested exit.
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertEncoder {
    /// Loads the embeddings and the first `depth` layers (`depth` <= `num_hidden_layers`).
    /// Accepts checkpoints with or without a `bert.` prefix.
    pub fn load(vb: VarBuilder, cfg: &Config, depth: usize) -> Result<Self> {
        if depth == 0 || depth > cfg.num_hidden_layers {
            candle_core::bail!("exit depth {depth} outside 1..={}", cfg.num_hidden_layers);
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let mut layers = (0..depth)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        // The tower is never trained in place (the NER branch trains copies).
        layers.iter_mut().for_each(Layer::freeze_for_inference);
        Ok(Self { embeddings, layers })
    }

    /// Number of layers loaded (the deepest exit available).
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    /// Runs the encoder once and returns the hidden states (batch, seq, hidden) after each of
    /// `exits` (1-based layer counts, each <= [`Self::depth`]), in the order given.
    pub fn forward_exits(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        exits: &[usize],
    ) -> Result<Vec<Tensor>> {
        let deepest = exits.iter().copied().max().unwrap_or(0);
        if deepest > self.depth() || exits.contains(&0) {
            candle_core::bail!("exits {exits:?} outside 1..={}", self.depth());
        }
        let mut hidden = self.embeddings.forward(input_ids, token_type_ids)?;
        let mask_bias = mask_bias(attention_mask, hidden.dtype())?;
        let mut after = Vec::with_capacity(deepest);
        for layer in &self.layers[..deepest] {
            hidden = layer.forward(&hidden, &mask_bias)?;
            after.push(hidden.clone());
        }
        Ok(exits.iter().map(|&e| after[e - 1].clone()).collect())
    }
}

/// A stack of BERT layers on its own: the NER branch's fine-tuned copies of the tower's top
/// layers, which read the hidden states the shared lower layers produced.
pub struct BertLayers {
    layers: Vec<Layer>,
}

impl BertLayers {
    /// Loads `count` layers named `{prefix}.{i}.attention...` from `vb` (the names of
    /// `encoder.layer.N` in a checkpoint).
    pub fn load(vb: VarBuilder, cfg: &Config, count: usize) -> Result<Self> {
        let layers = (0..count)
            .map(|i| Layer::load(vb.pp(i.to_string()), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Runs inference on copies of the weights laid out for vemo-kernels from now on (see
    /// [`FastLinear`]); for layers loaded to run, not to train.
    pub fn freeze_for_inference(&mut self) {
        self.layers.iter_mut().for_each(Layer::freeze_for_inference);
    }

    /// Runs every layer over `hidden` (batch, seq, hidden) under the 0/1 `attention_mask`;
    /// `train` for a pass that gradients flow back through (slower).
    pub fn forward_t(
        &self,
        hidden: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let mask_bias = mask_bias(attention_mask, hidden.dtype())?;
        let mut hidden = hidden.clone();
        for layer in &self.layers {
            hidden = layer.forward_t(&hidden, &mask_bias, train)?;
        }
        Ok(hidden)
    }
}

/// (batch, seq) 0/1 mask -> (batch, 1, 1, seq) additive bias, as transformers'
/// `get_extended_attention_mask` builds it.
/// The bias is in `dtype`, the dtype of the attention scores it is added to.
fn mask_bias(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let mask = attention_mask
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .unsqueeze(1)?;
    ((mask.ones_like()? - mask)? * f32::MIN as f64)?.to_dtype(dtype)
}

/// Mean of the token states under the mask, then L2 normalisation (sentence-transformers'
/// `Pooling(mean)` + `Normalize`). `hidden`: (batch, seq, dim); result (batch, dim).
/// Computed in f32 whatever the dtype of `hidden`.
pub fn mean_pool_normalized(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let hidden = hidden.to_dtype(DType::F32)?;
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    mean.broadcast_div(&norm)
}

/// The device of the commands that take no `--device` (train, eval, models): the CPU.
pub fn default_device() -> Device {
    Device::Cpu
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny_config() -> Config {
        let json = r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 3,
            "num_attention_heads": 4, "intermediate_size": 32, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 24, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "classifier_dropout": null, "model_type": "bert"}"#;
        serde_json::from_str(json).expect("tiny config")
    }

    /// Random weights, shared by our encoder and candle-transformers' reference `BertModel`:
    /// the last exit must equal the reference's output (tolerance 1e-5, f32).
    #[test]
    fn last_exit_matches_candle_transformers_bert_on_random_weights() -> Result<()> {
        let cfg = tiny_config();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let ours = BertEncoder::load(vb.clone(), &cfg, 3)?;
        // LayerNorm weights start at 1 and biases at 0; perturb every tensor so that a
        // mistake in any of them shows.
        for var in varmap.all_vars() {
            let noise = Tensor::randn(0f32, 0.5, var.shape(), &Device::Cpu)?;
            var.set(&(var.as_tensor() + noise)?)?;
        }
        let reference = candle_transformers::models::bert::BertModel::load(vb, &cfg)?;
        let ids = Tensor::new(&[[1u32, 7, 9, 33, 2, 0], [1, 4, 2, 0, 0, 0]], &Device::Cpu)?;
        let types = ids.zeros_like()?;
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], &Device::Cpu)?;
        let exits = ours.forward_exits(&ids, &types, &mask, &[1, 3])?;
        let expected = reference.forward(&ids, &types, Some(&mask))?;
        let diff = (&exits[1] - &expected)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        println!("max |ours - candle-transformers| = {diff:e}");
        assert!(diff < 1e-5, "max abs diff {diff}");
        assert_eq!(exits[0].dims(), &[2, 6, 16]);
        Ok(())
    }

    /// The training pass gives the inference pass's output, and every weight of every layer
    /// gets a gradient (candle-nn's fused softmax and layer norm would stop them).
    #[test]
    fn train_pass_matches_and_reaches_every_weight() -> Result<()> {
        let cfg = tiny_config();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let layers = BertLayers::load(vb, &cfg, 2)?;
        let hidden = Tensor::randn(0f32, 1.0, (2, 5, 16), &Device::Cpu)?;
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu)?;
        let fast = layers.forward_t(&hidden, &mask, false)?;
        let train = layers.forward_t(&hidden, &mask, true)?;
        let diff = (&fast - &train)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "train and inference passes differ by {diff}");
        let grads = train.sqr()?.sum_all()?.backward()?;
        let data = varmap.data().lock().expect("varmap");
        assert_eq!(data.len(), 2 * 16);
        for (name, var) in data.iter() {
            let grad = grads.get(var.as_tensor());
            let norm = match grad {
                Some(g) => g.abs()?.sum_all()?.to_scalar::<f32>()?,
                None => 0.0,
            };
            assert!(norm > 0.0, "no gradient reaches {name}");
        }
        Ok(())
    }

    #[test]
    fn mean_pool_ignores_padding_and_normalizes() -> Result<()> {
        let hidden = Tensor::new(&[[[3f32, 4.], [100., 100.]]], &Device::Cpu)?;
        let mask = Tensor::new(&[[1u32, 0]], &Device::Cpu)?;
        let pooled = mean_pool_normalized(&hidden, &mask)?.to_vec2::<f32>()?;
        assert!((pooled[0][0] - 0.6).abs() < 1e-6 && (pooled[0][1] - 0.8).abs() < 1e-6);
        Ok(())
    }
}
