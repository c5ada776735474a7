//! The CoNLL-2003 BIO tag set (PER, ORG, LOC, MISC), conversion to IOB2, entity spans, and
//! BIO-constrained Viterbi decoding (an `I-X` only after `B-X` or `I-X`).

/// Entity types, in tag-index order.
pub const TYPES: [&str; 4] = ["PER", "ORG", "LOC", "MISC"];
/// Number of tags: `O`, then `B-T`, `I-T` for each type.
pub const NUM_TAGS: usize = 1 + 2 * TYPES.len();

/// Tag name of index `i`: 0 is `O`, 1 + 2t is `B-T`, 2 + 2t is `I-T`.
pub fn tag_name(i: usize) -> String {
    match i {
        0 => "O".into(),
        _ => {
            let t = TYPES[(i - 1) / 2];
            if (i - 1).is_multiple_of(2) {
                format!("B-{t}")
            } else {
                format!("I-{t}")
            }
        }
    }
}

/// Index of a tag name (`O` for an unknown one).
pub fn tag_index(tag: &str) -> usize {
    let Some((prefix, kind)) = tag.split_once('-') else {
        return 0;
    };
    match (prefix, TYPES.iter().position(|t| *t == kind)) {
        ("B", Some(t)) => 1 + 2 * t,
        ("I", Some(t)) => 2 + 2 * t,
        _ => 0,
    }
}

/// IOB1 or IOB2 tags as IOB2: an `I-X` that does not continue an `X` entity starts one.
pub fn to_iob2(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let fixed = match tag.split_once('-') {
            Some(("I", kind)) => {
                let continues = out.last().and_then(|p| p.split_once('-')).map(|(_, k)| k);
                if continues == Some(kind) {
                    tag.clone()
                } else {
                    format!("B-{kind}")
                }
            }
            _ => tag.clone(),
        };
        out.push(fixed);
    }
    out
}

/// An entity over word (or token) positions `start..end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// Entity spans of IOB2 tags, as conlleval counts them (a stray `I-X` starts an entity).
pub fn spans(tags: &[String]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut open: Option<Span> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, kind) = tag.split_once('-').unwrap_or(("O", ""));
        let continues = prefix == "I" && open.as_ref().is_some_and(|s| s.kind == kind);
        if continues {
            if let Some(span) = open.as_mut() {
                span.end = i + 1;
            }
            continue;
        }
        out.extend(open.take());
        if prefix == "B" || prefix == "I" {
            open = Some(Span {
                kind: kind.to_string(),
                start: i,
                end: i + 1,
            });
        }
    }
    out.extend(open);
    out
}

fn allowed(prev: Option<usize>, next: usize) -> bool {
    // I-T (even index >= 2) only after B-T or I-T of the same type.
    if next == 0 || next % 2 == 1 {
        return true;
    }
    let kind = (next - 2) / 2;
    prev.is_some_and(|p| p != 0 && (p - 1) / 2 == kind)
}

/// The best tag sequence under the BIO constraint for per-position log-probabilities
/// `scores[position][tag]`.
pub fn viterbi(scores: &[Vec<f32>]) -> Vec<usize> {
    let Some(first) = scores.first() else {
        return Vec::new();
    };
    let n = first.len();
    let mut best: Vec<f32> = (0..n)
        .map(|t| {
            if allowed(None, t) {
                first[t]
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(scores.len());
    for row in &scores[1..] {
        let mut next = vec![f32::NEG_INFINITY; n];
        let mut from = vec![0usize; n];
        for t in 0..n {
            for (p, &score) in best.iter().enumerate() {
                if allowed(Some(p), t) && score + row[t] > next[t] {
                    next[t] = score + row[t];
                    from[t] = p;
                }
            }
        }
        back.push(from);
        best = next;
    }
    let mut tag = (0..n)
        .max_by(|&a, &b| best[a].total_cmp(&best[b]))
        .unwrap_or(0);
    let mut path = vec![tag];
    for from in back.iter().rev() {
        tag = from[tag];
        path.push(tag);
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn tag_names_and_indices_round_trip() {
        for i in 0..NUM_TAGS {
            assert_eq!(tag_index(&tag_name(i)), i);
        }
        assert_eq!(tag_name(1), "B-PER");
        assert_eq!(tag_name(8), "I-MISC");
    }

    #[test]
    fn iob1_becomes_iob2_and_spans_follow_conlleval() {
        let iob1 = strings(&["I-ORG", "I-ORG", "O", "I-PER", "B-PER", "I-LOC"]);
        let iob2 = to_iob2(&iob1);
        assert_eq!(
            iob2,
            strings(&["B-ORG", "I-ORG", "O", "B-PER", "B-PER", "B-LOC"])
        );
        let got = spans(&iob2);
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].start, got[0].end), (0, 2));
        assert_eq!(got[3].kind, "LOC");
    }

    #[test]
    fn viterbi_never_starts_an_entity_with_i() {
        // Position 1 prefers I-LOC, which may not follow B-PER: the path must take B-LOC or I-PER.
        let mut a = vec![-5f32; NUM_TAGS];
        a[tag_index("B-PER")] = 0.0;
        let mut b = vec![-5f32; NUM_TAGS];
        b[tag_index("I-LOC")] = -0.1;
        b[tag_index("I-PER")] = -0.5;
        let path = viterbi(&[a, b]);
        assert_eq!(tag_name(path[0]), "B-PER");
        assert_eq!(tag_name(path[1]), "I-PER");
    }
}
