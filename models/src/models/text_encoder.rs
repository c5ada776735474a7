//! EncodeCaptions: the text tower (tokenizer + BERT with mean pooling, or CLIP's text tower)
//! with several exits.
//!
//! BERT: the bundle's default (deepest) exit defines the joint caption space; a lower exit's
//! pooled embedding goes through its trained exit head into that space when the bundle has one.
//! CLIP: every exit's EOS token goes through the checkpoint's `final_layer_norm` and
//! `text_projection` into the space shared with the image tower; a trained head is still
//! applied where the bundle has one.

use std::sync::Arc;

use arrow_array::FixedSizeListArray;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::bert::{BertEncoder, Config, mean_pool_normalized};
use super::clip::ClipModel;
use super::clip_towers::{check_exits, padded_ids, shared_model};
use super::columns::ColumnBuffers;
use super::exit_heads::project;
use super::l2_normalize;
use crate::bundle::{Bundle, TextArchitecture, TextTowerSpec};
use crate::device::Precision;
use crate::ner::entities::caption_entities;
use crate::{Error, Result};
use vemo_schemas::{Entity, Tower};

/// The text tower's spec and its BERT `config.json`.
fn bert_config(bundle: &Bundle) -> Result<(&TextTowerSpec, Config)> {
    let spec = bundle.text()?;
    let config_text =
        std::fs::read_to_string(bundle.file(&spec.config)).map_err(|e| Error::Io {
            path: spec.config.clone(),
            cause: e,
        })?;
    let cfg: Config = serde_json::from_str(&config_text).map_err(|e| Error::Bundle {
        path: bundle.root.display().to_string(),
        reason: format!("{}: {e}", spec.config),
    })?;
    Ok((spec, cfg))
}

/// The BERT text tower of `bundle` up to layer `depth`, in f32, and its config.
pub fn bert_tower(bundle: &Bundle, depth: usize, device: &Device) -> Result<(BertEncoder, Config)> {
    bert_tower_in(bundle, depth, device, DType::F32)
}

/// [`bert_tower`] with the weights and activations in `dtype`.
fn bert_tower_in(
    bundle: &Bundle,
    depth: usize,
    device: &Device,
    dtype: DType,
) -> Result<(BertEncoder, Config)> {
    let (spec, cfg) = bert_config(bundle)?;
    let weights_path = bundle.file(&spec.weights);
    let weights = std::fs::read(&weights_path).map_err(|e| Error::Io {
        path: weights_path.display().to_string(),
        cause: e,
    })?;
    let vb = VarBuilder::from_buffered_safetensors(weights, dtype, device)?;
    Ok((BertEncoder::load(vb, &cfg, depth)?, cfg))
}

/// Embeddings `[exit][caption]` and each caption's entities.
pub type CaptionOutputs = (Vec<Vec<Vec<f32>>>, Vec<Vec<Entity>>);

/// The network behind the tokenizer.
enum Backbone {
    /// BERT run to the deepest exit, mean-pooled.
    Bert(BertEncoder),
    /// A CLIP model (its text tower runs; the image tower may be shared with the image encoder).
    Clip(Arc<ClipModel>),
}

/// The NER branch reading the tower's hidden states after its shared layers.
struct NerBranch {
    model: crate::ner::model::NerModel,
    shared_layers: usize,
}

/// The caption encoder of a bundle, loaded up to the deepest exit a job asked for (and the
/// NER branch's shared layers when entities are wanted).
pub struct TextEncoder {
    tokenizer: Tokenizer,
    backbone: Backbone,
    exits: Vec<usize>,
    heads: Vec<Option<candle_nn::Linear>>,
    ner: Option<NerBranch>,
    dim: usize,
    device: Device,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("exits", &self.exits)
            .field("dim", &self.dim)
            .finish()
    }
}

