//! Lance datasets: uncommitted fragment writes on workers, one commit per epoch, reads.
//!
//! Workers call [`write_fragments_uncommitted`]; the fragments travel (as
//! [`WrittenFragments`]) to the committer, which calls [`commit_fragments`] once per epoch: all fragments of the epoch
//! become one new dataset version, or none do. Fragments that were written but never
//! committed are invisible to readers (Lance's cleanup removes their files).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, RecordBatch, cast::AsArray};
use arrow_schema::SchemaRef;
use futures::TryStreamExt;
use lance::Dataset;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::transaction::{Operation, Transaction};
use lance::dataset::{CommitBuilder, InsertBuilder, WriteMode, WriteParams};
use lance::io::{ObjectStoreParams, WrappingObjectStore};
use lance::table::format::Fragment;

use crate::{Error, Result};

static STORE_WRAPPER: OnceLock<Arc<dyn WrappingObjectStore>> = OnceLock::new();

/// Routes every Lance read and write of this process through `wrapper` (the fault-injecting
/// store of the crash tests). Set once, before the first dataset is opened.
pub fn wrap_lance_stores(wrapper: Arc<dyn WrappingObjectStore>) {
    let _ = STORE_WRAPPER.set(wrapper);
}

/// The object-store parameters of vemo's Lance calls: `None` unless a wrapper is set.
pub fn store_params() -> Option<ObjectStoreParams> {
    STORE_WRAPPER.get().map(|wrapper| ObjectStoreParams {
        object_store_wrapper: Some(wrapper.clone()),
        ..Default::default()
    })
}

/// Writes `batches` as data files of the dataset at `uri` without committing them, and
/// returns the fragments to commit.
pub async fn write_fragments_uncommitted(
    uri: &str,
    batches: Vec<RecordBatch>,
) -> Result<Vec<Fragment>> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let params = WriteParams {
        mode: WriteMode::Append,
        store_params: store_params(),
        ..Default::default()
    };
    let transaction = InsertBuilder::new(uri)
        .with_params(&params)
        .execute_uncommitted(batches)
        .await
        .map_err(|e| Error::lance(uri, e))?;
    match transaction.operation {
        // Overwrite when the dataset did not exist yet at write time.
        Operation::Append { fragments } | Operation::Overwrite { fragments, .. } => Ok(fragments),
        other => Err(Error::lance(
            uri,
            lance::Error::internal(format!("unexpected write operation {other:?}")),
        )),
    }
}

/// Fragments written and not committed yet, in the one form they travel in: from a worker to
/// the committer (timely's exchange, a binary format between processes) and into the ledger
/// (JSON, in a Lance transaction property).
///
/// JSON holds them as Lance's own JSON of a fragment list. A binary format holds each as
/// Lance's protobuf `DataFragment` (what its manifests store): Lance's serde form leaves out
/// empty fields, which only a self-describing format can read back. A JSON string holding a
/// fragment list (how ledgers before this form stored them; empty: none) reads too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenFragments(Vec<Fragment>);

impl WrittenFragments {
    /// Wraps written fragments.
    pub fn new(fragments: Vec<Fragment>) -> Self {
        Self(fragments)
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fragments.
    pub fn fragments(&self) -> &[Fragment] {
        &self.0
    }

    /// The fragments of every one of `written`, in order (to commit them as one version).
    pub fn gather<'a>(written: impl Iterator<Item = &'a WrittenFragments>) -> Vec<Fragment> {
        written.flat_map(|w| w.0.iter().cloned()).collect()
    }
}

impl serde::Serialize for WrittenFragments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use lance_table::format::pb::DataFragment;
        use prost::Message;
        match serializer.is_human_readable() {
            true => self.0.serialize(serializer),
            false => {
                let encoded: Vec<Vec<u8>> = self
                    .0
                    .iter()
                    .map(|f| DataFragment::from(f).encode_to_vec())
                    .collect();
                encoded.serialize(serializer)
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for WrittenFragments {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use lance_table::format::pb::DataFragment;
        use prost::Message;
        use serde::de::Error as _;
        if deserializer.is_human_readable() {
            return deserializer.deserialize_any(StoredFragments).map(Self);
        }
        let encoded = Vec::<Vec<u8>>::deserialize(deserializer)?;
        let fragments = encoded
            .iter()
            .map(|bytes| {
                let message = DataFragment::decode(bytes.as_slice()).map_err(D::Error::custom)?;
                Fragment::try_from(message).map_err(D::Error::custom)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(fragments))
    }
}

/// Reads the JSON of [`WrittenFragments`]: a list of fragments, or a string holding one.
struct StoredFragments;

impl<'de> serde::de::Visitor<'de> for StoredFragments {
    type Value = Vec<Fragment>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of Lance fragments")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        serde::Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        match text.is_empty() {
            true => Ok(Vec::new()),
            false => serde_json::from_str(text).map_err(E::custom),
        }
    }
}

