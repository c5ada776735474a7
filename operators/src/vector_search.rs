//! Search over `items`: an IVF_PQ index on each embedding column once there are enough rows
//! and k-nearest queries by cosine similarity; a LABEL_LIST index on `entity_keys` and entity
//! lookups (exact key, then a case-insensitive substring of the entity text), alone or as a
//! filter on a k-nearest query.
//!
//! Below the row threshold Lance searches exactly (flat); with an index a query probes
//! [`NPROBES`] partitions and re-ranks [`REFINE`] x k candidates on the full vectors.

use std::collections::HashSet;

use arrow_array::{Array, Float32Array, RecordBatch, cast::AsArray};
use lance::dataset::Dataset;
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_linalg::distance::MetricType;
use vemo_schemas::{
    COL_BUNDLE, COL_CAPTION, COL_ENTITY_KEYS, COL_ID, COL_IMAGE, EmbeddingColumn, entity_key,
};

use crate::lance_io::open_if_exists;
use crate::{Error, Result};

/// IVF partitions probed per query.
pub const NPROBES: usize = 32;
/// Candidates re-ranked on the full vectors, as a multiple of k.
pub const REFINE: u32 = 4;

/// The bundle id (`name@version`) recorded in the dataset's first row; None when it is empty.
pub async fn recorded_bundle(dataset: &Dataset) -> Result<Option<String>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    let mut scan = dataset.scan();
    scan.project(&[COL_BUNDLE])
        .map_err(fail)?
        .limit(Some(1), None)
        .map_err(fail)?;
    let batch = scan.try_into_batch().await.map_err(fail)?;
    Ok(batch
        .column_by_name(COL_BUNDLE)
        .map(|c| c.as_string::<i32>())
        .filter(|c| !c.is_empty())
        .map(|c| c.value(0).to_string()))
}

/// The distance column a Lance nearest-neighbour scan adds.
const DISTANCE: &str = "_distance";

/// What happened to one column at index time.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexOutcome {
    /// An IVF_PQ index was built.
    Built {
        column: String,
        partitions: usize,
        sub_vectors: usize,
    },
    /// Too few rows: queries scan the column exactly.
    Flat { column: String, rows: usize },
}

/// The embedding columns of a dataset, read from their field metadata.
pub fn embedding_columns(dataset: &Dataset) -> Vec<EmbeddingColumn> {
    let schema: arrow_schema::Schema = dataset.schema().into();
    schema
        .fields()
        .iter()
        .filter_map(|f| EmbeddingColumn::from_field(f))
        .collect()
}

/// IVF partitions for `rows` rows: about sqrt(rows) / 2, at least 1.
fn partitions_for(rows: usize) -> usize {
    (((rows as f64).sqrt() / 2.0) as usize).clamp(1, 4096)
}

/// PQ sub-vectors for `dim` dimensions: 16 dimensions each where that divides evenly.
fn sub_vectors_for(dim: usize) -> usize {
    [16, 8, 4, 2]
        .into_iter()
        .find(|d| dim.is_multiple_of(*d))
        .map_or(1, |d| dim / d)
}

/// Builds (or rebuilds) a cosine IVF_PQ index on every embedding column of the dataset at
/// `uri` when it has at least `min_rows` rows.
pub async fn build_indexes(uri: &str, min_rows: usize) -> Result<Vec<IndexOutcome>> {
    build_indexes_except(uri, min_rows, &HashSet::new()).await
}

/// The names of the indexes of the dataset at `uri` (none when there is no dataset).
pub async fn index_names(uri: &str) -> Result<HashSet<String>> {
    let Some(dataset) = open_if_exists(uri).await? else {
        return Ok(HashSet::new());
    };
    let indexes = dataset
        .load_indices()
        .await
        .map_err(|e| Error::lance(uri, e))?;
    Ok(indexes.iter().map(|index| index.name.clone()).collect())
}

/// Brings every index of the dataset at `uri` up to date after rows were added and deleted:
/// new rows go into the existing index (IVF partitions and PQ codebooks as trained, Lance's
/// `optimize_indices` append mode) and deleted rows stay masked by their deletion files.
pub async fn update_indexes(uri: &str) -> Result<()> {
    let Some(mut dataset) = open_if_exists(uri).await? else {
        return Ok(());
    };
    dataset
        .optimize_indices(&lance_index::optimize::OptimizeOptions::append())
        .await
        .map_err(|e| Error::lance(uri, e))
}

