//! Shard planning: which items this run processes, in which shard, owned by which worker.
//!
//! Every process plans the same way from the same manifest, so no plan needs to travel: shard
//! `i` is the `i`-th run of consecutive manifest items, belongs to worker `i % peers` and runs
//! in epoch `i / peers`. Shards hold `shard_size` items, or, when every manifest row gives its
//! image's size (a `bytes` or `size` column), about `shard_size` items' worth of bytes, so
//! that round-robin owners get equal work by size and not only by count. The shard's key (`i` and a hash of its ids) names it in the
//! ledger. What a rerun skips is decided per shard (its key is committed, or every id in it is
//! already in `items` or `errors`) and never changes who owns which shard, so processes that
//! read the output at slightly different moments still agree on the assignment.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use vemo_operators::webdataset::archive_of;
use vemo_schemas::ManifestEntry;

use crate::delta::{Change, DeltaItem};

/// A unit of work owned by one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    /// Position in the plan; fixes the owner and the epoch.
    pub id: u64,
    /// `{id:06}-{first 16 hex digits of SHA-256 over its ids}`: the ledger's name for it.
    pub key: String,
    /// The items of the shard still to do, in manifest order (empty: nothing to do).
    pub entries: Vec<ManifestEntry>,
    /// Ids whose earlier rows (in `items` and `errors`) the shard's commit deletes: in an
    /// incremental run, the ids of its entries and removed ids. Empty otherwise.
    pub replaces: Vec<String>,
}

/// The shards of one run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// All shards of the manifest, by id, done ones included (with no entries).
    pub shards: Vec<Shard>,
    /// Manifest items already in `items` or `errors`, not processed again.
    pub skipped: usize,
    /// Items in the manifest.
    pub manifest_items: usize,
}

/// Cuts the manifest into shards of `shard_size`. A shard whose key `is_committed` is done;
/// with `done_ids` (the ids in `items` and `errors`, when the ledger does not account for every
/// row) its ids that are missing all the same (rows deleted to retry them) make a *patch*
/// shard, keyed by the base key, a hash of the missing ids and a generation; ids in `done_ids`
/// are left out of the other shards too (committed under another shard size).
pub fn plan_shards(
    entries: Vec<ManifestEntry>,
    done_ids: Option<&HashSet<String>>,
    is_committed: &dyn Fn(&str) -> bool,
    shard_size: usize,
) -> Plan {
    let manifest_items = entries.len();
    let shards: Vec<Shard> = cut(&entries, shard_size.max(1))
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let base = shard_key(i as u64, chunk);
            let todo: Vec<ManifestEntry> = match done_ids {
                Some(done) => chunk
                    .iter()
                    .filter(|e| !done.contains(&e.id))
                    .cloned()
                    .collect(),
                None => chunk.to_vec(),
            };
            let (key, entries) = match is_committed(&base) {
                false => (base, todo),
                true if done_ids.is_none() || todo.is_empty() => (base, Vec::new()),
                true => {
                    // The first generation not committed: the same ids deleted again after a
                    // patch are retried again, and two runs at once agree on the key.
                    let prefix = format!("{base}+{}", &shard_key(i as u64, &todo)[7..]);
                    let patch = (0..)
                        .map(|n| format!("{prefix}#{n}"))
                        .find(|key| !is_committed(key))
                        .unwrap_or(prefix);
                    (patch, todo)
                }
            };
            Shard {
                id: i as u64,
                key,
                entries,
                replaces: Vec::new(),
            }
        })
        .collect();
    let todo: usize = shards.iter().map(|s| s.entries.len()).sum();
    Plan {
        shards,
        skipped: manifest_items - todo,
        manifest_items,
    }
}

/// The shards of one worker's delta (see [`crate::delta`]): its added, changed and retried
/// items in runs of `shard_size`, each replacing whatever rows its ids had; its removed ids
/// spread over those shards, or in shards of their own when it has nothing to encode. Shard
/// `n` of the worker has id `n * peers + worker`, so it runs in epoch `n`. A key is
/// `{prefix}-{hash}`, the hash over the shard's ids and fingerprints: two runs with the same
/// prefix that plan the same shard commit it once.
pub fn delta_shards(
    delta: &[DeltaItem],
    worker: usize,
    peers: usize,
    shard_size: usize,
    prefix: &str,
) -> Vec<Shard> {
    let size = shard_size.max(1);
    let work: Vec<&(u64, ManifestEntry)> = delta
        .iter()
        .filter(|d| d.change.encodes())
        .filter_map(|d| d.entry.as_ref())
        .collect();
    let removed: Vec<&str> = delta
        .iter()
        .filter(|d| d.change == Change::Removed)
        .map(|d| d.id.as_str())
        .collect();
    let work: Vec<&[&(u64, ManifestEntry)]> = work.chunks(size).collect();
    let per_shard = match work.len() {
        0 => size * 16,
        n => removed.len().div_ceil(n).max(1),
    };
    let removed: Vec<&[&str]> = removed.chunks(per_shard).collect();
    (0..work.len().max(removed.len()))
        .map(|n| {
            let items = work.get(n).copied().unwrap_or_default();
            let mut hash = Sha256::new();
            let mut replaces = Vec::new();
            for (fp, entry) in items {
                hash.update(entry.id.as_bytes());
                hash.update(fp.to_le_bytes());
                replaces.push(entry.id.clone());
            }
            for id in removed.get(n).copied().unwrap_or_default() {
                hash.update(id.as_bytes());
                hash.update([0u8]);
                replaces.push(id.to_string());
            }
            Shard {
                id: (n * peers + worker) as u64,
                key: format!("{prefix}-{}", &hex::encode(hash.finalize())[..16]),
                entries: items.iter().map(|(_, e)| e.clone()).collect(),
                replaces,
            }
        })
        .collect()
}

