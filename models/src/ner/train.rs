//! Training the NER branch: CoNLL sentences tokenized into subwords (the first subword of a
//! word carries its tag), the frozen shared layers run once, then the branch and classifier
//! trained with AdamW on cross-entropy (linear warm-up and decay), dev F1 after every epoch, the
//! best epoch kept.

use candle_core::{Device, Tensor};
use candle_nn::{Optimizer, VarMap};
use tokenizers::Tokenizer;

use super::conll::Sentence;
use super::metrics::{Report, evaluate};
use super::model::{CASE_FEATURES, NerModel, case_features, named_vars};
use super::tags::{tag_index, tag_name, viterbi};
use crate::models::bert::BertEncoder;
use crate::{Error, Result};

/// Longest sentence in subword tokens; longer ones are cut (their tail words tagged `O`).
pub const MAX_TOKENS: usize = 128;

/// A tokenized sentence.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// For each word, the position of its first subword (None when cut off).
    pub first_token: Vec<Option<usize>>,
    /// Tag index per word.
    pub tags: Vec<usize>,
    /// Case features of each token's word (zeros for special tokens).
    pub case: Vec<[f32; CASE_FEATURES]>,
}

/// The bundle's text-tower tokenizer, without padding or truncation (see [`MAX_TOKENS`]).
pub fn bundle_tokenizer(bundle: &crate::bundle::Bundle) -> Result<Tokenizer> {
    let spec = bundle.text()?;
    let mut tokenizer = Tokenizer::from_file(bundle.file(&spec.tokenizer))
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
    Ok(tokenizer)
}

/// Tokenizes pre-split words (the tokenizer lowercases; words keep their positions).
pub fn encode_sentences(tokenizer: &Tokenizer, sentences: &[Sentence]) -> Result<Vec<Encoded>> {
    sentences
        .iter()
        .map(|s| {
            let encoding = tokenizer
                .encode(s.words.clone(), true)
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            let mut ids = encoding.get_ids().to_vec();
            let word_case: Vec<_> = s
                .words
                .iter()
                .enumerate()
                .map(|(i, w)| case_features(w, i == 0))
                .collect();
            let mut case: Vec<[f32; CASE_FEATURES]> = encoding
                .get_word_ids()
                .iter()
                .map(|w| {
                    w.and_then(|w| word_case.get(w as usize).copied())
                        .unwrap_or_default()
                })
                .collect();
            let mut first_token = vec![None; s.words.len()];
            for (position, word) in encoding.get_word_ids().iter().enumerate() {
                if let Some(w) = word.map(|w| w as usize)
                    && position < MAX_TOKENS - 1
                    && w < first_token.len()
                    && first_token[w].is_none()
                {
                    first_token[w] = Some(position);
                }
            }
            if ids.len() > MAX_TOKENS {
                let sep = ids.last().copied().unwrap_or(0);
                ids.truncate(MAX_TOKENS - 1);
                ids.push(sep);
                case.truncate(MAX_TOKENS - 1);
                case.push([0.0; CASE_FEATURES]);
            }
            Ok(Encoded {
                ids,
                first_token,
                tags: s.tags.iter().map(|t| tag_index(t)).collect(),
                case,
            })
        })
        .collect()
}

/// A batch with the shared layers already run.
pub struct Batch {
    /// Indices into the sentence list.
    pub members: Vec<usize>,
    pub shared: Tensor,
    pub mask: Tensor,
    pub case: Tensor,
    /// Rows of the flattened (batch * seq) positions that carry a tag, and those tags.
    pub tagged_rows: Tensor,
    pub targets: Tensor,
}

/// Groups sentences of similar length into batches and runs the frozen shared layers on them.
pub fn prepare(
    tower: &BertEncoder,
    shared_layers: usize,
    encoded: &[Encoded],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<Batch>> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| encoded[i].ids.len());
    let mut batches = Vec::new();
    for members in order.chunks(batch_size.max(1)) {
        let len = members
            .iter()
            .map(|&i| encoded[i].ids.len())
            .max()
            .unwrap_or(1);
        let (mut ids, mut mask, mut rows, mut targets) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut case: Vec<f32> = Vec::new();
        for (b, &i) in members.iter().enumerate() {
            let e = &encoded[i];
            ids.extend(
                e.ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, len - e.ids.len())),
            );
            mask.extend((0..len).map(|p| u32::from(p < e.ids.len())));
            for p in 0..len {
                case.extend(e.case.get(p).copied().unwrap_or_default());
            }
            for (w, first) in e.first_token.iter().enumerate() {
                if let Some(p) = first {
                    rows.push((b * len + p) as u32);
                    targets.push(e.tags[w] as u32);
                }
            }
        }
        let n = members.len();
        let ids = Tensor::from_vec(ids, (n, len), device)?;
        let mask = Tensor::from_vec(mask, (n, len), device)?;
        let types = ids.zeros_like()?;
        let shared = tower
            .forward_exits(&ids, &types, &mask, &[shared_layers])?
            .remove(0);
        batches.push(Batch {
            members: members.to_vec(),
            shared,
            mask,
            case: Tensor::from_vec(case, (n, len, CASE_FEATURES), device)?,
            tagged_rows: Tensor::new(rows, device)?,
            targets: Tensor::new(targets, device)?,
        });
    }
    Ok(batches)
}

/// Predicts IOB2 tags for every sentence of `batches` (BIO-constrained Viterbi over the
/// log-probabilities of each word's first subword); words cut off are `O`.
pub fn predict(
    model: &NerModel,
    batches: &[Batch],
    encoded: &[Encoded],
) -> Result<Vec<Vec<String>>> {
    let mut out = vec![Vec::new(); encoded.len()];
    for batch in batches {
        let log_probs = model
            .log_probs(&batch.shared, &batch.mask, &batch.case, false)?
            .to_vec3::<f32>()?;
        for (row, &i) in batch.members.iter().enumerate() {
            out[i] = decode_words(&log_probs[row], &encoded[i].first_token);
        }
    }
    Ok(out)
}

