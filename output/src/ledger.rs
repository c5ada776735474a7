//! The ledger: which shards of a job are committed, kept in the Lance commits themselves.
//!
//! Every `items` commit carries, in its transaction properties (`vemo.ledger`), the shards whose
//! rows it adds: their keys, counts, owners, their `errors` fragments and staged Parquet parts.
//! A shard is committed exactly when a version of `items` names it; no other file has to agree.
//! Commits are conditional ([`commit_at`]): the committer reads the ledger up to version `V`,
//! drops the shards already there and commits the rest as version `V + 1` or not at all, so two
//! runs on one output never both commit a shard.
//!
//! The rest of a shard's output follows its `items` commit and is rolled forward by whoever
//! finds it missing (the same committer a moment later, or the next run after a crash):
//! - `errors` rows: committed to `errors` with the shard keys in `vemo.ledger.errors`, by the
//!   same conditional commit, so they land once;
//! - Parquet parts: renamed from `_vemo/staging/` into `parquet/`, after which a marker
//!   `_vemo/ledger/published/v{V}` records that version `V`'s parts are out.
//!
//! Reading the ledger means reading every version's transaction. At the end of a run with
//! nothing left to roll forward, the committer writes a snapshot of it,
//! `_vemo/ledger/snapshots/v{V}.json` (the shards of versions up to `V`, all finished), and a
//! later load reads only the versions after the newest snapshot. That also makes Lance's
//! `cleanup_old_versions` safe on `items`.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};
use vemo_operators::lance_commit::{
    Commit, Deletions, commit_at, commit_replacing_at, find_deletions, version_properties,
};
use vemo_operators::lance_io::{WrittenFragments, open_if_exists};
use vemo_operators::parquet_io::drop_ids;
use vemo_operators::store::Location;
use vemo_schemas::{
    COL_ID, PARQUET_EMBEDDINGS_DIR, PARQUET_ENTITIES_DIR, PARQUET_ERRORS_DIR, PARQUET_SPOTTED_DIR,
    errors_schema,
};

use crate::error::record_json;
use crate::layout::OutputLayout;
use crate::{Error, Result};

/// Transaction property of an `items` commit: a JSON [`LedgerEntry`].
pub const ITEMS_PROPERTY: &str = "vemo.ledger";
/// Transaction property of an `errors` commit: a JSON list of shard keys.
pub const ERRORS_PROPERTY: &str = "vemo.ledger.errors";
/// Conditional commits tried before a committer gives up (each retry follows a commit by
/// another writer, so this bounds contention, not time).
const ATTEMPTS: usize = 20;

/// One committed shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Content key of the shard: its position and a hash of its ids (see `plan`).
    pub key: String,
    pub items: usize,
    pub errors: usize,
    /// Worker (global index) and process that wrote it.
    pub worker: usize,
    pub process: usize,
    /// The shard's `errors` fragments, committed after its `items` commit.
    pub error_fragments: WrittenFragments,
    /// Staged Parquet parts: (staged path, published path), relative to the output root.
    pub parquet: Vec<(String, String)>,
    /// Ids whose earlier rows the shard's commits delete (incremental runs): from `items` in
    /// its `items` commit, from `errors` in its `errors` commit, and from the Parquet parts
    /// of earlier versions when they are pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

/// What one `items` commit records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub job_id: String,
    pub shards: Vec<ShardRecord>,
    /// `items` rows the commit deleted (earlier rows of replaced ids).
    #[serde(default)]
    pub deleted: u64,
}

/// A snapshot of a finished ledger: every shard of `items` versions up to `items_version`, whose
/// `errors` rows (up to `errors_version`) and Parquet parts are all out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Snapshot {
    items_version: u64,
    errors_version: u64,
    /// (key, items version, items, errors, worker, process).
    shards: Vec<(String, u64, usize, usize, usize, usize)>,
    jobs: BTreeMap<String, usize>,
}

