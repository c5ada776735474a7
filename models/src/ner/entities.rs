//! Entities of a caption from the NER branch's output: the first subword of each word carries
//! its tag, BIO-constrained Viterbi picks the tags, BIO spans become entities, and the
//! tokenizer's byte offsets give each entity's text (original case) and character offsets.

use candle_core::{Device, Tensor};
use tokenizers::Encoding;
use vemo_schemas::Entity;

use super::model::{CASE_FEATURES, case_features};
use super::tags::{spans, tag_name, viterbi};

/// Case features of each token's word in a caption, (batch, len, [`CASE_FEATURES`]): a word's
/// text is the caption between its first token's start and its last token's end.
pub fn case_tensor(
    encodings: &[&Encoding],
    captions: &[&str],
    len: usize,
    device: &Device,
) -> crate::Result<Tensor> {
    let mut data = Vec::with_capacity(encodings.len() * len * CASE_FEATURES);
    for (encoding, caption) in encodings.iter().zip(captions) {
        let words = encoding.get_word_ids();
        // Each word's byte span, from its tokens' offsets, in one pass.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (word, &(start, end)) in words.iter().zip(encoding.get_offsets()) {
            let Some(word) = word.map(|w| w as usize) else {
                continue;
            };
            if spans.len() <= word {
                spans.resize(word + 1, (usize::MAX, 0));
            }
            spans[word] = (spans[word].0.min(start), spans[word].1.max(end));
        }
        for p in 0..len {
            let features = match words.get(p).copied().flatten() {
                Some(word) => {
                    let (start, end) = spans[word as usize];
                    let text = caption.get(start..end).unwrap_or_default();
                    case_features(text, word == 0)
                }
                None => [0.0; CASE_FEATURES],
            };
            data.extend(features);
        }
    }
    Ok(Tensor::from_vec(
        data,
        (encodings.len(), len, CASE_FEATURES),
        device,
    )?)
}

/// Entities of `caption`, tokenized as `encoding`, from per-token tag log-probabilities
/// (`log_probs[token][tag]`, at least as many rows as tokens in the caption).
pub fn caption_entities(caption: &str, encoding: &Encoding, log_probs: &[Vec<f32>]) -> Vec<Entity> {
    // Words (as the pre-tokenizer split them): their tokens' positions.
    let mut words: Vec<Vec<usize>> = Vec::new();
    for (position, word) in encoding.get_word_ids().iter().enumerate() {
        let Some(word) = word.map(|w| w as usize) else {
            continue;
        };
        if position >= log_probs.len() {
            break;
        }
        if words.len() <= word {
            words.resize(word + 1, Vec::new());
        }
        words[word].push(position);
    }
    words.retain(|tokens| !tokens.is_empty());
    let scores: Vec<Vec<f32>> = words.iter().map(|t| log_probs[t[0]].clone()).collect();
    let path = viterbi(&scores);
    let tags: Vec<String> = path.iter().map(|&t| tag_name(t)).collect();
    let offsets = encoding.get_offsets();
    spans(&tags)
        .into_iter()
        .filter_map(|span| {
            let first = *words[span.start].first()?;
            let last = *words[span.end - 1].last()?;
            let (start, end) = (offsets[first].0, offsets[last].1);
            let text = caption.get(start..end)?.to_string();
            let probability: f32 = (span.start..span.end)
                .map(|w| scores[w][path[w]].exp())
                .sum::<f32>()
                / (span.end - span.start) as f32;
            Some(Entity {
                text,
                label: span.kind,
                start: caption[..start].chars().count() as u32,
                end: caption[..end].chars().count() as u32,
                score: probability,
            })
        })
        .collect()
}
