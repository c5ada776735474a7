//! Conditional Lance commits ([`commit_at`]) and the transaction properties of each version
//! ([`version_properties`]), on which the pipeline's ledger is built.
//!
//! Lance rebases an `Append` over any append that landed after its read version, so two
//! writers that both checked version `V` and both found a shard missing would both commit it.
//! [`commit_at`] refuses that: its commit handler writes the new manifest only when it is
//! version `V + 1`, and writes it with the store's put-if-not-exists (object_store's
//! `PutMode::Create`: `O_EXCL` on a filesystem, `If-None-Match: *` on S3, generation 0 on GCS,
//! `If-None-Match` on Azure), so of two writers racing for `V + 1` exactly one wins. The other
//! gets [`Commit::Moved`], reads the new versions and decides again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_schema::SchemaRef;
use lance::Dataset;
use lance::dataset::CommitBuilder;
use lance::dataset::transaction::{Operation, Transaction};
use lance::io::ObjectStore;
use lance::table::format::{Fragment, IndexMetadata, Manifest};
use lance_table::format::Transaction as StoredTransaction;
use lance_table::io::commit::{
    CommitError, CommitHandler, ConditionalPutCommitHandler, ManifestLocation,
    ManifestNamingScheme, ManifestWriter,
};
use object_store::path::Path;

use crate::lance_io::{open_if_exists, store_params};
use crate::{Error, Result};

/// What [`commit_at`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The fragments are version `.0`.
    Landed(u64),
    /// Another writer committed after the read version: nothing was written; read again.
    Moved,
}

/// Rows a commit deletes, found against the version it reads: the fragments that gain a
/// deletion file and those deleted whole.
#[derive(Debug, Clone, Default)]
pub struct Deletions {
    pub updated: Vec<Fragment>,
    pub removed: Vec<u64>,
    pub rows: u64,
}

/// Finds the rows of `dataset` that match `predicate` (a Lance SQL filter) and writes their
/// deletion files, without committing: [`commit_replacing_at`] commits them.
pub async fn find_deletions(dataset: &Dataset, predicate: &str) -> Result<Deletions> {
    let uri = dataset.uri().to_string();
    let staged = lance::dataset::DeleteBuilder::new(Arc::new(dataset.clone()), predicate)
        .execute_uncommitted()
        .await
        .map_err(|e| Error::lance(&uri, e))?;
    match staged.transaction.operation {
        Operation::Delete {
            updated_fragments,
            deleted_fragment_ids,
            ..
        } => Ok(Deletions {
            updated: updated_fragments,
            removed: deleted_fragment_ids,
            rows: staged.num_deleted_rows,
        }),
        other => Err(Error::Io {
            path: uri,
            cause: std::io::Error::other(format!("a delete staged a {} operation", other.name())),
        }),
    }
}

/// Commits `fragments` (possibly none) with `properties` to the dataset at `uri` as version
/// `read_version + 1`, or not at all. `read_version` 0 creates the dataset with `schema`.
pub async fn commit_at(
    uri: &str,
    schema: &SchemaRef,
    read: Option<&Dataset>,
    fragments: Vec<Fragment>,
    properties: HashMap<String, String>,
) -> Result<Commit> {
    commit_replacing_at(
        uri,
        schema,
        read,
        fragments,
        Deletions::default(),
        properties,
    )
    .await
}

/// [`commit_at`] that also applies `deletions` (found against `read`) in the same version: the
/// rows of replaced and removed items go as their new rows land.
pub async fn commit_replacing_at(
    uri: &str,
    schema: &SchemaRef,
    read: Option<&Dataset>,
    fragments: Vec<Fragment>,
    deletions: Deletions,
    properties: HashMap<String, String>,
) -> Result<Commit> {
    let deletes = !deletions.updated.is_empty() || !deletions.removed.is_empty();
    let operation = match read {
        Some(_) if deletes => Operation::Update {
            removed_fragment_ids: deletions.removed,
            updated_fragments: deletions.updated,
            new_fragments: fragments,
            fields_modified: Vec::new(),
            compacted_sstables: Vec::new(),
            fields_for_preserving_frag_bitmap: Vec::new(),
            update_mode: None,
            inserted_rows_filter: None,
            updated_fragment_offsets: None,
        },
        Some(_) => Operation::Append { fragments },
        None => Operation::Overwrite {
            fragments,
            schema: lance::datatypes::Schema::try_from(schema.as_ref())
                .map_err(|e| Error::lance(uri, e))?,
            config_upsert_values: None,
            initial_bases: None,
        },
    };
    commit_operation_at(uri, read, operation, properties).await
}