/// Tags of words from per-token log-probabilities.
pub fn decode_words(log_probs: &[Vec<f32>], first_token: &[Option<usize>]) -> Vec<String> {
    let kept: Vec<usize> = first_token.iter().flatten().copied().collect();
    let scores: Vec<Vec<f32>> = kept.iter().map(|&p| log_probs[p].clone()).collect();
    let mut path = viterbi(&scores).into_iter();
    first_token
        .iter()
        .map(|t| match t {
            Some(_) => tag_name(path.next().unwrap_or(0)),
            None => "O".to_string(),
        })
        .collect()
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Stop after this many epochs without a better dev F1.
    pub patience: usize,
}

/// One epoch's figures.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub dev: Report,
    pub seconds: f64,
}

/// The development set: its batches, tokenized sentences and gold tags.
pub struct DevSet<'a> {
    pub batches: &'a [Batch],
    pub encoded: &'a [Encoded],
    pub gold: &'a [Vec<String>],
}

/// Trains `model` (its variables in `varmap`) and restores the weights of the best dev epoch.
/// `on_epoch` sees each epoch's report as it ends.
pub fn train(
    varmap: &VarMap,
    model: &NerModel,
    train: &[Batch],
    dev: &DevSet,
    settings: &TrainSettings,
    mut on_epoch: impl FnMut(&EpochReport),
) -> Result<Option<EpochReport>> {
    // The new layers (classifier, case projection) start at zero and learn 10x faster than the
    // branch, which starts from the pretrained layers.
    let (fresh, branch): (Vec<_>, Vec<_>) = named_vars(varmap)?
        .into_iter()
        .partition(|(name, _)| name.starts_with("classifier") || name.starts_with("case_input"));
    let adamw = |vars: Vec<(String, candle_core::Var)>, lr: f64| {
        candle_nn::AdamW::new(
            vars.into_iter().map(|(_, v)| v).collect(),
            candle_nn::ParamsAdamW {
                lr,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
    };
    let mut optimizers = [
        adamw(branch, settings.learning_rate)?,
        adamw(fresh, settings.learning_rate * 10.0)?,
    ];
    let rates = [settings.learning_rate, settings.learning_rate * 10.0];
    let total_steps = (settings.epochs * train.len()).max(1);
    let mut step = 0usize;
    let mut best: Option<(EpochReport, Vec<(String, Tensor)>)> = None;
    let mut stale = 0;
    for epoch in 1..=settings.epochs {
        let start = std::time::Instant::now();
        let (mut total, mut count) = (0f64, 0usize);
        // A fixed, epoch-dependent shuffle of the batches.
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.sort_by_key(|&i| (i * 7919 + epoch * 104_729) % train.len().max(1));
        for &b in &order {
            let scale = learning_rate_scale(step, total_steps);
            for (optimizer, rate) in optimizers.iter_mut().zip(rates) {
                optimizer.set_learning_rate(rate * scale);
            }
            step += 1;
            let batch = &train[b];
            let log_probs = model.log_probs(&batch.shared, &batch.mask, &batch.case, true)?;
            let (n, len, tags) = log_probs.dims3()?;
            let flat = log_probs.reshape((n * len, tags))?;
            let picked = flat.index_select(&batch.tagged_rows, 0)?;
            let loss = candle_nn::loss::nll(&picked, &batch.targets)?;
            let grads = loss.backward()?;
            for optimizer in &mut optimizers {
                optimizer.step(&grads)?;
            }
            total += f64::from(loss.to_scalar::<f32>()?);
            count += 1;
        }
        let predicted = predict(model, dev.batches, dev.encoded)?;
        let report = EpochReport {
            epoch,
            loss: total / count.max(1) as f64,
            dev: evaluate(dev.gold, &predicted),
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&report);
        let better = best
            .as_ref()
            .is_none_or(|(b, _)| report.dev.micro.f1 > b.dev.micro.f1);
        if better {
            stale = 0;
            best = Some((report, snapshot(varmap)?));
        } else {
            stale += 1;
            if stale >= settings.patience {
                break;
            }
        }
    }
    let Some((report, weights)) = best else {
        return Ok(None);
    };
    let vars = named_vars(varmap)?;
    for (name, tensor) in weights {
        if let Some(var) = vars.get(&name) {
            var.set(&tensor)?;
        }
    }
    Ok(Some(report))
}

/// The learning rate's share at `step` of `total`: a linear warm-up over the first 5% of the
/// steps, then a linear decay to zero at the last epoch's end.
pub fn learning_rate_scale(step: usize, total: usize) -> f64 {
    let warmup = (total / 20).max(1);
    if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        (total - step.min(total)) as f64 / (total - warmup).max(1) as f64
    }
}

fn snapshot(varmap: &VarMap) -> Result<Vec<(String, Tensor)>> {
    named_vars(varmap)?
        .into_iter()
        .map(|(k, v)| Ok((k, v.as_tensor().copy()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::learning_rate_scale;

    #[test]
    fn learning_rate_warms_up_then_decays_to_zero() {
        assert!((learning_rate_scale(0, 100) - 0.2).abs() < 1e-9);
        assert!((learning_rate_scale(4, 100) - 1.0).abs() < 1e-9);
        assert!((learning_rate_scale(5, 100) - 1.0).abs() < 1e-9);
        assert!(learning_rate_scale(50, 100) < 0.6);
        assert!(learning_rate_scale(99, 100) > 0.0);
        assert_eq!(learning_rate_scale(100, 100), 0.0);
    }
}
