//! Scene-text figures as the ICDAR 2015 protocol computes them: detection precision, recall
//! and H-mean at IoU > 0.5 (one-to-one, don't-care boxes and the detections that fall mostly
//! inside them set aside), end-to-end word spotting (a match also needs the same text, case
//! ignored), and recognition accuracy on word crops. Counts add up over all images.
//!
//! Beside them, a search-centric figure in which boxes play no part: image-level word recall
//! and precision ([`WordCounts`]), the words of an image's ground truth against the words of
//! everything spotted in it. Line-level regions, right for search, score badly at word-level
//! IoU; this figure does not penalise them. It is `bench/rapidocr_icdar.py`'s, computed the
//! same way, so the two give the same figures on the same predictions.

use std::collections::HashSet;

use serde::Serialize;

use super::geometry::{Point, area, intersection_area, iou};
use super::icdar::GtWord;
use crate::ner::metrics::Scores;

/// IoU above which a detection matches a ground-truth box.
pub const IOU_MATCH: f32 = 0.5;
/// Share of a detection's area inside a don't-care box above which it is set aside.
pub const DONT_CARE_OVERLAP: f32 = 0.5;

/// A detected (and maybe recognised) word.
#[derive(Debug, Clone, PartialEq)]
pub struct Spotted {
    pub polygon: Vec<Point>,
    pub text: String,
}

/// Precision, recall and their harmonic mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub hmean: f64,
}

impl Prf {
    fn of(matched: usize, predicted: usize, gold: usize) -> Self {
        let scores = Scores::from_counts(matched, predicted, gold);
        Self {
            precision: scores.precision,
            recall: scores.recall,
            hmean: scores.f1,
        }
    }
}

/// Running counts over a set of scenes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SceneCounts {
    pub gold: usize,
    pub predicted: usize,
    pub detected: usize,
    pub spotted: usize,
}

impl SceneCounts {
    /// Adds one scene: its ground truth and what was spotted in it.
    pub fn add(&mut self, gt: &[GtWord], found: &[Spotted]) {
        let care: Vec<&GtWord> = gt.iter().filter(|g| !g.dont_care).collect();
        let kept: Vec<&Spotted> = found
            .iter()
            .filter(|f| {
                let own = area(&f.polygon);
                !gt.iter().filter(|g| g.dont_care).any(|g| {
                    own > 0.0 && intersection_area(&f.polygon, &g.polygon) / own > DONT_CARE_OVERLAP
                })
            })
            .collect();
        self.gold += care.len();
        self.predicted += kept.len();
        self.detected += greedy_matches(&care, &kept, |_, _| true);
        self.spotted += greedy_matches(&care, &kept, |g, f| {
            g.text.to_lowercase() == f.text.to_lowercase()
        });
    }

    pub fn detection(&self) -> Prf {
        Prf::of(self.detected, self.predicted, self.gold)
    }

    pub fn end_to_end(&self) -> Prf {
        Prf::of(self.spotted, self.predicted, self.gold)
    }
}

/// One-to-one matches, ground truth in order, each taking the first free detection with IoU
/// above [`IOU_MATCH`] that `also` accepts.
fn greedy_matches(
    gt: &[&GtWord],
    found: &[&Spotted],
    also: impl Fn(&GtWord, &Spotted) -> bool,
) -> usize {
    let mut taken = vec![false; found.len()];
    let mut matched = 0;
    for g in gt {
        if let Some(j) = (0..found.len()).find(|&j| {
            !taken[j] && iou(&g.polygon, &found[j].polygon) > IOU_MATCH && also(g, found[j])
        }) {
            taken[j] = true;
            matched += 1;
        }
    }
    matched
}

/// Share of crops read exactly (case ignored).
pub fn recognition_accuracy(pairs: &[(String, String)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let right = pairs
        .iter()
        .filter(|(gold, read)| gold.to_lowercase() == read.to_lowercase())
        .count();
    right as f64 / pairs.len() as f64
}

/// Image-level word counts over a set of scenes, as `bench/rapidocr_icdar.py`'s `word_counts`
/// computes them. Ground-truth words are the [`search_words`] of a scene's transcriptions
/// other than `###`; spotted words, those of all the texts spotted in it. Every occurrence
/// counts: a ground-truth word written twice in a scene is two words, both found if the
/// spotted words hold it once (and likewise a word spotted twice is two spotted words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WordCounts {
    pub gt_words: usize,
    /// Ground-truth words among the scene's spotted words.
    pub gt_words_found: usize,
    pub spotted_words: usize,
    /// Spotted words among the scene's ground-truth words.
    pub spotted_words_right: usize,
}

impl WordCounts {
    /// Adds one scene: its ground truth and what was spotted in it (boxes ignored).
    pub fn add(&mut self, gt: &[GtWord], found: &[Spotted]) {
        let gold: Vec<String> = gt
            .iter()
            .filter(|g| !g.dont_care)
            .flat_map(|g| search_words(&g.text))
            .collect();
        let spotted: Vec<String> = found.iter().flat_map(|f| search_words(&f.text)).collect();
        self.gt_words += gold.len();
        self.gt_words_found += count_in(&gold, &spotted);
        self.spotted_words += spotted.len();
        self.spotted_words_right += count_in(&spotted, &gold);
    }

