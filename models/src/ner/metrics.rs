//! Entity-level precision, recall and F1 as conlleval computes them: an entity counts only
//! with its exact span and type; micro-averaged over all types, and per type.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::tags::{Span, spans};

/// Precision, recall, F1 (fractions) and the counts behind them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted: usize,
    pub gold: usize,
    pub correct: usize,
}

impl Scores {
    /// The scores of `correct` matches among `predicted` items against `gold` ones.
    pub fn from_counts(correct: usize, predicted: usize, gold: usize) -> Self {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (precision, recall) = (ratio(correct, predicted), ratio(correct, gold));
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Self {
            precision,
            recall,
            f1,
            predicted,
            gold,
            correct,
        }
    }
}

/// Micro and per-type scores.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub micro: Scores,
    pub per_type: BTreeMap<String, Scores>,
}

/// Scores predicted against gold IOB2 tag sequences (one pair per sentence).
pub fn evaluate(gold: &[Vec<String>], predicted: &[Vec<String>]) -> Report {
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (g, p) in gold.iter().zip(predicted) {
        let gold_spans: HashSet<Span> = spans(g).into_iter().collect();
        let predicted_spans = spans(p);
        for span in &gold_spans {
            counts.entry(span.kind.clone()).or_default().2 += 1;
        }
        for span in &predicted_spans {
            let entry = counts.entry(span.kind.clone()).or_default();
            entry.1 += 1;
            if gold_spans.contains(span) {
                entry.0 += 1;
            }
        }
    }
    let (mut c, mut p, mut g) = (0, 0, 0);
    let per_type = counts
        .into_iter()
        .map(|(kind, (correct, predicted, gold))| {
            c += correct;
            p += predicted;
            g += gold;
            (kind, Scores::from_counts(correct, predicted, gold))
        })
        .collect();
    Report {
        micro: Scores::from_counts(c, p, g),
        per_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &str) -> Vec<String> {
        t.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn only_exact_span_and_type_count() {
        let gold = vec![tags("B-PER I-PER O B-LOC"), tags("B-ORG O")];
        let predicted = vec![tags("B-PER O O B-LOC"), tags("B-ORG O")];
        let report = evaluate(&gold, &predicted);
        // Gold: PER(0..2), LOC, ORG. Predicted: PER(0..1) wrong span, LOC, ORG right.
        assert_eq!(report.micro.correct, 2);
        assert_eq!(report.micro.predicted, 3);
        assert_eq!(report.micro.gold, 3);
        assert!((report.micro.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.per_type["PER"].correct, 0);
        assert_eq!(report.per_type["LOC"].f1, 1.0);
    }
}