/// Commits `operation` to the dataset at `uri` as version `read_version + 1` (`read` absent:
/// creates it), or not at all, with `properties` in its transaction.
pub async fn commit_operation_at(
    uri: &str,
    read: Option<&Dataset>,
    operation: Operation,
    properties: HashMap<String, String>,
) -> Result<Commit> {
    let read_version = read.map(|d| d.version().version).unwrap_or(0);
    let moved = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(AtVersion {
        version: read_version + 1,
        moved: moved.clone(),
    });
    let builder = match read {
        Some(dataset) => CommitBuilder::new(Arc::new(dataset.clone())),
        None => CommitBuilder::new(uri),
    };
    let builder = match store_params() {
        Some(params) => builder.with_store_params(params),
        None => builder,
    };
    // On the transaction itself: lance 14.0.2's `CommitBuilder::with_transaction_properties`
    // stores the map but never writes it.
    let mut transaction = Transaction::new(read_version, operation, None);
    transaction.transaction_properties = Some(Arc::new(properties));
    let result = builder
        .with_commit_handler(handler)
        .with_max_retries(0)
        .execute(transaction)
        .await;
    match result {
        Ok(dataset) => Ok(Commit::Landed(dataset.version().version)),
        Err(_) if moved.load(Ordering::SeqCst) => Ok(Commit::Moved),
        // Creating, and another writer created it first (Lance then fails before our handler).
        Err(_) if read.is_none() && open_if_exists(uri).await?.is_some() => Ok(Commit::Moved),
        Err(e) => Err(Error::lance(uri, e)),
    }
}

/// The transaction properties of versions `from..=to` of `dataset`, in order (versions without
/// a transaction file or properties give an empty map). Reads 16 versions at a time.
pub async fn version_properties(
    uri: &str,
    dataset: &Dataset,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, HashMap<String, String>)>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(from..=to)
        .map(|version| async move {
            let at = dataset
                .checkout_version(version)
                .await
                .map_err(|e| Error::lance(uri, e))?;
            let transaction = at
                .read_transaction()
                .await
                .map_err(|e| Error::lance(uri, e))?;
            let properties = transaction
                .and_then(|t| t.transaction_properties)
                .map(|p| p.as_ref().clone())
                .unwrap_or_default();
            Ok::<_, Error>((version, properties))
        })
        .buffered(16)
        .try_collect()
        .await
}

/// A commit handler that writes only manifest `version`, with put-if-not-exists.
#[derive(Debug)]
struct AtVersion {
    version: u64,
    moved: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl CommitHandler for AtVersion {
    fn is_version_not_found_definitive(&self) -> bool {
        true
    }

    fn propagate_commit_error_after_success(&self) -> bool {
        false
    }

    async fn commit(
        &self,
        manifest: &mut Manifest,
        indices: Option<Vec<IndexMetadata>>,
        base_path: &Path,
        object_store: &ObjectStore,
        manifest_writer: ManifestWriter,
        naming_scheme: ManifestNamingScheme,
        transaction: Option<StoredTransaction>,
    ) -> std::result::Result<ManifestLocation, CommitError> {
        if manifest.version != self.version {
            self.moved.store(true, Ordering::SeqCst);
            return Err(CommitError::OtherError(lance::Error::internal(format!(
                "version {} was committed by another writer",
                self.version
            ))));
        }
        let dataset = base_path.filename().unwrap_or_default();
        crate::crash::point("manifest-put", &format!("{dataset}@{}", self.version));
        let result = ConditionalPutCommitHandler
            .commit(
                manifest,
                indices,
                base_path,
                object_store,
                manifest_writer,
                naming_scheme,
                transaction,
            )
            .await;
        if matches!(result, Err(CommitError::CommitConflict)) {
            self.moved.store(true, Ordering::SeqCst);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lance_io::tests::batch;
    use crate::lance_io::write_fragments_uncommitted;

    fn props(shard: &str) -> HashMap<String, String> {
        HashMap::from([("vemo.test".to_string(), shard.to_string())])
    }

    /// Two writers that read the same version: the first lands, the second is told it moved
    /// and writes nothing; empty commits carry properties too.
    #[tokio::test]
    async fn only_one_of_two_writers_at_the_same_version_lands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = dir.path().join("t.lance").display().to_string();
        let schema = batch(&[]).schema();
        let a = write_fragments_uncommitted(&uri, vec![batch(&["a"])])
            .await
            .expect("a");
        let first = commit_at(&uri, &schema, None, a, props("s0")).await;
        assert_eq!(first.expect("create"), Commit::Landed(1));
        let v1 = open_if_exists(&uri).await.expect("open").expect("exists");
        let b = write_fragments_uncommitted(&uri, vec![batch(&["b"])])
            .await
            .expect("b");
        let c = write_fragments_uncommitted(&uri, vec![batch(&["c"])])
            .await
            .expect("c");
        let late = write_fragments_uncommitted(&uri, vec![batch(&["z"])])
            .await
            .expect("z");
        let second_creator = commit_at(&uri, &schema, None, late, props("s0")).await;
        assert_eq!(second_creator.expect("create again"), Commit::Moved);
        let won = commit_at(&uri, &schema, Some(&v1), b, props("s1")).await;
        assert_eq!(won.expect("b"), Commit::Landed(2));
        let lost = commit_at(&uri, &schema, Some(&v1), c, props("s1")).await;
        assert_eq!(lost.expect("c"), Commit::Moved);
        let v2 = open_if_exists(&uri).await.expect("open").expect("exists");
        assert_eq!(v2.count_rows(None).await.expect("count"), 2);
        let empty = commit_at(&uri, &schema, Some(&v2), Vec::new(), props("s2")).await;
        assert_eq!(empty.expect("empty"), Commit::Landed(3));
        let v3 = open_if_exists(&uri).await.expect("open").expect("exists");
        let seen = version_properties(&uri, &v3, 1, 3).await.expect("props");
        let shards: Vec<&str> = seen.iter().map(|(_, p)| p["vemo.test"].as_str()).collect();
        assert_eq!(shards, ["s0", "s1", "s2"]);
    }
}