/// The ledger keys of the shards `entries` cut into (no patches).
pub fn shard_keys(entries: &[ManifestEntry], shard_size: usize) -> HashSet<String> {
    cut(entries, shard_size.max(1))
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| shard_key(i as u64, chunk))
        .collect()
}

/// Splits `entries` into consecutive runs of `size` items, or of `size` times the mean item
/// size in bytes when every entry has a size hint. Samples of different WebDataset tars never
/// share a shard (a tar is split by count, never joined to the next), so that a shard's
/// images are ranges of one object.
fn cut(entries: &[ManifestEntry], size: usize) -> Vec<&[ManifestEntry]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || archive_of(&entries[i].image) != archive_of(&entries[start].image)
        {
            chunks.extend(cut_run(&entries[start..i], size));
            start = i;
        }
    }
    chunks
}

/// [`cut`] within one run of entries.
fn cut_run(entries: &[ManifestEntry], size: usize) -> Vec<&[ManifestEntry]> {
    let sizes: Option<Vec<u64>> = entries.iter().map(size_hint).collect();
    let Some(sizes) = sizes.filter(|s| !s.is_empty()) else {
        return entries.chunks(size).collect();
    };
    let target = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64 * size as f64;
    let mut chunks = Vec::new();
    let (mut start, mut filled) = (0, 0u64);
    for (i, bytes) in sizes.iter().enumerate() {
        filled += bytes;
        if filled as f64 >= target || i + 1 - start >= 4 * size {
            chunks.push(&entries[start..=i]);
            (start, filled) = (i + 1, 0);
        }
    }
    if start < entries.len() {
        chunks.push(&entries[start..]);
    }
    chunks
}

/// The image size a manifest row gives in its extra columns (`bytes` or `size`), if any.
fn size_hint(entry: &ManifestEntry) -> Option<u64> {
    let metadata: serde_json::Value = serde_json::from_str(entry.metadata.as_deref()?).ok()?;
    ["bytes", "size"]
        .iter()
        .find_map(|key| metadata.get(key)?.as_u64())
}

/// The ledger key of shard `id` holding `chunk`.
pub fn shard_key(id: u64, chunk: &[ManifestEntry]) -> String {
    let mut hash = Sha256::new();
    for entry in chunk {
        hash.update(entry.id.as_bytes());
        hash.update([0u8]);
    }
    let digest = hex::encode(hash.finalize());
    format!("{id:06}-{}", &digest[..16])
}

impl Plan {
    /// Number of epochs for `peers` workers (one shard per worker per epoch).
    pub fn epochs(&self, peers: usize) -> u64 {
        self.shards.len().div_ceil(peers.max(1)) as u64
    }

    /// The shard that `worker` of `peers` processes in `epoch`, if it has work.
    pub fn shard_at(&self, epoch: u64, worker: usize, peers: usize) -> Option<&Shard> {
        let id = epoch as usize * peers + worker;
        self.shards.get(id).filter(|s| s.has_work())
    }

    /// Items to process.
    pub fn items(&self) -> usize {
        self.shards.iter().map(|s| s.entries.len()).sum()
    }

    /// Shards with work to do.
    pub fn pending_shards(&self) -> usize {
        self.shards.iter().filter(|s| s.has_work()).count()
    }
}

impl Shard {
    /// True when the shard encodes or deletes anything.
    pub fn has_work(&self) -> bool {
        !self.entries.is_empty() || !self.replaces.is_empty()
    }