/// The ledger as read from an output, with what was read so far.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub items_uri: String,
    errors_uri: String,
    /// The `items` version of the snapshot the ledger started from (0: none).
    snapshot_version: u64,
    items_read: u64,
    errors_read: u64,
    /// Committed shards by key, with the `items` version that holds each.
    pub shards: BTreeMap<String, (u64, ShardRecord)>,
    /// Shard keys whose `errors` rows are committed.
    pub errors_done: HashSet<String>,
    /// Jobs that committed, with their commit counts.
    pub jobs: BTreeMap<String, usize>,
    /// `items` versions whose Parquet parts are published (read from the markers once).
    published: Option<HashSet<u64>>,
    /// `items` versions whose replaced ids are pruned from the older Parquet parts.
    pruned: Option<HashSet<u64>>,
}

/// A shard ready to commit: its record and its `items` fragments.
#[derive(Debug, Clone)]
pub struct ReadyShard {
    pub record: ShardRecord,
    pub item_fragments: WrittenFragments,
}

/// What [`Ledger::commit_shards`] did.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The new `items` version, if one was written.
    pub version: Option<u64>,
    /// Keys committed by this call.
    pub landed: Vec<String>,
    /// Keys another writer had already committed (their fragments stay unreferenced).
    pub already: Vec<String>,
    /// Rows the commit deleted (earlier rows of the ids its shards replace).
    pub deleted: u64,
}

impl Ledger {
    /// Reads the ledger of `output`: its newest usable snapshot, then the versions after it.
    pub async fn load(output: &Location) -> Result<Self> {
        let mut ledger = Ledger {
            items_uri: OutputLayout::of(output).items_uri(),
            errors_uri: OutputLayout::of(output).errors_uri(),
            ..Default::default()
        };
        let items = open_if_exists(&ledger.items_uri).await?;
        let current = items.as_ref().map(|d| d.version().version).unwrap_or(0);
        if let Some(snapshot) = read_snapshot(output, current).await? {
            ledger.start_from(snapshot);
        }
        if let Some(items) = &items {
            ledger.read_items(items).await?;
        }
        if let Some(errors) = open_if_exists(&ledger.errors_uri).await? {
            ledger.read_errors(&errors).await?;
        }
        Ok(ledger)
    }

    fn start_from(&mut self, snapshot: Snapshot) {
        self.snapshot_version = snapshot.items_version;
        self.items_read = snapshot.items_version;
        self.errors_read = snapshot.errors_version;
        self.jobs = snapshot.jobs;
        for (key, version, items, errors, worker, process) in snapshot.shards {
            let record = ShardRecord {
                key: key.clone(),
                items,
                errors,
                worker,
                process,
                ..Default::default()
            };
            self.shards.insert(key, (version, record));
        }
    }

    /// Finishes what a crashed run left between its `items` commit and the rest: `errors` rows
    /// and Parquet parts of committed shards, column additions, replaced Parquet rows.
    pub async fn roll_forward(&mut self, output: &Location) -> Result<()> {
        if let Some(version) = self.commit_errors().await? {
            tracing::warn!(
                version,
                "Rolled forward the errors rows of an interrupted commit."
            );
        }
        let moved = self.publish_parquet(output).await?;
        if moved > 0 {
            tracing::warn!(
                moved,
                "Rolled forward the Parquet parts of an interrupted commit."
            );
        }
        let columns = crate::pending::roll_forward(output).await?;
        if columns > 0 {
            tracing::warn!(
                columns,
                "Finished the column additions of an interrupted run."
            );
        }
        let pruned = self.prune_parquet(output).await?;
        if pruned > 0 {
            tracing::warn!(
                pruned,
                "Pruned the replaced Parquet rows of an interrupted run."
            );
        }
        Ok(())
    }

