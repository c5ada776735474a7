//! CoNLL-2003 files: one token a line (token first, tag last), blank lines between sentences,
//! `-DOCSTART-` lines between documents. Tags may be IOB1 or IOB2; they are read as IOB2.

use super::tags::to_iob2;
use crate::{Error, Result};

/// A sentence: its words and their IOB2 tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    pub words: Vec<String>,
    pub tags: Vec<String>,
}

/// Parses a CoNLL file's text. A line with fewer than two columns is an error naming its line.
pub fn parse_conll(text: &str, path: &str) -> Result<Vec<Sentence>> {
    let mut sentences = Vec::new();
    let mut current = Sentence {
        words: Vec::new(),
        tags: Vec::new(),
    };
    let mut flush = |current: &mut Sentence| {
        if !current.words.is_empty() {
            let tags = to_iob2(&current.tags);
            sentences.push(Sentence {
                words: std::mem::take(&mut current.words),
                tags,
            });
            current.tags.clear();
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with("-DOCSTART-") {
            flush(&mut current);
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(word), Some(tag)) = (fields.next(), fields.last()) else {
            return Err(Error::Data {
                path: path.to_string(),
                reason: format!("line {}: expected `TOKEN ... TAG`, got {line:?}", n + 1),
            });
        };
        current.words.push(word.to_string());
        current.tags.push(tag.to_string());
    }
    flush(&mut current);
    Ok(sentences)
}

/// Reads and parses a CoNLL file.
pub fn read_conll(path: &std::path::Path) -> Result<Vec<Sentence>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        cause: e,
    })?;
    parse_conll(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_on_blank_and_docstart_lines_and_tags_become_iob2() {
        let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\
                    German JJ B-NP I-MISC\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n";
        let got = parse_conll(text, "t").expect("parse");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].words, ["EU", "rejects", "German"]);
        assert_eq!(got[0].tags, ["B-ORG", "O", "B-MISC"]);
        assert_eq!(got[1].tags, ["B-PER", "I-PER"]);
        assert!(parse_conll("lonely\n", "t").is_err());
    }
}
