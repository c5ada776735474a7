//! Delta planning for incremental runs: which ids of this run's corpus are added, changed,
//! retried, removed or unchanged against what the output holds.
//!
//! Both sides are differential collections keyed by id: the corpus as `(id, (fingerprint,
//! entry))`, the output as `(id, fingerprint)` from `items` and the ids in `errors`. Each
//! worker feeds its own share (every `peers`-th manifest row, every `peers`-th fragment) and
//! the joins exchange by id, so each worker ends with the delta of the ids it owns and encodes
//! those. [`oracle`] computes the same answer sequentially with hash maps; the tests hold the
//! dataflow to it.
//!
//! A fingerprint covers what a row is made from: the SHA-256 of the image bytes, the image URI,
//! the caption, the extra manifest columns and the bundle id. The exits and tasks are the
//! table's columns, checked once per run.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use differential_dataflow::input::Input;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;
use vemo_schemas::ManifestEntry;

/// What becomes of one id in an incremental run. Serialised (plan and run reports, the
/// report keys of [`crate::DeltaReport::samples`]) as its lowercase name, `added` ...
///
/// The variants are in alphabetical order: a map keyed by `Change` lists them as the map keyed
/// by their names did, and for one id `Changed` sorts before `Unchanged` (see [`sort_by_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// In the corpus only: encoded.
    Added,
    /// In both, with another fingerprint: its rows are replaced.
    Changed,
    /// In the output only: its rows are deleted.
    Removed,
    /// In the corpus and in `errors` (an earlier attempt failed): tried again.
    Retried,
    /// In both, same fingerprint: left alone.
    Unchanged,
}

impl Change {
    /// Every change, in the order `vemo plan` prints them.
    pub const ALL: [Change; 5] = [
        Change::Added,
        Change::Changed,
        Change::Retried,
        Change::Removed,
        Change::Unchanged,
    ];

    /// The change's name, as serde writes it: `added`, `changed`, `removed`, `retried` or
    /// `unchanged`.
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Retried => "retried",
            Change::Unchanged => "unchanged",
        }
    }

    /// True when the run encodes the item.
    pub fn encodes(self) -> bool {
        matches!(self, Change::Added | Change::Changed | Change::Retried)
    }
}

/// Counts of each [`Change`]: what `vemo plan --json` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaCounts {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub retried: usize,
}

impl DeltaCounts {
    /// Counts `changes`.
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut counts = Self::default();
        for change in changes {
            *counts.slot(*change) += 1;
        }
        counts
    }

    fn slot(&mut self, change: Change) -> &mut usize {
        match change {
            Change::Added => &mut self.added,
            Change::Changed => &mut self.changed,
            Change::Retried => &mut self.retried,
            Change::Removed => &mut self.removed,
            Change::Unchanged => &mut self.unchanged,
        }
    }

    /// The count of `change`.
    pub fn get(&self, change: Change) -> usize {
        match change {
            Change::Added => self.added,
            Change::Changed => self.changed,
            Change::Removed => self.removed,
            Change::Retried => self.retried,
            Change::Unchanged => self.unchanged,
        }
    }

    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &Self) {
        self.added += other.added;
        self.changed += other.changed;
        self.removed += other.removed;
        self.unchanged += other.unchanged;
        self.retried += other.retried;
    }

    /// Items the run encodes.
    pub fn to_encode(&self) -> usize {
        self.added + self.changed + self.retried
    }
}

/// One id of the delta, on the worker that owns it: the entry and its fingerprint when the
/// corpus has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeltaItem {
    pub change: Change,
    pub id: String,
    pub entry: Option<(u64, ManifestEntry)>,
}

/// What a row is made from: the fields its fingerprint hashes.
#[derive(Debug, Clone, Copy)]
pub struct RowSource<'a> {
    /// SHA-256 (hex) of the image bytes.
    pub content_hash: &'a str,
    /// The image URI, caption and extra manifest columns, as the row stores them.
    pub image: &'a str,
    pub caption: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// The bundle id.
    pub bundle: &'a str,
}

