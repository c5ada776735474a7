//! Scene-text figures as the ICDAR 2015 protocol computes them: detection precision, recall
//! and H-mean at IoU > 0.5 (one-to-one, don't-care boxes and the detections that fall mostly
//! inside them set aside), end-to-end word spotting (a match also needs the same text, case
//! ignored), and recognition accuracy on word crops. Counts add up over all images.

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
}