/// Commits `fragments` to the dataset at `uri` as one new version, creating the dataset with
/// `schema` if it does not exist. Returns the new version. An empty commit on an existing
/// dataset is skipped and returns its version.
pub async fn commit_fragments(
    uri: &str,
    schema: &SchemaRef,
    fragments: Vec<Fragment>,
) -> Result<u64> {
    let existing = open_if_exists(uri).await?;
    let (read_version, operation) = match &existing {
        Some(_) if fragments.is_empty() => {
            return Ok(existing.map(|d| d.version().version).unwrap_or_default());
        }
        Some(dataset) => (dataset.version().version, Operation::Append { fragments }),
        None => {
            let schema = lance::datatypes::Schema::try_from(schema.as_ref())
                .map_err(|e| Error::lance(uri, e))?;
            let operation = Operation::Overwrite {
                fragments,
                schema,
                config_upsert_values: None,
                initial_bases: None,
            };
            (0, operation)
        }
    };
    let transaction = Transaction::new(read_version, operation, None);
    let dataset = match existing {
        Some(dataset) => {
            CommitBuilder::new(Arc::new(dataset))
                .execute(transaction)
                .await
        }
        None => CommitBuilder::new(uri).execute(transaction).await,
    }
    .map_err(|e| Error::lance(uri, e))?;
    Ok(dataset.version().version)
}

/// Opens the dataset at `uri`, or `None` if there is none.
pub async fn open_if_exists(uri: &str) -> Result<Option<Dataset>> {
    let builder = DatasetBuilder::from_uri(uri);
    let builder = match store_params() {
        Some(params) => builder.with_store_params(params),
        None => builder,
    };
    match builder.load().await {
        Ok(dataset) => Ok(Some(dataset)),
        Err(lance::Error::DatasetNotFound { .. } | lance::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::lance(uri, e)),
    }
}

/// Rows of an opened dataset (0 for none), from its metadata.
pub async fn rows_of(dataset: Option<&Dataset>) -> Result<usize> {
    match dataset {
        Some(dataset) => dataset
            .count_rows(None)
            .await
            .map_err(|e| Error::lance(dataset.uri(), e)),
        None => Ok(0),
    }
}

/// The ids in the dataset at `uri` (empty if there is none): the items a rerun skips.
pub async fn read_ids(uri: &str, id_column: &str) -> Result<HashSet<String>> {
    let Some(dataset) = open_if_exists(uri).await? else {
        return Ok(HashSet::new());
    };
    let mut scanner = dataset.scan();
    scanner
        .project(&[id_column])
        .map_err(|e| Error::lance(uri, e))?;
    let mut stream = scanner
        .try_into_stream()
        .await
        .map_err(|e| Error::lance(uri, e))?;
    let mut ids = HashSet::new();
    while let Some(batch) = stream.try_next().await.map_err(|e| Error::lance(uri, e))? {
        let column = batch.column(0).as_string::<i32>();
        ids.extend(column.iter().flatten().map(str::to_string));
    }
    Ok(ids)
}