    /// The epoch of a shard of a cluster of `peers` workers.
    pub fn epoch(&self, peers: usize) -> u64 {
        self.id / peers.max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<ManifestEntry> {
        (0..n)
            .map(|i| ManifestEntry {
                id: format!("{i:03}"),
                image: format!("file:///x/{i}.jpg"),
                caption: None,
                metadata: None,
            })
            .collect()
    }

    #[test]
    fn every_item_is_in_exactly_one_shard_owned_by_one_worker() {
        let done: HashSet<String> = ["003".to_string()].into();
        let plan = plan_shards(entries(10), Some(&done), &|_| false, 4);
        assert_eq!((plan.skipped, plan.items(), plan.shards.len()), (1, 9, 3));
        let peers = 2;
        let mut seen = Vec::new();
        for epoch in 0..plan.epochs(peers) {
            for worker in 0..peers {
                if let Some(shard) = plan.shard_at(epoch, worker, peers) {
                    assert_eq!(shard.id, epoch * peers as u64 + worker as u64);
                    seen.extend(shard.entries.iter().map(|e| e.id.clone()));
                }
            }
        }
        seen.sort();
        let expected: Vec<String> = entries(10)
            .into_iter()
            .map(|e| e.id)
            .filter(|id| id != "003")
            .collect();
        assert_eq!(seen, expected);
    }

    /// WebDataset samples: a tar of 5 and one of 3 at shard size 4 make shards of 4, 1 and 3.
    #[test]
    fn shards_never_join_two_tars() {
        let mut all = entries(8);
        for (i, e) in all.iter_mut().enumerate() {
            let tar = if i < 5 {
                "s3://b/00000.tar"
            } else {
                "s3://b/00001.tar"
            };
            e.image = format!("{tar}#bytes={}+10/{i}.jpg", 512 * i);
        }
        let plan = plan_shards(all, None, &|_| false, 4);
        let sizes: Vec<usize> = plan.shards.iter().map(|s| s.entries.len()).collect();
        assert_eq!(sizes, [4, 1, 3]);
        // A manifest's entries are cut as before.
        let plain = plan_shards(entries(8), None, &|_| false, 4);
        assert_eq!(plain.shards.len(), 2);
    }

    /// Ids missing from a committed shard (their rows deleted to retry them) form a patch
    /// shard with its own key; once that is committed too, nothing is left.
    #[test]
    fn missing_ids_of_a_committed_shard_make_a_patch_shard() {
        let fresh = plan_shards(entries(8), None, &|_| false, 4);
        let base = fresh.shards[0].key.clone();
        let present: HashSet<String> = ["000", "001", "003"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut done = present.clone();
        done.extend((4..8).map(|i| format!("{i:03}")));
        let committed = |k: &str| k == base || k == fresh.shards[1].key;
        let retry = plan_shards(entries(8), Some(&done), &committed, 4);
        let patch = &retry.shards[0];
        assert!(patch.key.starts_with(&format!("{base}+")), "{}", patch.key);
        assert_eq!(patch.entries.len(), 1);
        assert_eq!(patch.entries[0].id, "002");
        assert!(retry.shards[1].entries.is_empty());
        assert!(patch.key.ends_with("#0"), "{}", patch.key);
        // Committed, and its row deleted again: the next generation.
        let patched = |k: &str| committed(k) || k == patch.key;
        let again = plan_shards(entries(8), Some(&done), &patched, 4);
        assert!(
            again.shards[0].key.ends_with("#1"),
            "{}",
            again.shards[0].key
        );
        // Present again: nothing to do.
        done.insert("002".into());
        let after = plan_shards(entries(8), Some(&done), &patched, 4);
        assert_eq!(after.pending_shards(), 0);
    }

    /// With sizes in the manifest, a shard of big images holds fewer items: every shard
    /// carries about the same bytes.
    #[test]
    fn shards_are_cut_by_size_when_the_manifest_gives_sizes() {
        let mut items = entries(12);
        for (i, e) in items.iter_mut().enumerate() {
            let bytes = if i < 4 { 3000 } else { 1000 };
            e.metadata = Some(format!(r#"{{"bytes": {bytes}}}"#));
        }
        // Mean 1667 bytes, 2 items a shard: about 3333 bytes each.
        let plan = plan_shards(items, None, &|_| false, 2);
        let counts: Vec<usize> = plan.shards.iter().map(|s| s.entries.len()).collect();
        assert_eq!(counts, [2, 2, 4, 4]);
        // Without sizes: by count.
        let plain = plan_shards(entries(12), None, &|_| false, 5);
        let counts: Vec<usize> = plain.shards.iter().map(|s| s.entries.len()).collect();
        assert_eq!(counts, [5, 5, 2]);
    }

    /// Committed shards are skipped without moving the others: shard 1 keeps its owner and
    /// its key whatever is done.
    #[test]
    fn skipping_committed_shards_keeps_keys_and_owners() {
        let fresh = plan_shards(entries(12), None, &|_| false, 4);
        let first = fresh.shards[0].key.clone();
        let rerun = plan_shards(entries(12), None, &|k| k == first, 4);
        assert_eq!(rerun.shard_at(0, 0, 2), None);
        assert_eq!(rerun.shard_at(0, 1, 2), fresh.shard_at(0, 1, 2));
        assert_eq!((rerun.skipped, rerun.pending_shards()), (4, 2));
        assert!(fresh.shards[1].key.starts_with("000001-"));
        // The key depends on the ids: another manifest gives other keys.
        let other = plan_shards(entries(13)[1..].to_vec(), None, &|_| false, 4);
        assert_ne!(other.shards[0].key, first);
    }
}