    /// Writes a snapshot of the ledger, if nothing is left to roll forward.
    pub async fn write_snapshot(&self, output: &Location) -> Result<bool> {
        let (published, pruned) = (self.published.as_ref(), self.pruned.as_ref());
        let finished = self.shards.values().all(|(version, shard)| {
            let old = *version <= self.snapshot_version;
            !self.needs_errors_commit(shard)
                && (old || published.is_some_and(|p| p.contains(version)))
                && (old || shard.replaces.is_empty() || pruned.is_some_and(|p| p.contains(version)))
        });
        if !finished || self.items_read <= self.snapshot_version {
            return Ok(false);
        }
        let snapshot = Snapshot {
            items_version: self.items_read,
            errors_version: self.errors_read,
            shards: self
                .shards
                .iter()
                .map(|(key, (v, s))| (key.clone(), *v, s.items, s.errors, s.worker, s.process))
                .collect(),
            jobs: self.jobs.clone(),
        };
        let at = OutputLayout::of(output).snapshot(self.items_read)?;
        let text = record_json(&at.uri, &snapshot, false)?;
        at.write(text.into_bytes()).await?;
        Ok(true)
    }

    /// True when the shard's `errors` commit (its rows, its deletions) is still to do.
    fn needs_errors_commit(&self, shard: &ShardRecord) -> bool {
        (!shard.error_fragments.is_empty() || !shard.replaces.is_empty())
            && !self.errors_done.contains(&shard.key)
    }

    /// True when the shard `key` is committed.
    pub fn is_committed(&self, key: &str) -> bool {
        self.shards.contains_key(key)
    }

    async fn read_items(&mut self, dataset: &lance::Dataset) -> Result<()> {
        let uri = self.items_uri.clone();
        for (version, text) in
            new_entries(&uri, dataset, &mut self.items_read, ITEMS_PROPERTY).await?
        {
            let entry = parse_entry(&uri, version, &text)?;
            *self.jobs.entry(entry.job_id.clone()).or_default() += 1;
            for shard in entry.shards {
                // The first version that names a shard holds its rows.
                self.shards
                    .entry(shard.key.clone())
                    .or_insert((version, shard));
            }
        }
        Ok(())
    }

    async fn read_errors(&mut self, dataset: &lance::Dataset) -> Result<()> {
        let uri = self.errors_uri.clone();
        for (version, text) in
            new_entries(&uri, dataset, &mut self.errors_read, ERRORS_PROPERTY).await?
        {
            let keys: Vec<String> = serde_json::from_str(&text).map_err(|e| {
                corrupt_version(&uri, version, ERRORS_PROPERTY, "a list of shard keys", e)
            })?;
            self.errors_done.extend(keys);
        }
        Ok(())
    }

    /// Commits the `items` rows of `shards` that no version names yet, in one conditional
    /// commit; retries on the versions other writers add meanwhile.
    pub async fn commit_shards(
        &mut self,
        job_id: &str,
        schema: &SchemaRef,
        shards: Vec<ReadyShard>,
    ) -> Result<Committed> {
        let mut done = Committed::default();
        for _ in 0..ATTEMPTS {
            let current = open_if_exists(&self.items_uri).await?;
            if let Some(items) = &current {
                self.read_items(items).await?;
            }
            let (fresh, already): (Vec<_>, Vec<_>) = shards
                .iter()
                .partition(|s| !self.is_committed(&s.record.key));
            done.already = already.iter().map(|s| s.record.key.clone()).collect();
            if fresh.is_empty() {
                return Ok(done);
            }
            let fragments = WrittenFragments::gather(fresh.iter().map(|s| &s.item_fragments));
            let replaces = fresh.iter().flat_map(|s| &s.record.replaces);
            let deletions = deletions_in(current.as_ref(), replaces).await?;
            let deleted = deletions.rows;
            let entry = LedgerEntry {
                job_id: job_id.to_string(),
                shards: fresh.iter().map(|s| s.record.clone()).collect(),
                deleted,
            };
            let value = record_json(&self.items_uri, &entry, false)?;
            let read = (self.items_uri.as_str(), schema, current.as_ref());
            match commit_recorded(read, fragments, deletions, ITEMS_PROPERTY, value).await? {
                Commit::Landed(version) => {
                    *self.jobs.entry(job_id.to_string()).or_default() += 1;
                    for shard in entry.shards {
                        done.landed.push(shard.key.clone());
                        self.shards.insert(shard.key.clone(), (version, shard));
                    }
                    // Versions in between were read above; this one is ours.
                    self.items_read = version;
                    done.version = Some(version);
                    done.deleted = deleted;
                    return Ok(done);
                }
                Commit::Moved => {
                    tracing::debug!("items moved on while committing; reading the ledger again")
                }
            }
        }
        Err(contention(&self.items_uri))
    }

