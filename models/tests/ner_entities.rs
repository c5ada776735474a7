//! Entities from tag scores: words merged from subword pieces, BIO spans merged into
//! entities, the entity text cut from the original caption (case and accents kept) and
//! character offsets that count characters, not bytes — on accented and punctuated text, with
//! the real text-tower tokenizer (uncased: it lowercases and strips accents).
//!
//! Needs the pulled bundle (`vemo models pull`); skips with a message when it is absent unless
//! `VEMO_REQUIRE_BUNDLE=1`.

use vemo_models::bundle::{Bundle, vemo_home};
use vemo_models::ner::entities::caption_entities;
use vemo_models::ner::tags::{NUM_TAGS, tag_index};
use vemo_models::ner::train::bundle_tokenizer;

#[test]
fn entities_keep_the_original_text_and_character_offsets() {
    let dir = vemo_home().join("models/vemo-mini");
    if !dir.join("bundle.toml").is_file() {
        assert!(
            std::env::var("VEMO_REQUIRE_BUNDLE").as_deref() != Ok("1"),
            "no bundle at {}",
            dir.display()
        );
        eprintln!("SKIPPED: no bundle at {}", dir.display());
        return;
    }
    let bundle = Bundle::open(&dir).expect("bundle");
    let tokenizer = bundle_tokenizer(&bundle).expect("tokenizer");
    let caption = "Café owner José Núñez-Ortiz, in São Paulo's old town.";
    let encoding = tokenizer.encode(caption, true).expect("encode");
    // Tag by word: the pre-tokenizer splits on spaces and punctuation.
    let wanted = |word: &str| match word {
        "josé" | "jose" => "B-PER",
        "núñez" | "nunez" | "-" | "ortiz" => "I-PER",
        "são" | "sao" => "B-LOC",
        "paulo" => "I-LOC",
        _ => "O",
    };
    let tokens = encoding.get_tokens();
    let words = encoding.get_word_ids();
    let mut log_probs = Vec::new();
    let mut current_word = None;
    let mut current_tag = "O";
    for (token, word) in tokens.iter().zip(words) {
        if *word != current_word {
            current_word = *word;
            current_tag = wanted(token.trim_start_matches("##"));
        }
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
