//! Entities from tag scores: words merged from subword pieces, BIO spans merged into
//! entities, the entity text cut from the original caption (case and accents kept) and
//! character offsets that count characters, not bytes — on accented and punctuated text, with
//! an uncased tokenizer that lowercases and strips accents (the tiny bundle's, which has the
//! normaliser and pre-tokenizer of the real text tower's and splits words into more pieces).

use vemo_models::bundle::Bundle;
use vemo_models::ner::entities::caption_entities;
use vemo_models::ner::tags::{NUM_TAGS, tag_index};
use vemo_models::ner::train::bundle_tokenizer;
use vemo_models::tiny_bundle::tiny_bundle;

#[test]
fn entities_keep_the_original_text_and_character_offsets() {
    let bundle = Bundle::open(&tiny_bundle().expect("tiny bundle")).expect("bundle");
    let tokenizer = bundle_tokenizer(&bundle).expect("tokenizer");
    let caption = "Café owner José Núñez-Ortiz, in São Paulo's old town.";
    let encoding = tokenizer.encode(caption, true).expect("encode");
    // Tag by word (the pre-tokenizer splits on spaces and punctuation), read from the caption.
    let wanted = |word: &str| match word.to_lowercase().as_str() {
        "josé" => "B-PER",
        "núñez" | "-" | "ortiz" => "I-PER",
        "são" => "B-LOC",
        "paulo" => "I-LOC",
        _ => "O",
    };
    let tokens = encoding.get_tokens();
    let words = encoding.get_word_ids();
    let mut log_probs = Vec::new();
    for word in words {
        let text = word
            .and_then(|w| encoding.word_to_chars(w, 0))
            .map_or("", |(start, end)| &caption[start..end]);
        let current_tag = wanted(text);
        let mut row = vec![-10f32; NUM_TAGS];
        row[tag_index(current_tag)] = -0.01;
        log_probs.push(row);
    }
    let entities = caption_entities(caption, &encoding, &log_probs);
    let found: Vec<(&str, &str, u32, u32)> = entities
        .iter()
        .map(|e| (e.text.as_str(), e.label.as_str(), e.start, e.end))
        .collect();
    assert_eq!(
        found,
        vec![
            ("José Núñez-Ortiz", "PER", 11, 27),
            ("São Paulo", "LOC", 32, 41)
        ],
        "tokens {tokens:?}"
    );
    let chars: Vec<char> = caption.chars().collect();
    let sliced: String = chars[11..27].iter().collect();
    assert_eq!(sliced, "José Núñez-Ortiz");
    assert!(entities.iter().all(|e| e.score > 0.9));
    assert_eq!(entities[0].key(), "PER:josé núñez-ortiz");
}