/// [`build_indexes`], leaving alone the columns whose index is named in `existing`.
pub async fn build_indexes_except(
    uri: &str,
    min_rows: usize,
    existing: &HashSet<String>,
) -> Result<Vec<IndexOutcome>> {
    let Some(mut dataset) = open_if_exists(uri).await? else {
        return Ok(Vec::new());
    };
    let mut outcomes = Vec::new();
    for column in embedding_columns(&dataset) {
        let name = column.name();
        if existing.contains(&format!("{name}_ivf_pq")) {
            continue;
        }
        // Training sees the non-null vectors only (a caption column is null for an item
        // without a caption): count those.
        let rows = dataset
            .count_rows(Some(format!("{name} IS NOT NULL")))
            .await
            .map_err(|e| Error::lance(uri, e))?;
        // PQ trains 256 centroids per sub-vector: it needs at least that many rows.
        if rows < min_rows.max(256) {
            outcomes.push(IndexOutcome::Flat { column: name, rows });
            continue;
        }
        let (partitions, sub_vectors) = (partitions_for(rows), sub_vectors_for(column.dim));
        let params = VectorIndexParams::ivf_pq(partitions, 8, sub_vectors, MetricType::Cosine, 50);
        dataset
            .create_index(
                &[name.as_str()],
                IndexType::Vector,
                Some(format!("{name}_ivf_pq")),
                &params,
                true,
            )
            .await
            .map_err(|e| Error::lance(uri, e))?;
        outcomes.push(IndexOutcome::Built {
            column: name,
            partitions,
            sub_vectors,
        });
    }
    Ok(outcomes)
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    pub id: String,
    /// Cosine similarity to the query.
    pub score: f32,
    pub image: String,
    pub caption: Option<String>,
}

/// Builds (or rebuilds) the LABEL_LIST index on `entity_keys`, if the dataset has that column.
pub async fn build_entity_index(uri: &str) -> Result<bool> {
    let Some(mut dataset) = open_if_exists(uri).await? else {
        return Ok(false);
    };
    if dataset.schema().field(COL_ENTITY_KEYS).is_none() {
        return Ok(false);
    }
    let params = lance_index::scalar::ScalarIndexParams::for_builtin(
        lance_index::scalar::BuiltinIndexType::LabelList,
    );
    dataset
        .create_index(
            &[COL_ENTITY_KEYS],
            IndexType::LabelList,
            Some(format!("{COL_ENTITY_KEYS}_label_list")),
            &params,
            true,
        )
        .await
        .map_err(|e| Error::lance(uri, e))?;
    Ok(true)
}

/// Which items an entity query selects: a filter on `items` and how well they match.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityMatch {
    /// A Lance SQL filter selecting the matching rows.
    pub filter: String,
    /// 1 when the normalised key matched exactly, 0.5 for substring matches.
    pub score: f32,
}

/// The items whose entities match `text` (of type `label` when given): those with the exact
/// normalised key (through the LABEL_LIST index) if there are any, else those whose entity
/// text contains `text` case-insensitively. None when nothing matches.
pub async fn match_entity(
    dataset: &Dataset,
    text: &str,
    label: Option<&str>,
) -> Result<Option<EntityMatch>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    if dataset.schema().field(COL_ENTITY_KEYS).is_none() {
        return Err(Error::Bundle {
            path: uri.clone(),
            reason: "the index has no entities (index with tasks = [\"semantic\", \"entities\"])"
                .into(),
        });
    }
    let labels: Vec<&str> = match label {
        Some(label) => vec![label],
        None => vec!["PER", "ORG", "LOC", "MISC"],
    };
    let keys: Vec<String> = labels
        .iter()
        .map(|l| sql_string(&entity_key(l, text)))
        .collect();
    let exact = format!("array_has_any({COL_ENTITY_KEYS}, [{}])", keys.join(", "));
    if dataset
        .count_rows(Some(exact.clone()))
        .await
        .map_err(fail)?
        > 0
    {
        return Ok(Some(EntityMatch {
            filter: exact,
            score: 1.0,
        }));
    }
    // Partial matches: scan the entity keys for the text.
    let needle = text.to_lowercase();
    let mut scan = dataset.scan();
    scan.project(&[COL_ID, COL_ENTITY_KEYS]).map_err(fail)?;
    let batch = scan.try_into_batch().await.map_err(fail)?;
    let (Some(ids), Some(keys)) = (
        batch.column_by_name(COL_ID),
        batch.column_by_name(COL_ENTITY_KEYS),
    ) else {
        return Ok(None);
    };
    let (ids, keys) = (ids.as_string::<i32>(), keys.as_list::<i32>());
    let matches = |row: usize| {
        let values = keys.value(row);
        let values = values.as_string::<i32>();
        (0..values.len()).any(|i| {
            let (kind, name) = values.value(i).split_once(':').unwrap_or(("", ""));
            labels.contains(&kind) && name.contains(&needle)
        })
    };
    let matched: Vec<String> = (0..batch.num_rows())
        .filter(|&r| matches(r))
        .map(|r| sql_string(ids.value(r)))
        .collect();
    Ok((!matched.is_empty()).then(|| EntityMatch {
        filter: format!("{COL_ID} IN ({})", matched.join(", ")),
        score: 0.5,
    }))
}

