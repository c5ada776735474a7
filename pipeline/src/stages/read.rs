//! ReadImages: fetch, hash and decode every image of a shard; an image that cannot be read is
//! an `errors` row. A worker reads the next shard's images while it encodes the current one
//! ([`ReadStage::prefetch`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use timely::dataflow::Stream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use vemo_operators::images::{DecodedImage, ImageReader};
use vemo_operators::rows::ItemRows;
use vemo_schemas::{ErrorRecord, ManifestEntry, Stage};

use super::{ShardBatch, ShardFailed, Shards, Staged, map_named};
use crate::plan::Shard;

/// What reading one image gives: the decoded image or its `errors` row.
type ImageRead = Result<DecodedImage, ErrorRecord>;

/// A worker's image reads.
pub struct ReadStage {
    runtime: Arc<Runtime>,
    /// The reader (within the job's limits and read policy); planning a delta hashes with it.
    pub reader: Arc<ImageReader>,
    read_concurrency: usize,
    /// The `items` schema the shard's rows are written in.
    items_schema: SchemaRef,
    /// Reads started ahead of their shard ([`Self::prefetch`]), by shard id.
    prefetched: RefCell<HashMap<u64, JoinHandle<Vec<ImageRead>>>>,
}

impl ReadStage {
    pub fn new(
        runtime: Arc<Runtime>,
        reader: Arc<ImageReader>,
        read_concurrency: usize,
        items_schema: SchemaRef,
    ) -> Self {
        Self {
            runtime,
            reader,
            read_concurrency,
            items_schema,
            prefetched: RefCell::default(),
        }
    }

    /// Starts reading `shard`'s images on the runtime while this worker encodes the shard
    /// before it (double buffering: the device never waits for a whole shard's decode).
    pub fn prefetch(&self, shard: &Shard) {
        if shard.entries.is_empty() {
            return;
        }
        let (reader, entries) = (self.reader.clone(), shard.entries.clone());
        let concurrency = self.read_concurrency;
        let read = self
            .runtime
            .spawn(async move { reader.read_all(&entries, concurrency).await });
        self.prefetched.borrow_mut().insert(shard.id, read);
    }

    /// The shard's items as read (or as [`Self::prefetch`] read them).
    fn read(&self, shard: Shard) -> Staged {
        let _span = tracing::debug_span!("read_images", shard = shard.id).entered();
        let started = self.prefetched.borrow_mut().remove(&shard.id);
        let reads = match started {
            Some(read) => self.runtime.block_on(read).unwrap_or_else(|e| {
                let reason = format!("reading the shard's images failed: {e}");
                shard
                    .entries
                    .iter()
                    .map(|entry| Err(read_failure(entry, &reason)))
                    .collect()
            }),
            None => self
                .runtime
                .block_on(self.reader.read_all(&shard.entries, self.read_concurrency)),
        };
        match ItemRows::read(self.items_schema.clone(), shard.entries, reads) {
            Ok(items) => Ok(ShardBatch {
                shard: shard.id,
                key: shard.key,
                replaces: shard.replaces,
                encoded: 0,
                items,
            }),
            Err(e) => Err(ShardFailed {
                shard: shard.id,
                encoded: 0,
                reason: format!("shard {}: {e}", shard.id),
            }),
        }
    }
}

/// ReadImages: each planned shard as a [`ShardBatch`] of its items with their images.
pub trait ReadImages<'scope> {
    fn read_images(self, stage: Rc<ReadStage>) -> Shards<'scope>;
}

impl<'scope> ReadImages<'scope> for Stream<'scope, u64, Vec<Shard>> {
    fn read_images(self, stage: Rc<ReadStage>) -> Shards<'scope> {
        map_named(self, "ReadImages", move |shard| stage.read(shard))
    }
}

/// The `errors` row of an image whose read task died (a panic in a decoder): stage `read`.
fn read_failure(entry: &ManifestEntry, reason: &str) -> ErrorRecord {
    ErrorRecord {
        id: entry.id.clone(),
        image: entry.image.clone(),
        stage: Stage::Read,
        reason: reason.to_string(),
    }
}
