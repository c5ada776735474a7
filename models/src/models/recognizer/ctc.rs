//! Greedy CTC decoding and easyocr's confidence score.
//!
//! Follows `recognizer_predict` and `CTCLabelConverter.decode_greedy` of easyocr 1.7.2
//! (`recognition.py`, `utils.py`): softmax over the classes, the most likely class per step,
//! repeats merged, blanks (class 0) dropped; the confidence is `custom_mean` of the winning
//! probabilities of the non-blank steps, `prod(p) ^ (2 / sqrt(n))`, or 0 when every step is
//! blank. English ignores no characters, so easyocr's renormalisation after zeroing ignored
//! classes is the identity and is left out.

/// Decodes one crop's logits, `steps x classes` in row-major order, where class `k > 0` is
/// `characters[k - 1]`. Returns the text and its confidence in [0, 1].
pub fn decode_greedy(logits: &[f32], classes: usize, characters: &[char]) -> (String, f32) {
    let mut text = String::new();
    let mut log_prob_sum = 0f64;
    let mut kept = 0usize;
    let mut previous = None;
    for row in logits.chunks_exact(classes) {
        let (best, best_logit) =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                });
        if best != 0 {
            let denominator: f32 = row.iter().map(|&v| (v - best_logit).exp()).sum();
            log_prob_sum += f64::from(1.0 / denominator).ln();
            kept += 1;
            if previous != Some(best)
                && let Some(&c) = characters.get(best - 1)
            {
                text.push(c);
            }
        }
        previous = Some(best);
    }
    let confidence = if kept == 0 {
        0.0
    } else {
        (log_prob_sum * 2.0 / (kept as f64).sqrt()).exp() as f32
    };
    (text, confidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_merge_and_blanks_split_them() {
        let chars = ['a', 'b'];
        // Steps: a, a, blank, a, b, b -> "aab".
        let mut logits = Vec::new();
        for class in [1, 1, 0, 1, 2, 2] {
            let mut row = [0f32; 3];
            row[class] = 10.0;
            logits.extend_from_slice(&row);
        }
        let (text, confidence) = decode_greedy(&logits, 3, &chars);
        assert_eq!(text, "aab");
        let p = 1.0 / (1.0 + 2.0 * (-10f64).exp());
        let want = p.powi(5).powf(2.0 / 5f64.sqrt());
        assert!((f64::from(confidence) - want).abs() < 1e-6);
    }

    #[test]
    fn all_blank_is_empty_with_zero_confidence() {
        let (text, confidence) = decode_greedy(&[5.0, 0.0, 0.0, 5.0, 1.0, 1.0], 3, &['a', 'b']);
        assert_eq!((text.as_str(), confidence), ("", 0.0));
    }
}