impl TextEncoder {
    /// Loads the text tower of `bundle` for `exits` (empty: the bundle's default exit), with
    /// the bundle's exit heads on the lower exits that have one.
    pub fn load(bundle: &Bundle, exits: &[usize], device: &Device) -> Result<Self> {
        Self::load_in(bundle, exits, false, device, Precision::Auto)
    }

    /// [`Self::load`], plus the bundle's NER branch, which shares the tower's lower layers: one
    /// pass gives the embeddings and the entities ([`Self::encode_all_with_entities`]).
    pub fn load_with_ner(bundle: &Bundle, exits: &[usize], device: &Device) -> Result<Self> {
        Self::load_in(bundle, exits, true, device, Precision::Auto)
    }

    /// [`Self::load`] (with the NER branch when `ner`), the tower in `precision` (see
    /// [`crate::device`]); heads and the NER branch stay f32.
    pub fn load_in(
        bundle: &Bundle,
        exits: &[usize],
        ner: bool,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let ner_spec = match ner {
            true => Some(bundle.manifest.ner.clone().ok_or_else(|| Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: "the job asks for entities and the bundle has no NER branch (run `vemo train ner` or `vemo models pull`)".into(),
            })?),
            false => None,
        };
        let min_depth = ner_spec.as_ref().map_or(0, |n| n.shared_layers);
        let dtype = precision.dtype_on(device);
        let mut encoder = Self::load_inner(bundle, exits, min_depth, device, dtype)?;
        if let (Some(spec), Backbone::Bert(_)) = (&ner_spec, &encoder.backbone) {
            let (_, cfg) = bert_config(bundle)?;
            encoder.ner = Some(NerBranch {
                model: crate::ner::model::NerModel::from_file(
                    &bundle.file(&spec.weights),
                    &cfg,
                    spec.branch_layers,
                    device,
                )?,
                shared_layers: spec.shared_layers,
            });
        } else if ner_spec.is_some() {
            return Err(Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: "the NER branch needs a BERT text tower".into(),
            });
        }
        let heads = bundle.exit_heads(device)?;
        encoder.heads = encoder
            .exits
            .iter()
            .map(|&exit| heads.get(Tower::Text, exit).cloned())
            .collect();
        Ok(encoder)
    }

    /// Loads the text tower without exit heads: every exit is the plain pooled embedding (BERT:
    /// the mean-pooled hidden state; CLIP: the projected EOS token), L2-normalised (what parity
    /// tests and head training need).
    pub fn load_without_heads(bundle: &Bundle, exits: &[usize], device: &Device) -> Result<Self> {
        Self::load_inner(bundle, exits, 0, device, DType::F32)
    }

    /// [`Self::load_without_heads`] with the tower in `precision` (bf16 parity tests).
    pub fn load_without_heads_in(
        bundle: &Bundle,
        exits: &[usize],
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        Self::load_inner(bundle, exits, 0, device, precision.dtype_on(device))
    }

    /// Loads the tower for `exits`, and at least `min_depth` layers (BERT).
    fn load_inner(
        bundle: &Bundle,
        exits: &[usize],
        min_depth: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let spec = bundle.text()?;
        let exits = if exits.is_empty() {
            vec![spec.default_exit]
        } else {
            exits.to_vec()
        };
        if let Some(bad) = exits.iter().find(|e| !spec.exits.contains(e)) {
            return Err(Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: format!(
                    "text exit {bad} not offered; the bundle has {:?}",
                    spec.exits
                ),
            });
        }
        let mut encoder = match spec.architecture {
            TextArchitecture::Clip => Self::load_clip(bundle, spec, exits, device, dtype)?,
            TextArchitecture::Bert => {
                Self::load_bert(bundle, spec, exits, min_depth, device, dtype)?
            }
        };
        encoder
            .tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(encoder)
    }

    fn tokenizer(bundle: &Bundle, spec: &TextTowerSpec) -> Result<Tokenizer> {
        Tokenizer::from_file(bundle.file(&spec.tokenizer))
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    fn load_bert(
        bundle: &Bundle,
        spec: &TextTowerSpec,
        exits: Vec<usize>,
        min_depth: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let depth = exits
            .iter()
            .copied()
            .max()
            .unwrap_or(spec.default_exit)
            .max(min_depth);
        let (bert, cfg) = bert_tower_in(bundle, depth, device, dtype)?;
        let mut tokenizer = Self::tokenizer(bundle, spec)?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        Ok(Self {
            tokenizer,
            backbone: Backbone::Bert(bert),
            heads: vec![None; exits.len()],
            ner: None,
            exits,
            dim: cfg.hidden_size,
            device: device.clone(),
        })
    }

    /// CLIP's text tower. The tokenizer does not pad: [`padded_ids`] does, in a way that cannot
    /// change the pooled token.
    fn load_clip(
        bundle: &Bundle,
        spec: &TextTowerSpec,
        exits: Vec<usize>,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let model = shared_model(bundle, &spec.config, &spec.weights, device, dtype)?;
        let cfg = &model.config().text_config;
        check_exits(bundle, Tower::Text, &exits, cfg.num_hidden_layers)?;
        if spec.max_tokens > cfg.max_position_embeddings {
            return Err(Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: format!(
                    "[text] max_tokens {} exceeds the checkpoint's max_position_embeddings {}",
                    spec.max_tokens, cfg.max_position_embeddings
                ),
            });
        }
        let mut tokenizer = Self::tokenizer(bundle, spec)?;
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer,
            dim: model.config().projection_dim,
            backbone: Backbone::Clip(model),
            heads: vec![None; exits.len()],
            ner: None,
            exits,
            device: device.clone(),
        })
    }

    /// The exits this encoder produces, in output order.
    pub fn exits(&self) -> &[usize] {
        &self.exits
    }

    /// Embedding width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Encodes one batch. Returns `[exit][caption]` -> L2-normalised embedding.
    pub fn encode(&self, captions: &[&str]) -> Result<Vec<Vec<Vec<f32>>>> {
        self.encode_all(captions, captions.len())
    }

    /// Runs the tower on tokenized captions, each cut to `len` tokens (all padding beyond the
    /// longest of them). Returns a `(caption, dim)` tensor per exit and each caption's entities.
    fn forward(
        &self,
        encodings: &[&tokenizers::Encoding],
        captions: &[&str],
        len: usize,
    ) -> Result<(Vec<Tensor>, Vec<Vec<Entity>>)> {
        let mut entities = vec![Vec::new(); encodings.len()];
        let joint = match &self.backbone {
            Backbone::Bert(bert) => {
                let rows = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor> {
                    let data: Vec<Vec<u32>> =
                        encodings.iter().map(|e| f(e)[..len].to_vec()).collect();
                    Ok(Tensor::new(data, &self.device)?)
                };
                let ids = rows(&|e| e.get_ids())?;
                let types = rows(&|e| e.get_type_ids())?;
                let mask = rows(&|e| e.get_attention_mask())?;
                let mut exits = self.exits.clone();
                exits.extend(self.ner.as_ref().map(|n| n.shared_layers));
                let mut hidden = bert.forward_exits(&ids, &types, &mask, &exits)?;
                if let Some(ner) = &self.ner {
                    let shared = hidden
                        .pop()
                        .ok_or_else(|| Error::Tokenizer("no hidden state".into()))?
                        .to_dtype(DType::F32)?;
                    let case =
                        crate::ner::entities::case_tensor(encodings, captions, len, &self.device)?;
                    let log_probs = ner
                        .model
                        .log_probs(&shared, &mask, &case, false)?
                        .to_vec3::<f32>()?;
                    for (i, rows) in log_probs.iter().enumerate() {
                        entities[i] = caption_entities(captions[i], encodings[i], rows);
                    }
                }
                hidden
                    .iter()
                    .map(|h| mean_pool_normalized(h, &mask))
                    .collect::<candle_core::Result<Vec<_>>>()?
            }
            Backbone::Clip(clip) => {
                let rows: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();
                let ids = padded_ids(&rows, len, &self.device)?;
                clip.encode_text_exits(&ids, &self.exits)?
                    .iter()
                    .map(l2_normalize)
                    .collect::<candle_core::Result<Vec<_>>>()?
            }
        };
        let embeddings = joint
            .into_iter()
            .zip(&self.heads)
            .map(|(pooled, head)| match head {
                Some(head) => project(head, &pooled),
                None => Ok(pooled),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((embeddings, entities))
    }

    /// Encodes any number of captions in batches of `batch_size`, captions of similar length
    /// together (less padding). Returns `[exit][caption]` in the input order.
    pub fn encode_all(&self, captions: &[&str], batch_size: usize) -> Result<Vec<Vec<Vec<f32>>>> {
        Ok(self.encode_all_with_entities(captions, batch_size)?.0)
    }

    /// The entities of each text (any text: captions, spotted words), in batches of
    /// `batch_size`; empty texts have none. Needs the NER branch ([`Self::load_with_ner`]).
    pub fn entities_of(&self, texts: &[&str], batch_size: usize) -> Result<Vec<Vec<Entity>>> {
        let mut out = vec![Vec::new(); texts.len()];
        let (idx, kept): (Vec<usize>, Vec<&str>) = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(i, t)| (i, *t))
            .unzip();
        let (_, entities) = self.encode_all_with_entities(&kept, batch_size)?;
        for (i, found) in idx.into_iter().zip(entities) {
            out[i] = found;
        }
        Ok(out)
    }

    /// [`Self::encode_all`], and each caption's entities (empty unless loaded with the NER
    /// branch, [`Self::load_with_ner`]), from the same pass over the shared layers.
    pub fn encode_all_with_entities(
        &self,
        captions: &[&str],
        batch_size: usize,
    ) -> Result<CaptionOutputs> {
        let (buffers, entities) = self.encode_buffers(captions, batch_size)?;
        Ok((buffers.into_rows(), entities))
    }

    /// [`Self::encode_all_with_entities`] as Arrow columns: one embedding column per exit (in
    /// [`Self::exits`] order, [`Self::dim`] wide, a row per caption), and each caption's
    /// entities.
    pub fn encode_columns(
        &self,
        captions: &[&str],
        batch_size: usize,
    ) -> Result<(Vec<FixedSizeListArray>, Vec<Vec<Entity>>)> {
        let (buffers, entities) = self.encode_buffers(captions, batch_size)?;
        Ok((buffers.into_arrays()?, entities))
    }

    /// Runs the captions in batches of `batch_size`, captions of similar length together
    /// (less padding): each exit's embeddings in one buffer, in the input order.
    fn encode_buffers(
        &self,
        captions: &[&str],
        batch_size: usize,
    ) -> Result<(ColumnBuffers, Vec<Vec<Entity>>)> {
        let mut out = ColumnBuffers::new(vec![self.dim; self.exits.len()], captions.len());
        if captions.is_empty() {
            return Ok((out, Vec::new()));
        }
        // One tokenizer pass; padding (BERT's, or none for CLIP) goes right, so a batch is cut
        // to its own longest caption.
        let encodings = self
            .tokenizer
            .encode_batch(captions.to_vec(), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let length = |e: &tokenizers::Encoding| e.get_attention_mask().iter().sum::<u32>() as usize;
        let mut order: Vec<usize> = (0..captions.len()).collect();
        order.sort_by_key(|&i| length(&encodings[i]));
        let mut entities = vec![Vec::new(); captions.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&tokenizers::Encoding> = chunk.iter().map(|&i| &encodings[i]).collect();
            let texts: Vec<&str> = chunk.iter().map(|&i| captions[i]).collect();
            let len = batch.iter().map(|e| length(e)).max().unwrap_or(0);
            let (encoded, found) = self.forward(&batch, &texts, len)?;
            out.put(&encoded, chunk)?;
            for (&i, list) in chunk.iter().zip(found) {
                entities[i] = list;
            }
        }
        Ok((out, entities))
    }
}