/// The string columns `columns` of the rows in the fragments of `dataset` at positions
/// `part`, `part + parts`, ...: one worker's share of a scan (deleted rows excluded; a null
/// reads as `None`).
pub async fn scan_share(
    dataset: &Dataset,
    columns: &[&str],
    part: usize,
    parts: usize,
) -> Result<Vec<Vec<Option<String>>>> {
    let uri = dataset.uri().to_string();
    let fail = |e| Error::lance(&uri, e);
    let fragments: Vec<Fragment> = dataset
        .fragments()
        .iter()
        .enumerate()
        .filter(|(i, _)| i % parts.max(1) == part)
        .map(|(_, f)| f.clone())
        .collect();
    let mut rows = Vec::new();
    if fragments.is_empty() {
        return Ok(rows);
    }
    let mut scanner = dataset.scan();
    scanner.with_fragments(fragments);
    scanner.project(columns).map_err(fail)?;
    let mut stream = scanner.try_into_stream().await.map_err(fail)?;
    while let Some(batch) = stream.try_next().await.map_err(fail)? {
        let strings: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| c.as_string::<i32>())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                strings
                    .iter()
                    .map(|c| c.is_valid(row).then(|| c.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

/// What `vemo inspect` prints of a dataset.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatasetSummary {
    /// Dataset URI.
    pub uri: String,
    /// Current version.
    pub version: u64,
    /// All versions, oldest first.
    pub versions: Vec<u64>,
    /// Row count of the current version.
    pub rows: usize,
    /// Columns and their Arrow types.
    pub columns: Vec<(String, String)>,
    /// Schema metadata (holds the vemo schema version).
    pub metadata: HashMap<String, String>,
}

/// Summarises the dataset at `uri`, or `None` if there is none.
pub async fn summarize(uri: &str) -> Result<Option<DatasetSummary>> {
    let Some(dataset) = open_if_exists(uri).await? else {
        return Ok(None);
    };
    let fail = |e| Error::lance(uri, e);
    let rows = dataset.count_rows(None).await.map_err(fail)?;
    let versions = dataset
        .versions()
        .await
        .map_err(fail)?
        .iter()
        .map(|v| v.version)
        .collect();
    let schema = arrow_schema::Schema::from(dataset.schema());
    Ok(Some(DatasetSummary {
        uri: uri.to_string(),
        version: dataset.version().version,
        versions,
        rows,
        columns: schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect(),
        metadata: schema.metadata().clone(),
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow_array::StringArray;
    use arrow_schema::{DataType, Field, Schema};

    /// A one-column (`id`) batch.
    pub(crate) fn batch(ids: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(ids.to_vec()))])
            .expect("batch")
    }

    /// Two writers' fragments, exchanged as [`WrittenFragments`], become one version; nothing
    /// is visible before the commit.
    #[tokio::test]
    async fn uncommitted_fragments_from_two_writers_commit_as_one_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = dir.path().join("t.lance").display().to_string();
        let a = write_fragments_uncommitted(&uri, vec![batch(&["a", "b"])])
            .await
            .expect("a");
        let b = write_fragments_uncommitted(&uri, vec![batch(&["c"])])
            .await
            .expect("b");
        assert!(open_if_exists(&uri).await.expect("open").is_none());
        let sent = [WrittenFragments::new(a), WrittenFragments::new(b)];
        // Between processes (timely's bincode) and into the ledger (JSON).
        let received: Vec<WrittenFragments> = sent
            .iter()
            .map(|w| {
                let bytes = bincode::serialize(w).expect("bincode");
                bincode::deserialize(&bytes).expect("from bincode")
            })
            .collect();
        assert_eq!(received, sent, "bincode round trip");
        let json = serde_json::to_string(&sent[0]).expect("json");
        assert!(json.starts_with('['), "a list, not a string: {json}");
        let back: WrittenFragments = serde_json::from_str(&json).expect("from json");
        assert_eq!(back, sent[0], "JSON round trip");
        let legacy = serde_json::to_string(&json).expect("a string holding the list");
        let old: WrittenFragments = serde_json::from_str(&legacy).expect("legacy");
        assert_eq!(old, sent[0], "a ledger's fragments as a JSON string");
        let none: WrittenFragments = serde_json::from_str("\"\"").expect("empty legacy");
        assert!(none.is_empty());
        let fragments = WrittenFragments::gather(received.iter());
        let v1 = commit_fragments(&uri, &batch(&[]).schema(), fragments)
            .await
            .expect("commit");
        let c = write_fragments_uncommitted(&uri, vec![batch(&["d"])])
            .await
            .expect("c");
        let v2 = commit_fragments(&uri, &batch(&[]).schema(), c)
            .await
            .expect("commit 2");
        assert_eq!((v1, v2), (1, 2));
        let ids = read_ids(&uri, "id").await.expect("ids");
        assert_eq!(ids.len(), 4);
        assert_eq!(
            summarize(&uri)
                .await
                .expect("summary")
                .expect("exists")
                .versions,
            vec![1, 2]
        );
    }
}
