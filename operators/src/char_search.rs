//! Character search over `items`: an INVERTED (full-text) index on `spotted_text`, fuzzy
//! full-text candidates (an edit distance per query word: 0 up to 2 letters, 1 up to 5, else
//! 2), re-ranked by [`match_words`]: more exact words first, then closer approximate ones.

use arrow_array::{Array, RecordBatch, cast::AsArray};
use lance::dataset::Dataset;
use lance::index::DatasetIndexExt;
use lance_index::IndexType;
use lance_index::scalar::inverted::query::{BooleanQuery, FtsQuery, MatchQuery, Occur};
use lance_index::scalar::{FullTextSearchQuery, InvertedIndexParams};
use serde::Serialize;
use vemo_schemas::{
    COL_CAPTION, COL_ID, COL_IMAGE, COL_POLYGON, COL_SPOTTED, COL_SPOTTED_TEXT, COL_TEXT,
};

use crate::lance_io::open_if_exists;
use crate::{Error, Result};
use vemo_models::spotting::text_match::{match_words, words};

/// Full-text candidates fetched per wanted result before re-ranking.
const CANDIDATES_PER_HIT: usize = 10;

/// A spotted word that matched the query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedWord {
    pub text: String,
    pub polygon: Vec<f32>,
}

/// An image found by its words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CharHit {
    pub id: String,
    /// Mean best similarity of the query words (1 = all found exactly).
    pub score: f32,
    /// Query words found exactly.
    pub exact: usize,
    pub image: String,
    pub caption: Option<String>,
    pub words: Vec<MatchedWord>,
}

/// Builds (or rebuilds) the INVERTED index on `spotted_text`, if the dataset has that column:
/// lower case, ASCII folding, no stemming or stop words (signs are not prose).
pub async fn build_text_index(uri: &str) -> Result<bool> {
    let Some(mut dataset) = open_if_exists(uri).await? else {
        return Ok(false);
    };
    if dataset.schema().field(COL_SPOTTED_TEXT).is_none() {
        return Ok(false);
    }
    let params = InvertedIndexParams::default()
        .lower_case(true)
        .ascii_folding(true)
        .stem(false)
        .remove_stop_words(false);
    dataset
        .create_index(
            &[COL_SPOTTED_TEXT],
            IndexType::Inverted,
            Some(format!("{COL_SPOTTED_TEXT}_inverted")),
            &params,
            true,
        )
        .await
        .map_err(|e| Error::lance(uri, e))?;
    Ok(true)
}

/// The `k` images whose spotted words best match `query`, best first.
pub async fn find_chars(dataset: &Dataset, query: &str, k: usize) -> Result<Vec<CharHit>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    if dataset.schema().field(COL_SPOTTED_TEXT).is_none() {
        return Err(Error::Bundle {
            path: uri.clone(),
            reason: "the index has no spotted text (index with the \"spotting\" task)".into(),
        });
    }
    let wanted = words(query);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // One fuzzy clause per word, each with its own edit distance (Lance's automatic
    // fuzziness found nothing in this version; explicit distances do).
    let clauses = wanted.iter().map(|word| {
        let clause = MatchQuery::new(word.clone())
            .with_column(Some(COL_SPOTTED_TEXT.to_string()))
            .with_fuzziness(Some(MatchQuery::auto_fuzziness(word)));
        (Occur::Should, FtsQuery::Match(clause))
    });
    let query = FtsQuery::Boolean(BooleanQuery::new(clauses));
    let mut scan = dataset.scan();
    scan.full_text_search(FullTextSearchQuery::new_query(query))
        .map_err(fail)?
        .disable_scoring_autoprojection();
    scan.project(&[COL_ID, COL_IMAGE, COL_CAPTION, COL_SPOTTED])
        .map_err(fail)?;
    scan.limit(Some((k * CANDIDATES_PER_HIT).max(k) as i64), None)
        .map_err(fail)?;
    let batch = scan.try_into_batch().await.map_err(fail)?;
    let mut hits = rank(&batch, &wanted);
    hits.truncate(k);
    Ok(hits)
}

/// The candidates of `batch` that match, best first.
fn rank(batch: &RecordBatch, wanted: &[String]) -> Vec<CharHit> {
    let strings = |name: &str| batch.column_by_name(name).map(|c| c.as_string::<i32>());
    let (Some(ids), Some(images), Some(captions), Some(spotted)) = (
        strings(COL_ID),
        strings(COL_IMAGE),
        strings(COL_CAPTION),
        batch
            .column_by_name(COL_SPOTTED)
            .map(|c| c.as_list::<i32>()),
    ) else {
        return Vec::new();
    };
    let mut hits = Vec::new();
    for row in 0..batch.num_rows() {
        let list = spotted.value(row);
        let list = list.as_struct();
        let (Some(texts), Some(polygons)) = (
            list.column_by_name(COL_TEXT).map(|c| c.as_string::<i32>()),
            list.column_by_name(COL_POLYGON).map(|c| c.as_list::<i32>()),
        ) else {
            continue;
        };
        let texts_of: Vec<&str> = (0..texts.len()).map(|i| texts.value(i)).collect();
        let Some(found) = match_words(wanted, &texts_of) else {
            continue;
        };
        let words = found
            .matched
            .iter()
            .map(|&i| MatchedWord {
                text: texts_of[i].to_string(),
                polygon: polygons
                    .value(i)
                    .as_primitive::<arrow_array::types::Float32Type>()
                    .values()
                    .to_vec(),
            })
            .collect();
        hits.push(CharHit {
            id: ids.value(row).to_string(),
            score: found.score,
            exact: found.exact,
            image: images.value(row).to_string(),
            caption: (!captions.is_null(row)).then(|| captions.value(row).to_string()),
            words,
        });
    }
    hits.sort_by(|a, b| {
        b.exact
            .cmp(&a.exact)
            .then(b.score.total_cmp(&a.score))
            .then(a.id.cmp(&b.id))
    });
    hits
}