    /// Commits the `errors` rows (and deletions) of every committed shard whose `errors`
    /// commit is missing (this run's, or a crashed run's), one `items` version at a time, oldest
    /// first, so that a later shard's deletions apply after an earlier shard's rows. Returns
    /// the newest `errors` version written, if any.
    pub async fn commit_errors(&mut self) -> Result<Option<u64>> {
        let mut newest = None;
        'versions: loop {
            for _ in 0..ATTEMPTS {
                let current = open_if_exists(&self.errors_uri).await?;
                if let Some(errors) = &current {
                    self.read_errors(errors).await?;
                }
                let oldest = self
                    .shards
                    .values()
                    .filter(|(_, s)| self.needs_errors_commit(s))
                    .map(|(version, _)| *version)
                    .min();
                let Some(oldest) = oldest else {
                    return Ok(newest);
                };
                let missing: Vec<&ShardRecord> = self
                    .shards
                    .values()
                    .filter(|(version, s)| *version == oldest && self.needs_errors_commit(s))
                    .map(|(_, s)| s)
                    .collect();
                let fragments =
                    WrittenFragments::gather(missing.iter().map(|s| &s.error_fragments));
                let replaces = missing.iter().flat_map(|s| &s.replaces);
                let deletions = deletions_in(current.as_ref(), replaces).await?;
                let keys: Vec<String> = missing.iter().map(|s| s.key.clone()).collect();
                let value = record_json(&self.errors_uri, &keys, false)?;
                let schema = errors_schema();
                let read = (self.errors_uri.as_str(), &schema, current.as_ref());
                match commit_recorded(read, fragments, deletions, ERRORS_PROPERTY, value).await? {
                    Commit::Landed(version) => {
                        self.errors_done.extend(keys);
                        self.errors_read = version;
                        newest = Some(version);
                        continue 'versions;
                    }
                    Commit::Moved => tracing::debug!(
                        "errors moved on while committing; reading the ledger again"
                    ),
                }
            }
            return Err(contention(&self.errors_uri));
        }
    }

    /// Drops the rows of replaced ids from the Parquet parts of earlier versions: for each
    /// `items` version `V` whose shards replace ids and that has no `pruned` marker yet, every
    /// part published before `V` loses the rows of those ids (the parts of `V` and later hold
    /// their new rows). Runs after [`Ledger::publish_parquet`]; returns the rows dropped.
    /// Reads every part's ids, so it runs once per run, not per epoch. A part is rewritten
    /// without a precondition: two runs pruning one output at once can undo each other's drops.
    pub async fn prune_parquet(&mut self, output: &Location) -> Result<usize> {
        let markers = OutputLayout::of(output).pruned_markers()?;
        if self.pruned.is_none() {
            self.pruned = Some(marked_versions(&markers).await?);
        }
        if self.unpruned().is_empty() {
            return Ok(0);
        }
        // List the parts, then read the ledger up to now: a listed part was published after
        // its version's commit, so its shard is in the ledger (or older than its snapshot),
        // even when another run committed it meanwhile.
        let dirs = [
            PARQUET_EMBEDDINGS_DIR,
            PARQUET_ENTITIES_DIR,
            PARQUET_SPOTTED_DIR,
            PARQUET_ERRORS_DIR,
        ];
        let mut listed = Vec::new();
        for dir in dirs {
            let folder = output.child(dir)?;
            for name in folder.list_names().await? {
                listed.push((format!("{dir}/{name}"), folder.child(&name)?));
            }
        }
        if let Some(items) = open_if_exists(&self.items_uri).await? {
            self.read_items(&items).await?;
        }
        let replaced = self.unpruned();
        let part_version: HashMap<&str, u64> = self
            .shards
            .values()
            .flat_map(|(version, shard)| shard.parquet.iter().map(|(_, p)| (p.as_str(), *version)))
            .collect();
        let mut dropped = 0;
        for (part, location) in &listed {
            // Parts the ledger no longer lists are older than every unpruned version.
            let written = part_version.get(part.as_str()).copied().unwrap_or(0);
            let ids: HashSet<String> = replaced
                .range(written + 1..)
                .flat_map(|(_, ids)| ids.iter().cloned())
                .collect();
            if !ids.is_empty() {
                dropped += drop_ids(location, &ids).await?;
            }
        }
        let pruned = self.pruned.get_or_insert_with(HashSet::new);
        for version in replaced.into_keys() {
            markers
                .child(&format!("v{version}"))?
                .write(Vec::new())
                .await?;
            pruned.insert(version);
        }
        Ok(dropped)
    }

    /// The ids replaced by each `items` version after the snapshot that is not pruned yet.
    fn unpruned(&self) -> BTreeMap<u64, HashSet<String>> {
        let mut replaced: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
        for (version, shard) in self.shards.values() {
            let done = self.pruned.as_ref().is_some_and(|p| p.contains(version));
            if *version > self.snapshot_version && !done && !shard.replaces.is_empty() {
                replaced
                    .entry(*version)
                    .or_default()
                    .extend(shard.replaces.iter().cloned());
            }
        }
        replaced
    }

    /// Publishes the staged Parquet parts of every `items` version that has no `published`
    /// marker yet. A part already moved (by another committer) counts as published.
    pub async fn publish_parquet(&mut self, output: &Location) -> Result<usize> {
        let markers = OutputLayout::of(output).published_markers()?;
        if self.published.is_none() {
            self.published = Some(marked_versions(&markers).await?);
        }
        let published = self.published.get_or_insert_with(HashSet::new);
        let mut by_version: BTreeMap<u64, Vec<&ShardRecord>> = BTreeMap::new();
        for (version, shard) in self.shards.values() {
            if *version > self.snapshot_version && !published.contains(version) {
                by_version.entry(*version).or_default().push(shard);
            }
        }
        let mut moved = 0;
        for (version, shards) in by_version {
            let parts: Vec<(String, String)> =
                shards.iter().flat_map(|s| s.parquet.clone()).collect();
            moved += publish_parts(output, &parts).await?;
            markers
                .child(&format!("v{version}"))?
                .write(Vec::new())
                .await?;
            published.insert(version);
        }
        Ok(moved)
    }

    /// The version of `items`, created empty (with `schema`) when no run committed any.
    pub async fn ensure_items(&self, schema: &SchemaRef) -> Result<u64> {
        ensure_exists(&self.items_uri, schema).await
    }

    /// The version of `errors`, created empty when no shard had an error.
    pub async fn ensure_errors(&self) -> Result<u64> {
        ensure_exists(&self.errors_uri, &errors_schema()).await
    }

    /// True when the committed shards are exactly the rows there are (`items_rows`,
    /// `errors_rows`) and all belong to `plan_keys`: then skipping committed shards skips every
    /// row, and no scan of the ids is needed. False after rows were deleted by hand, with rows
    /// of another shard size or manifest, or of a version of vemo before the ledger.
    pub fn covers(
        &self,
        plan_keys: &HashSet<String>,
        items_rows: usize,
        errors_rows: usize,
    ) -> bool {
        self.totals() == (items_rows, errors_rows)
            && self.shards.keys().all(|key| plan_keys.contains(key))
    }

    /// Items and errors rows the committed shards hold.
    pub fn totals(&self) -> (usize, usize) {
        self.shards
            .values()
            .fold((0, 0), |(i, e), (_, s)| (i + s.items, e + s.errors))
    }
}