/// Up to `k` items whose entities match `text` (see [`match_entity`]), scored 1 for exact and
/// 0.5 for partial matches.
pub async fn find_entity(
    dataset: &Dataset,
    text: &str,
    label: Option<&str>,
    k: usize,
) -> Result<Vec<Hit>> {
    let Some(found) = match_entity(dataset, text, label).await? else {
        return Ok(Vec::new());
    };
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    let mut scan = dataset.scan();
    scan.filter(&found.filter).map_err(fail)?;
    scan.project(&[COL_ID, COL_IMAGE, COL_CAPTION])
        .map_err(fail)?;
    scan.limit(Some(k as i64), None).map_err(fail)?;
    Ok(hits_of(&scan.try_into_batch().await.map_err(fail)?, |_| {
        found.score
    }))
}

/// `value` as a quoted SQL string literal.
fn sql_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn hits_of(batch: &RecordBatch, score: impl Fn(usize) -> f32) -> Vec<Hit> {
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_string::<i32>().clone())
    };
    let (Some(ids), Some(images), Some(captions)) =
        (strings(COL_ID), strings(COL_IMAGE), strings(COL_CAPTION))
    else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .map(|i| Hit {
            id: ids.value(i).to_string(),
            score: score(i),
            image: images.value(i).to_string(),
            caption: (!captions.is_null(i)).then(|| captions.value(i).to_string()),
        })
        .collect()
}

/// The `k` rows of `dataset` whose `column` is nearest to `query` by cosine, best first; only
/// rows that pass `filter` (a Lance SQL filter, applied before the search) when given.
pub async fn nearest(
    dataset: &Dataset,
    column: &str,
    query: &[f32],
    k: usize,
    filter: Option<&str>,
) -> Result<Vec<Hit>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    let mut scan = dataset.scan();
    if let Some(filter) = filter {
        scan.filter(filter).map_err(fail)?.prefilter(true);
    }
    scan.nearest(column, &Float32Array::from(query.to_vec()), k)
        .map_err(fail)?
        .distance_metric(MetricType::Cosine)
        .nprobes(NPROBES)
        .refine(REFINE)
        .disable_scoring_autoprojection();
    scan.project(&[COL_ID, COL_IMAGE, COL_CAPTION, DISTANCE])
        .map_err(fail)?;
    let batch: RecordBatch = scan.try_into_batch().await.map_err(fail)?;
    let Some(distances) = batch.column_by_name(DISTANCE) else {
        return Err(Error::Bundle {
            path: uri.clone(),
            reason: "the search result lacks _distance".into(),
        });
    };
    let distances = distances.as_primitive::<arrow_array::types::Float32Type>();
    let mut hits = hits_of(&batch, |i| 1.0 - distances.value(i));
    if hits.len() != batch.num_rows() {
        return Err(Error::Bundle {
            path: uri.clone(),
            reason: "the search result lacks id, image or caption".into(),
        });
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_shape_follows_rows_and_dimensions() {
        assert_eq!(partitions_for(300), 8);
        assert_eq!(partitions_for(1_000_000), 500);
        assert_eq!(sub_vectors_for(384), 24);
        assert_eq!(sub_vectors_for(1280), 80);
        assert_eq!(sub_vectors_for(10), 5);
    }
}
