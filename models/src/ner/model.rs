//! The NER branch: fine-tuned copies of the text tower's top layers over the shared lower
//! layers, and a linear token classifier into the BIO tags.
//!
//! The tower's first `shared_layers` layers run once for both tasks (semantic search pools
//! them further); the branch continues from their hidden states. The classifier reads the
//! branch's output, the shared hidden state and the word's letter case (the tokenizer is
//! uncased; capitals are NER's strongest cue). The case also enters the branch: a learned
//! projection of it is added to the shared state, so the tuned layers see which neighbours are
//! capitalised. Its weights live in one safetensors file: `branch.{i}.*` (BERT layer names),
//! `case_input.{weight,bias}` and `classifier.{weight,bias}`.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap, linear};

use super::tags::NUM_TAGS;

/// Letter-case features of a word: lower case, Title case, UPPER case, contains a digit, first
/// word of the text (where a capital says little), mixed case (`McDonald`, `iPhone`), no letter
/// or digit at all (punctuation).
pub const CASE_FEATURES: usize = 7;

/// The case features of `word`, the `first` word of its text or not.
pub fn case_features(word: &str, first: bool) -> [f32; CASE_FEATURES] {
    let letters: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).collect();
    let upper = letters.iter().filter(|c| c.is_uppercase()).count();
    let first_upper = letters.first().is_some_and(|c| c.is_uppercase());
    let all_upper = letters.len() > 1 && upper == letters.len();
    let digit = word.chars().any(|c| c.is_ascii_digit());
    let inner_upper = letters.iter().skip(1).any(|c| c.is_uppercase());
    [
        f32::from(u8::from(upper == 0)),
        f32::from(u8::from(first_upper && !all_upper)),
        f32::from(u8::from(all_upper)),
        f32::from(u8::from(digit)),
        f32::from(u8::from(first)),
        f32::from(u8::from(inner_upper && !all_upper)),
        f32::from(u8::from(!word.chars().any(char::is_alphanumeric))),
    ]
}
use crate::Result;
use crate::models::bert::{BertLayers, Config};

/// Token classifier over the shared layers' hidden states.
pub struct NerModel {
    branch: BertLayers,
    case_input: Linear,
    classifier: Linear,
}

impl std::fmt::Debug for NerModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NerModel")
    }
}

impl NerModel {
    /// Builds the model from `vb` (`branch.{i}.*`, `classifier.*`) with `branch_layers` layers.
    pub fn load(vb: VarBuilder, cfg: &Config, branch_layers: usize) -> Result<Self> {
        Ok(Self {
            branch: BertLayers::load(vb.pp("branch"), cfg, branch_layers)?,
            case_input: linear(CASE_FEATURES, cfg.hidden_size, vb.pp("case_input"))?,
            classifier: linear(
                2 * cfg.hidden_size + CASE_FEATURES,
                NUM_TAGS,
                vb.pp("classifier"),
            )?,
        })
    }

    /// Loads a trained model from its safetensors file.
    pub fn from_file(
        path: &std::path::Path,
        cfg: &Config,
        branch_layers: usize,
        device: &Device,
    ) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| crate::Error::Io {
            path: path.display().to_string(),
            cause: e,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)?;
        let mut model = Self::load(vb, cfg, branch_layers)?;
        model.branch.freeze_for_inference();
        Ok(model)
    }

    /// Log-probabilities of the tags, (batch, seq, tags), from the shared hidden states and
    /// each token's word case features (batch, seq, [`CASE_FEATURES`]); `train` for a pass
    /// that gradients flow back through into the branch.
    pub fn log_probs(
        &self,
        shared: &Tensor,
        attention_mask: &Tensor,
        case: &Tensor,
        train: bool,
    ) -> Result<Tensor> {
        let input = shared.broadcast_add(&self.case_input.forward(case)?)?;
        let hidden = self.branch.forward_t(&input, attention_mask, train)?;
        let features = Tensor::cat(&[&hidden, shared, case], D::Minus1)?;
        let logits = self.classifier.forward(&features)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }
}

/// A trainable model: a `VarMap` whose branch starts as copies of the tower's layers
/// `shared_layers..shared_layers + branch_layers` (read from the tower's safetensors) and
/// whose case projection and classifier start at zero.
pub fn trainable(
    tower_weights: &std::path::Path,
    cfg: &Config,
    shared_layers: usize,
    branch_layers: usize,
    device: &Device,
) -> Result<(VarMap, NerModel)> {
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let model = NerModel::load(vb, cfg, branch_layers)?;
    let tower = candle_core::safetensors::load(tower_weights, device)?;
    let prefix = if tower.contains_key("bert.embeddings.word_embeddings.weight") {
        "bert.encoder.layer"
    } else {
        "encoder.layer"
    };
    // The case projection and the classifier start at zero, so the branch starts as the
    // pretrained layers and training is deterministic (no random initialisation).
    for (name, var) in named_vars(&varmap)? {
        if name.starts_with("classifier.") || name.starts_with("case_input.") {
            var.set(&var.as_tensor().zeros_like()?)?;
        }
    }
    for i in 0..branch_layers {
        let source = format!("{prefix}.{}.", shared_layers + i);
        let target = format!("branch.{i}.");
        for (name, tensor) in &tower {
            if let Some(rest) = name.strip_prefix(&source) {
                varmap.set_one(format!("{target}{rest}"), tensor)?;
            }
        }
    }
    Ok((varmap, model))
}

/// The variables of a training state by name (handles: setting one sets the model's).
pub fn named_vars(varmap: &VarMap) -> Result<HashMap<String, Var>> {
    let data = varmap.data().lock().map_err(|_| crate::Error::Bundle {
        path: "ner".into(),
        reason: "the training state is poisoned".into(),
    })?;
    Ok(data.clone())
}

/// Writes a trained model's tensors to `path` as f16 (half the size; loading converts back to
/// f32, and the dev F1 of the saved file is what `vemo eval ner` reports).
pub fn save(varmap: &VarMap, path: &std::path::Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = named_vars(varmap)?
        .into_iter()
        .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(DType::F16)?)))
        .collect::<Result<_>>()?;
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_features_tell_lower_title_upper_and_digits() {
        let f = |w, first| case_features(w, first).map(|x| x as u8);
        assert_eq!(f("london", false), [1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(f("London", true), [0, 1, 0, 0, 1, 0, 0]);
        assert_eq!(f("NASA", false), [0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(f("1996", false), [1, 0, 0, 1, 0, 0, 0]);
        assert_eq!(f("Núñez", false), [0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(f("McDonald", false), [0, 1, 0, 0, 0, 1, 0]);
        assert_eq!(f("--", false), [1, 0, 0, 0, 0, 0, 1]);
    }
}
