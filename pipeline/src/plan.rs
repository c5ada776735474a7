//! Shard planning: which items this run processes, in which shard, owned by which worker.
//!
//! Every process plans the same way from the same manifest and output state, so no plan needs
//! to travel: shard `i` holds items `i*size..` of the manifest order (items already in `items`
//! or `errors` left out), belongs to worker `i % peers`, and runs in epoch `i / peers`.

use std::collections::HashSet;

use vemo_schemas::ManifestEntry;

/// A unit of work owned by one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Shard {
    /// Position in the plan; fixes the owner and the epoch.
    pub id: u64,
    /// The items of the shard, in manifest order.
    pub entries: Vec<ManifestEntry>,
}

/// The shards of one run.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// All shards, by id.
    pub shards: Vec<Shard>,
    /// Manifest items already in `items` or `errors`, not processed again.
    pub skipped: usize,
    /// Items in the manifest.
    pub manifest_items: usize,
}

/// Splits the manifest into shards of `shard_size`, leaving out ids in `done`.
pub fn plan_shards(entries: Vec<ManifestEntry>, done: &HashSet<String>, shard_size: usize) -> Plan {
    let manifest_items = entries.len();
    let todo: Vec<ManifestEntry> = entries
        .into_iter()
        .filter(|e| !done.contains(&e.id))
        .collect();
    let skipped = manifest_items - todo.len();
    let shards = todo
        .chunks(shard_size.max(1))
        .enumerate()
        .map(|(i, chunk)| Shard {
            id: i as u64,
            entries: chunk.to_vec(),
        })
        .collect();
    Plan {
        shards,
        skipped,
        manifest_items,
    }
}

impl Plan {
    /// Number of epochs for `peers` workers (one shard per worker per epoch).
    pub fn epochs(&self, peers: usize) -> u64 {
        self.shards.len().div_ceil(peers.max(1)) as u64
    }

    /// The shard that `worker` of `peers` processes in `epoch`, if any.
    pub fn shard_at(&self, epoch: u64, worker: usize, peers: usize) -> Option<&Shard> {
        let id = epoch as usize * peers + worker;
        self.shards.get(id)
    }

    /// Items to process.
    pub fn items(&self) -> usize {
        self.shards.iter().map(|s| s.entries.len()).sum()
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
        let plan = plan_shards(entries(10), &done, 4);
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
}
