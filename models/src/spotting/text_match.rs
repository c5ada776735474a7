//! Matching a character query ("OPEN 24H") against the words spotted in an image: exact words
//! first, then approximate ones that tolerate recognizer errors (edit distance relative to the
//! word's length).

/// Least similarity (1 - edit distance / longer length) for an approximate word match: one
/// error in a four-letter word, two in an eight-letter one.
pub const MIN_SIMILARITY: f32 = 0.74;

/// A word as matching compares it: lower case, letters and digits only.
pub fn normalize(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The normalised, non-empty words of a text.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(normalize)
        .filter(|w| !w.is_empty())
        .collect()
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Similarity of two normalised words in [0, 1]: 1 when equal.
pub fn similarity(a: &str, b: &str) -> f32 {
    let longer = a.chars().count().max(b.chars().count());
    if longer == 0 {
        return 0.0;
    }
    1.0 - edit_distance(a, b) as f32 / longer as f32
}

/// How a query matched one image's spotted words.
#[derive(Debug, Clone, PartialEq)]
pub struct CharMatch {
    /// Query words found exactly.
    pub exact: usize,
    /// Mean over the query words of their best similarity (0 for a word not found).
    pub score: f32,
    /// Indices of the spotted words that matched, in query order.
    pub matched: Vec<usize>,
}

impl CharMatch {
    /// Orders matches best first: more exact words, then a higher score.
    pub fn rank_key(&self) -> (usize, f32) {
        (self.exact, self.score)
    }
}

/// Matches the normalised `query` words against an image's `spotted` texts (as recognised; a
/// text may be a line of several words); None when no query word is found, exactly or
/// approximately. `matched` holds indices into `spotted`, each once.
pub fn match_words(query: &[String], spotted: &[&str]) -> Option<CharMatch> {
    if query.is_empty() {
        return None;
    }
    let spotted_words: Vec<(usize, String)> = spotted
        .iter()
        .enumerate()
        .flat_map(|(i, text)| words(text).into_iter().map(move |w| (i, w)))
        .collect();
    let (mut exact, mut total, mut matched) = (0, 0.0f32, Vec::new());
    for q in query {
        let best = spotted_words
            .iter()
            .map(|(i, w)| (*i, similarity(q, w)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, s)) = best.filter(|(_, s)| *s >= MIN_SIMILARITY) {
            exact += usize::from(s >= 1.0);
            total += s;
            if !matched.contains(&i) {
                matched.push(i);
            }
        }
    }
    (!matched.is_empty()).then(|| CharMatch {
        exact,
        score: total / query.len() as f32,
        matched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_normalisation() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(normalize("Segmentation,"), "segmentation");
        assert_eq!(words("OPEN  24H!"), ["open", "24h"]);
    }

    #[test]
    fn exact_words_rank_above_approximate_ones() {
        let query = words("OPEN 24H");
        let exact = match_words(&query, &["Open", "24H", "shop"]).expect("exact");
        assert_eq!((exact.exact, exact.matched.clone()), (2, vec![0, 1]));
        let fuzzy = match_words(&query, &["0PEN", "24H"]).expect("fuzzy");
        assert_eq!(fuzzy.exact, 1);
        assert!(fuzzy.rank_key() < exact.rank_key());
        assert_eq!(match_words(&query, &["closed"]), None);
        assert_eq!(
            match_words(&words("segmentation"), &["segmentatlon"]).map(|m| m.exact),
            Some(0)
        );
    }
}