/// The fingerprint of a row: the first 8 bytes of a SHA-256 over what it is made from.
pub fn fingerprint(source: RowSource) -> u64 {
    let mut hash = Sha256::new();
    for part in [
        source.content_hash,
        source.image,
        source.caption.unwrap_or_default(),
        source.metadata.unwrap_or_default(),
        source.bundle,
    ] {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// One worker's share of the two sides.
#[derive(Debug, Clone, Default)]
pub struct DeltaInput {
    /// Corpus items with their fingerprints.
    pub corpus: Vec<(u64, ManifestEntry)>,
    /// `(id, fingerprint)` of `items` rows.
    pub indexed: Vec<(String, u64)>,
    /// Ids of `errors` rows.
    pub errors: Vec<String>,
}

/// Runs the delta dataflow on `worker` over its `share`; returns the delta of the ids this
/// worker owns (unchanged ones included), sorted by id. Every worker of the cluster must call
/// it at the same point.
pub fn compute_delta(worker: &mut Worker, share: DeltaInput) -> Vec<DeltaItem> {
    type Out = (Change, String, Option<(u64, ManifestEntry)>);
    let found: Rc<RefCell<Vec<Out>>> = Rc::default();
    let sink = found.clone();
    let probe = ProbeHandle::new();
    let (mut corpus_in, mut indexed_in, mut errors_in) = worker.dataflow::<u64, _, _>(|scope| {
        let (corpus_in, corpus) = scope.new_collection::<(String, (u64, ManifestEntry)), isize>();
        let (indexed_in, indexed) = scope.new_collection::<(String, u64), isize>();
        let (errors_in, errors) = scope.new_collection::<String, isize>();
        let errors = errors.distinct();
        let indexed_ids = indexed.clone().map(|(id, _)| id).distinct();
        let corpus_ids = corpus.clone().map(|(id, _)| id).distinct();
        let matched = corpus
            .clone()
            .join(indexed)
            .map(|(id, ((fp, entry), indexed_fp))| match fp == indexed_fp {
                true => (Change::Unchanged, id, None),
                false => (Change::Changed, id, Some((fp, entry))),
            });
        let fresh = corpus.antijoin(indexed_ids.clone());
        let retried = fresh
            .clone()
            .semijoin(errors.clone())
            .map(|(id, entry)| (Change::Retried, id, Some(entry)));
        let added = fresh
            .antijoin(errors.clone())
            .map(|(id, entry)| (Change::Added, id, Some(entry)));
        let removed = indexed_ids
            .concat(errors)
            .distinct()
            .map(|id| (id, ()))
            .antijoin(corpus_ids)
            .map(|(id, ())| (Change::Removed, id, None));
        matched
            .concat(retried)
            .concat(added)
            .concat(removed)
            .consolidate()
            .inspect(move |(item, _time, diff)| {
                if *diff > 0 {
                    sink.borrow_mut().push(item.clone());
                }
            })
            .probe_with(&probe);
        (corpus_in, indexed_in, errors_in)
    });
    for (fp, entry) in share.corpus {
        corpus_in.insert((entry.id.clone(), (fp, entry)));
    }
    for row in share.indexed {
        indexed_in.insert(row);
    }
    for id in share.errors {
        errors_in.insert(id);
    }
    drop((corpus_in, indexed_in, errors_in));
    worker.step_while(|| !probe.done());
    let mut delta: Vec<DeltaItem> = found
        .take()
        .into_iter()
        .map(|(change, id, entry)| DeltaItem { change, id, entry })
        .collect();
    sort_by_id(&mut delta);
    // An id with two `items` rows (written outside vemo) can match both ways: replace it.
    delta.dedup_by(|later, first| later.id == first.id);
    delta
}

/// Sorts by id, and for one id puts the change that rewrites rows first.
pub fn sort_by_id(delta: &mut [DeltaItem]) {
    delta.sort_by(|a, b| (&a.id, a.change).cmp(&(&b.id, b.change)));
}

/// The delta of `share` (the whole of both sides) computed sequentially, sorted by id: what
/// [`compute_delta`] must agree with on any number of workers.
pub fn oracle(share: &DeltaInput) -> Vec<DeltaItem> {
    let indexed: HashMap<&str, u64> = share
        .indexed
        .iter()
        .map(|(id, fp)| (id.as_str(), *fp))
        .collect();
    let errors: HashSet<&str> = share.errors.iter().map(String::as_str).collect();
    let mut delta: Vec<DeltaItem> = share
        .corpus
        .iter()
        .map(|(fp, entry)| {
            let id = entry.id.as_str();
            let change = match indexed.get(id) {
                Some(indexed) if indexed == fp => Change::Unchanged,
                Some(_) => Change::Changed,
                None if errors.contains(id) => Change::Retried,
                None => Change::Added,
            };
            DeltaItem {
                change,
                id: id.to_string(),
                entry: (change != Change::Unchanged).then(|| (*fp, entry.clone())),
            }
        })
        .collect();
    let in_corpus: HashSet<&str> = share.corpus.iter().map(|(_, e)| e.id.as_str()).collect();
    let output: HashSet<&str> = indexed.keys().copied().chain(errors).collect();
    delta.extend(
        output
            .into_iter()
            .filter(|id| !in_corpus.contains(id))
            .map(|id| DeltaItem {
                change: Change::Removed,
                id: id.to_string(),
                entry: None,
            }),
    );
    sort_by_id(&mut delta);
    delta
}

/// Sends `value` from every worker to every worker: each returns all of them, sorted. Every
/// worker must call it at the same point.
pub fn all_gather<T>(worker: &mut Worker, value: T) -> Vec<T>
where
    T: timely::ExchangeData + Clone + Ord,
{
    let got: Rc<RefCell<Vec<T>>> = Rc::default();
    let sink = got.clone();
    let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<T>>>::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        input
            .to_stream(scope)
            .broadcast()
            .inspect(move |value: &T| sink.borrow_mut().push(value.clone()))
            .probe_with(&probe);
    });
    input.send(value);
    input.close();
    worker.step_while(|| !probe.done());
    let mut all = got.take();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn entry(id: usize) -> ManifestEntry {
        ManifestEntry {
            id: format!("item-{id:05}"),
            image: format!("file:///x/{id}.jpg"),
            caption: Some(format!("caption {id}")),
            metadata: None,
        }
    }

    /// An output of `n` items with a few errors, and a corpus that adds, edits, drops and
    /// keeps ids at random.
    fn mutated(n: usize, seed: u64) -> DeltaInput {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut share = DeltaInput::default();
        for i in 0..n {
            let hash = format!("{i}");
            let fp = fingerprint(RowSource {
                content_hash: &hash,
                image: "x.jpg",
                caption: Some("c"),
                metadata: None,
                bundle: "b",
            });
            match rng.random_range(0..20) {
                0 => share.errors.push(entry(i).id),
                _ => share.indexed.push((entry(i).id, fp)),
            }
            match rng.random_range(0..20) {
                0 => {}                                     // removed
                1 => share.corpus.push((fp ^ 1, entry(i))), // changed
                _ => share.corpus.push((fp, entry(i))),     // unchanged (or retried)
            }
        }
        share
            .corpus
            .extend((n..n + n / 10).map(|i| (i as u64, entry(i))));
        share
    }

    /// Splits a share round-robin as the workers of a run do.
    fn part(share: &DeltaInput, worker: usize, peers: usize) -> DeltaInput {
        fn every<T: Clone>(all: &[T], worker: usize, peers: usize) -> Vec<T> {
            all.iter().skip(worker).step_by(peers).cloned().collect()
        }
        DeltaInput {
            corpus: every(&share.corpus, worker, peers),
            indexed: every(&share.indexed, worker, peers),
            errors: every(&share.errors, worker, peers),
        }
    }

    fn run(share: DeltaInput, workers: usize) -> Vec<DeltaItem> {
        let share = std::sync::Arc::new(share);
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let mine = part(&share, worker.index(), worker.peers());
            compute_delta(worker, mine)
        })
        .expect("timely runs");
        let mut all: Vec<DeltaItem> = guards
            .join()
            .into_iter()
            .flat_map(|r| r.expect("worker finished"))
            .collect();
        sort_by_id(&mut all);
        all
    }

    /// The differential delta equals the sequential oracle on 1 and 3 workers, every id lands
    /// once, and each kind of change occurs.
    #[test]
    fn differential_delta_matches_the_oracle_on_one_and_three_workers() {
        let share = mutated(2000, 7);
        let expected = oracle(&share);
        let counts = DeltaCounts::of(expected.iter().map(|d| &d.change));
        assert!(counts.added == 200 && counts.changed > 0 && counts.removed > 0);
        assert!(counts.retried > 0 && counts.unchanged > 1000, "{counts:?}");
        for workers in [1, 3] {
            let got = run(share.clone(), workers);
            assert_eq!(got.len(), expected.len(), "{workers} workers");
            assert!(
                got == expected,
                "{workers} workers: the delta differs from the oracle"
            );
        }
    }

    /// Each change is written as its name, also as a map key, and map keys come out in the
    /// order of the names.
    #[test]
    fn changes_serialise_as_their_names() {
        let mut samples = std::collections::BTreeMap::new();
        for change in Change::ALL {
            let json = serde_json::to_string(&change).expect("serialise");
            assert_eq!(json, format!("\"{}\"", change.name()));
            assert_eq!(serde_json::from_str::<Change>(&json).ok(), Some(change));
            samples.insert(change, vec![change.name().to_string()]);
        }
        let json = serde_json::to_string(&samples).expect("serialise");
        assert_eq!(
            json,
            r#"{"added":["added"],"changed":["changed"],"removed":["removed"],"retried":["retried"],"unchanged":["unchanged"]}"#
        );
        let back: std::collections::BTreeMap<Change, Vec<String>> =
            serde_json::from_str(&json).expect("parse");
        assert_eq!(back, samples);
        let counts = DeltaCounts::of(&[Change::Retried, Change::Retried, Change::Removed]);
        assert_eq!(counts.get(Change::Retried), 2);
        assert_eq!(counts.get(Change::Removed), 1);
        assert_eq!(counts.get(Change::Added), 0);
    }

    #[test]
    fn all_gather_brings_every_value_to_every_worker() {
        let guards = timely::execute(timely::Config::process(3), |worker| {
            let index = worker.index();
            all_gather(worker, index * 10)
        })
        .expect("timely runs");
        for result in guards.join() {
            assert_eq!(result.expect("worker finished"), [0, 10, 20]);
        }
    }
}