/// The `property` values of the versions of `dataset` after `*read`, which moves to its version.
/// A version without the property is no ledger entry (the empty first version, an index build,
/// a commit made outside vemo) and is skipped; one with it must parse (see [`parse_entry`]).
async fn new_entries(
    uri: &str,
    dataset: &lance::Dataset,
    read: &mut u64,
    property: &str,
) -> Result<Vec<(u64, String)>> {
    let to = dataset.version().version;
    if to <= *read {
        return Ok(Vec::new());
    }
    let versions = version_properties(uri, dataset, *read + 1, to).await?;
    *read = to;
    Ok(versions
        .into_iter()
        .filter_map(|(version, mut properties)| Some((version, properties.remove(property)?)))
        .collect())
}

/// Moves staged Parquet parts (staged path, published path) to their place; a part moved
/// already (a crash after the rename, or another committer) counts as published. Returns the
/// parts moved.
pub async fn publish_parts(output: &Location, parts: &[(String, String)]) -> Result<usize> {
    let mut moved = 0;
    for (staged, target) in parts {
        let (from, to) = (output.child(staged)?, output.child(target)?);
        match from.rename_to(&to).await {
            Ok(()) => moved += 1,
            Err(_) if to.exists().await? => {}
            // Neither there nor staged: deleted by hand. Say so; retrying cannot help.
            Err(e) if !from.exists().await? => {
                tracing::error!(part = %to.uri, error = %e, "Parquet part lost from staging.")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(moved)
}

/// The versions named by the markers (`v{N}`) in `markers`. Other names are not markers and
/// are ignored: that is safe, since a version without its marker only has its step (publish,
/// prune) done again, and both steps are idempotent.
async fn marked_versions(markers: &Location) -> Result<HashSet<u64>> {
    let names = markers.list_names().await?;
    Ok(names
        .iter()
        .filter_map(|name| name.strip_prefix('v')?.parse::<u64>().ok())
        .collect())
}

/// The conditional commit of `fragments` and `deletions` on the dataset `(uri, schema, read
/// version)`, with the ledger `property` set to `value` in its transaction.
async fn commit_recorded(
    (uri, schema, read): (&str, &SchemaRef, Option<&lance::Dataset>),
    fragments: Vec<lance::table::format::Fragment>,
    deletions: Deletions,
    property: &str,
    value: String,
) -> Result<Commit> {
    let properties = HashMap::from([(property.to_string(), value)]);
    Ok(commit_replacing_at(uri, schema, read, fragments, deletions, properties).await?)
}

/// The deletions of the rows of `ids` in `dataset` (none when there is no dataset or no id).
async fn deletions_in<'a>(
    dataset: Option<&lance::Dataset>,
    ids: impl Iterator<Item = &'a String>,
) -> Result<Deletions> {
    let ids: Vec<String> = ids
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect();
    match dataset {
        Some(dataset) if !ids.is_empty() => {
            let predicate = format!("{COL_ID} IN ({})", ids.join(", "));
            Ok(find_deletions(dataset, &predicate).await?)
        }
        _ => Ok(Deletions::default()),
    }
}

/// The newest snapshot at or below `items_version` (a newer one belongs to a history that was
/// rolled back), if any.
async fn read_snapshot(output: &Location, items_version: u64) -> Result<Option<Snapshot>> {
    let dir = OutputLayout::of(output).snapshots()?;
    // Names other than `v{N}.json` are not snapshots (vemo writes no others there): skipping
    // them only means reading more versions. A snapshot that does not parse is an error.
    let newest = dir
        .list_names()
        .await?
        .into_iter()
        .filter_map(|name| {
            let version = name
                .strip_prefix('v')?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()?;
            Some((version, name))
        })
        .filter(|(version, _)| *version <= items_version)
        .max();
    let Some((_, name)) = newest else {
        return Ok(None);
    };
    let at = dir.child(&name)?;
    let snapshot = serde_json::from_slice(&at.read().await?).map_err(|e| {
        Error::corrupt(
            &at.uri,
            format!(
                "not a vemo ledger snapshot ({e}). Delete it: the ledger is then read from the \
                 previous snapshot or from the versions of `items` (if `cleanup_old_versions` \
                 removed versions that this snapshot covered, restore it from a backup or index \
                 into a new output instead)"
            ),
        )
    })?;
    Ok(Some(snapshot))
}

async fn ensure_exists(uri: &str, schema: &SchemaRef) -> Result<u64> {
    if let Some(dataset) = open_if_exists(uri).await? {
        return Ok(dataset.version().version);
    }
    match commit_at(uri, schema, None, Vec::new(), HashMap::new()).await? {
        Commit::Landed(version) => Ok(version),
        // Created by another writer meanwhile.
        Commit::Moved => Ok(open_if_exists(uri)
            .await?
            .map(|d| d.version().version)
            .unwrap_or(0)),
    }
}

/// The ledger entry of `items` version `version` at `uri`, from its `vemo.ledger` property.
pub fn parse_entry(uri: &str, version: u64, text: &str) -> Result<LedgerEntry> {
    serde_json::from_str(text)
        .map_err(|e| corrupt_version(uri, version, ITEMS_PROPERTY, "a vemo ledger entry", e))
}

/// The error for a ledger `property` of version `version` of the dataset at `uri` that is not
/// `expected`. The ledger cannot tell which shards that version holds, so going on could commit
/// them twice.
fn corrupt_version(
    uri: &str,
    version: u64,
    property: &str,
    expected: &str,
    error: serde_json::Error,
) -> Error {
    Error::corrupt(
        uri,
        format!(
            "version {version}: the `{property}` transaction property is not {expected} \
             ({error}). If another release of vemo committed it, use that release; otherwise \
             index into a new output or restore this one from a backup: without the entry the \
             ledger cannot tell which shards the version holds"
        ),
    )
}

fn contention(uri: &str) -> Error {
    Error::Contention {
        uri: uri.to_string(),
        attempts: ATTEMPTS,
    }
}

#[cfg(test)]
mod tests {
    use vemo_operators::store;
    use vemo_schemas::ITEMS_DATASET;

    use super::*;

    fn output() -> (tempfile::TempDir, Location) {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = store::resolve(&dir.path().display().to_string()).expect("output");
        (dir, output)
    }

    fn expect_corrupt(result: Result<Ledger>, names: &str) -> String {
        match result {
            Err(e @ Error::Corrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains(names), "{message} names no {names}");
                assert!(
                    !e.is_user_error(),
                    "a corrupt record is a job failure (exit 1)"
                );
                message
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unparseable_ledger_entry_is_corrupt_not_skipped() {
        let (_dir, output) = output();
        let items_uri = store::join(&output.uri, ITEMS_DATASET);
        let garbage = HashMap::from([(ITEMS_PROPERTY.to_string(), "\u{1}garbage{".to_string())]);
        let schema = errors_schema();
        let landed = commit_at(&items_uri, &schema, None, Vec::new(), garbage)
            .await
            .expect("commit");
        assert!(matches!(landed, Commit::Landed(1)), "{landed:?}");
        let message = expect_corrupt(Ledger::load(&output).await, &items_uri);
        assert!(message.contains("version 1"), "{message}");
        assert!(message.contains(ITEMS_PROPERTY), "{message}");
    }

    #[tokio::test]
    async fn an_unparseable_ledger_snapshot_is_corrupt_not_an_empty_ledger() {
        let (_dir, output) = output();
        let snapshot = output
            .child("_vemo/ledger/snapshots/v000000000000.json")
            .expect("child");
        snapshot
            .write(b"\x00\xffnot json".to_vec())
            .await
            .expect("write");
        let message = expect_corrupt(Ledger::load(&output).await, &snapshot.uri);
        assert!(message.contains("Delete it"), "{message}");
        assert!(snapshot.exists().await.expect("exists"), "left in place");
    }

    #[tokio::test]
    async fn a_written_snapshot_reads_back() {
        // The write side of the records above: a snapshot round-trips (no empty record).
        let (_dir, output) = output();
        let mut ledger = Ledger::load(&output).await.expect("empty ledger");
        ledger.items_read = 3;
        ledger.jobs.insert("job".into(), 1);
        assert!(ledger.write_snapshot(&output).await.expect("write"));
        let snapshot = read_snapshot(&output, 3).await.expect("read").expect("one");
        assert_eq!((snapshot.items_version, snapshot.jobs.len()), (3, 1));
    }
}
