//! Vector search over `items`: building an IVF_PQ index on each embedding column once there
//! are enough rows, and k-nearest queries by cosine similarity.
//!
//! Below the row threshold Lance searches exactly (flat); with an index a query probes
//! [`NPROBES`] partitions and re-ranks [`REFINE`] x k candidates on the full vectors.

use arrow_array::{Array, Float32Array, RecordBatch, cast::AsArray};
use lance::dataset::Dataset;
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_linalg::distance::MetricType;
use vemo_schemas::{COL_CAPTION, COL_ID, COL_IMAGE, EmbeddingColumn};

use crate::lance_io::open_if_exists;
use crate::{Error, Result};

/// IVF partitions probed per query.
pub const NPROBES: usize = 32;
/// Candidates re-ranked on the full vectors, as a multiple of k.
pub const REFINE: u32 = 4;

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
    let Some(mut dataset) = open_if_exists(uri).await? else {
        return Ok(Vec::new());
    };
    let rows = dataset
        .count_rows(None)
        .await
        .map_err(|e| Error::lance(uri, e))?;
    let mut outcomes = Vec::new();
    for column in embedding_columns(&dataset) {
        let name = column.name();
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

/// The `k` rows of `dataset` whose `column` is nearest to `query` by cosine, best first.
pub async fn nearest(dataset: &Dataset, column: &str, query: &[f32], k: usize) -> Result<Vec<Hit>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    let mut scan = dataset.scan();
    scan.nearest(column, &Float32Array::from(query.to_vec()), k)
        .map_err(fail)?
        .distance_metric(MetricType::Cosine)
        .nprobes(NPROBES)
        .refine(REFINE)
        .disable_scoring_autoprojection();
    scan.project(&[COL_ID, COL_IMAGE, COL_CAPTION, DISTANCE])
        .map_err(fail)?;
    let batch: RecordBatch = scan.try_into_batch().await.map_err(fail)?;
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_string::<i32>().clone())
    };
    let (Some(ids), Some(images), Some(captions), Some(distances)) = (
        strings(COL_ID),
        strings(COL_IMAGE),
        strings(COL_CAPTION),
        batch.column_by_name(DISTANCE),
    ) else {
        return Err(Error::Bundle {
            path: uri.clone(),
            reason: "the search result lacks id, image, caption or _distance".into(),
        });
    };
    let distances = distances.as_primitive::<arrow_array::types::Float32Type>();
    let mut hits: Vec<Hit> = (0..batch.num_rows())
        .map(|i| Hit {
            id: ids.value(i).to_string(),
            score: 1.0 - distances.value(i),
            image: images.value(i).to_string(),
            caption: (!captions.is_null(i)).then(|| captions.value(i).to_string()),
        })
        .collect();
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