    /// Share of the ground-truth words found (micro-averaged; 0 without any).
    pub fn recall(&self) -> f64 {
        ratio(self.gt_words_found, self.gt_words)
    }

    /// Share of the spotted words that are right (micro-averaged; 0 without any).
    pub fn precision(&self) -> f64 {
        ratio(self.spotted_words_right, self.spotted_words)
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    part as f64 / whole.max(1) as f64
}

/// How many of `words` (each occurrence) are in `among` (as a set).
fn count_in(words: &[String], among: &[String]) -> usize {
    let set: HashSet<&str> = among.iter().map(String::as_str).collect();
    words.iter().filter(|w| set.contains(w.as_str())).count()
}

/// The words of `text` as the word figures compare them (`bench/rapidocr_icdar.py`'s
/// `words`): whitespace-separated tokens with their leading and trailing non-alphanumeric
/// characters stripped, lower-cased, kept when 2 characters or longer. Inner punctuation stays
/// (`p.m.` gives `p.m`). Whitespace is Python's `str.split()`'s; alphanumeric is Rust's, which
/// differs from Python's `str.isalnum` only on a few non-letters (combining vowel signs of
/// Indic scripts, circled letters), none of them in ICDAR 2015.
pub fn search_words(text: &str) -> Vec<String> {
    text.split(is_python_space)
        .map(|token| {
            token
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|word| word.chars().count() >= 2)
        .collect()
}

/// Python's `str.isspace`: Unicode whitespace plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: f32, y: f32, w: f32, h: f32) -> Vec<Point> {
        vec![[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
    }

    fn gt(x: f32, text: &str) -> GtWord {
        GtWord {
            polygon: rect(x, 0.0, 10.0, 5.0),
            text: text.into(),
            dont_care: text == "###",
        }
    }

    fn found(x: f32, text: &str) -> Spotted {
        Spotted {
            polygon: rect(x, 0.0, 10.0, 5.0),
            text: text.into(),
        }
    }

    #[test]
    fn counts_follow_the_protocol() {
        let mut counts = SceneCounts::default();
        counts.add(
            &[gt(0.0, "EXIT"), gt(20.0, "Open"), gt(40.0, "###")],
            &[
                found(1.0, "exit"),  // matches EXIT, same text
                found(21.0, "0pen"), // matches Open, wrong text
                found(40.0, "xx"),   // inside don't care: set aside
                found(80.0, "far"),  // false positive
            ],
        );
        assert_eq!(
            counts,
            SceneCounts {
                gold: 2,
                predicted: 3,
                detected: 2,
                spotted: 1,
            }
        );
        let detection = counts.detection();
        assert!((detection.precision - 2.0 / 3.0).abs() < 1e-9);
        assert!((detection.recall - 1.0).abs() < 1e-9);
        assert!((detection.hmean - 0.8).abs() < 1e-9);
        assert!((counts.end_to_end().recall - 0.5).abs() < 1e-9);
    }

    #[test]
    fn one_detection_matches_one_word() {
        let mut counts = SceneCounts::default();
        counts.add(&[gt(0.0, "a"), gt(1.0, "b")], &[found(0.5, "a")]);
        assert_eq!(counts.detected, 1);
    }

    #[test]
    fn accuracy_ignores_case() {
        let pairs = vec![
            ("Exit".to_string(), "EXIT".to_string()),
            ("a".into(), "b".into()),
        ];
        assert_eq!(recognition_accuracy(&pairs), 0.5);
    }

    #[test]
    fn search_words_strip_outer_punctuation_and_case() {
        assert_eq!(
            search_words("  \"OPEN,\" 24h p.m. (Cafe)\u{1c}xy --- A"),
            vec!["open", "24h", "p.m", "cafe", "xy"]
        );
    }

    #[test]
    fn word_counts_follow_the_python_reference() {
        let mut counts = WordCounts::default();
        counts.add(
            &[
                gt(0.0, "EXIT,"),
                gt(20.0, "Exit"), // repeated: counts twice, found twice
                gt(40.0, "###"),  // don't care: no words
                gt(60.0, "a"),    // one character: left out
                gt(80.0, "Open"), // not spotted
            ],
            &[
                found(500.0, "exit! exit"), // boxes play no part; both spotted words right
                found(0.0, "###"),          // no alphanumerics: no word
                found(20.0, "x closed"),    // "x" left out, "closed" wrong
            ],
        );
        assert_eq!(
            counts,
            WordCounts {
                gt_words: 3,
                gt_words_found: 2,
                spotted_words: 3,
                spotted_words_right: 2,
            }
        );
        assert!((counts.recall() - 2.0 / 3.0).abs() < 1e-12);
        assert!((counts.precision() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn word_counts_add_up_over_scenes_and_survive_empty_ones() {
        let mut counts = WordCounts::default();
        assert_eq!((counts.recall(), counts.precision()), (0.0, 0.0));
        counts.add(&[gt(0.0, "Genaxis Theatre")], &[found(0.0, "GENAXIS")]);
        counts.add(&[], &[found(0.0, "Theatre")]);
        assert_eq!((counts.gt_words_found, counts.gt_words), (1, 2));
        assert_eq!((counts.spotted_words_right, counts.spotted_words), (1, 2));
    }
}
