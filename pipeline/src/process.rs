//! The per-shard stages a worker runs: ReadImages -> EncodeCaptions -> EncodeImages ->
//! SpotText -> WriteShard.
//!
//! Each stage takes and returns plain values, so the dataflow only wires them. Bad items leave
//! the shard as [`ErrorRecord`]s; a failure of the stage itself (a model or a Lance write)
//! marks the whole shard failed, and the committer leaves it uncommitted for the next run.
//! A worker reads the next shard's images while it encodes the current one
//! ([`ShardProcessor::prefetch`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::spotting::{Spotted, Spotter, spotted_text};
use vemo_operators::batches::{
    IndexedItem, RowStamp, embeddings_long_batch, entities_long_batch, errors_batch, items_batch,
    spotted_long_batch,
};
use vemo_operators::images::{DecodedImage, ImageReader};
use vemo_operators::lance_io::{WrittenFragments, write_fragments_uncommitted};
use vemo_operators::limits::InputLimits;
use vemo_operators::parquet_io::write_parquet;
use vemo_operators::store::Location;
use vemo_schemas::{
    EmbeddingColumn, ErrorRecord, ManifestEntry, PARQUET_EMBEDDINGS_DIR, PARQUET_ENTITIES_DIR,
    PARQUET_ERRORS_DIR, PARQUET_SPOTTED_DIR, Stage,
};

use crate::plan::Shard;
use vemo_output::layout::OutputLayout;

/// After ReadImages: the shard's items with their images, and the items that failed.
#[derive(Debug, Clone)]
pub struct ShardRead {
    pub shard: u64,
    pub key: String,
    pub replaces: Vec<String>,
    pub read: Vec<(ManifestEntry, DecodedImage)>,
    pub errors: Vec<ErrorRecord>,
}

/// After EncodeCaptions: items ready to write.
#[derive(Debug, Clone)]
pub struct ShardEncoded {
    pub shard: u64,
    pub key: String,
    pub replaces: Vec<String>,
    /// Items that went through the text encoder.
    pub encoded: usize,
    pub items: Vec<IndexedItem>,
    pub errors: Vec<ErrorRecord>,
    pub failure: Option<String>,
}

/// After WriteShard: what the committer needs. Travels between processes, so it is plain data:
/// the written fragments, and the Parquet parts as (staged URI, final relative path).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardWritten {
    pub shard: u64,
    /// The shard's ledger key, and the ids whose earlier rows its commit deletes.
    pub key: String,
    pub replaces: Vec<String>,
    pub encoded: usize,
    pub items: usize,
    pub errors: usize,
    pub item_fragments: WrittenFragments,
    pub error_fragments: WrittenFragments,
    pub staged_parts: Vec<(String, String)>,
    pub failure: Option<String>,
}

/// One worker's stages, sharing the process's runtime and encoders. `columns` lists the text
/// exits, then the image exits, then the image feature column, as the encoders produce them.
pub struct ShardProcessor {
    pub runtime: Arc<Runtime>,
    pub encoder: Arc<TextEncoder>,
    pub images: Option<Arc<ImageEncoder>>,
    /// Whether the entity task runs (the text encoder then carries the NER branch).
    pub entities: bool,
    /// The spotting task's detector and recognizer, when it runs.
    pub spotter: Option<Arc<Spotter>>,
    pub reader: Arc<ImageReader>,
    /// Reads started ahead of their shard ([`Self::prefetch`]), by shard id.
    pub prefetched: RefCell<HashMap<u64, JoinHandle<Vec<ImageRead>>>>,
    pub columns: Vec<EmbeddingColumn>,
    pub stamp: RowStamp,
    pub output: Location,
    pub items_uri: String,
    pub errors_uri: String,
    pub batch_size: usize,
    pub image_batch_size: usize,
    pub read_concurrency: usize,
    /// What one item may cost (captions, spotted regions; the reader holds the image limits).
    pub limits: InputLimits,
    /// Make an item without a caption an `errors` row even when images are indexed (an output
    /// whose caption columns are not nullable, written by an older vemo).
    pub captionless_as_errors: bool,
    /// The `items` schema rows are written in (the output's column order).
    pub items_schema: arrow_schema::SchemaRef,
}

/// What reading one image gives: the decoded image or its `errors` row.
type ImageRead = Result<DecodedImage, ErrorRecord>;

impl ShardProcessor {
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

    /// ReadImages: fetch, hash and decode every image of the shard (or take what
    /// [`Self::prefetch`] read).
    pub fn read_images(&self, shard: Shard) -> ShardRead {
        let _span = tracing::debug_span!("read_images", shard = shard.id).entered();
        let started = self.prefetched.borrow_mut().remove(&shard.id);
        let results = match started {
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
        let mut out = ShardRead {
            shard: shard.id,
            key: shard.key,
            replaces: shard.replaces,
            read: Vec::new(),
            errors: Vec::new(),
        };
        for (entry, result) in shard.entries.into_iter().zip(results) {
            match result {
                Ok(image) => out.read.push((entry, image)),
                Err(error) => out.errors.push(error),
            }
        }
        out
    }

    /// EncodeCaptions: embed every caption at every exit. A caption over the byte limit is an
    /// `errors` row; an item without a caption keeps null caption columns (its image is still
    /// indexed), unless every task of the job reads the caption: then it is an `errors` row.
    pub fn encode_captions(&self, shard: ShardRead) -> ShardEncoded {
        let _span = tracing::debug_span!("encode_captions", shard = shard.shard).entered();
        let mut errors = shard.errors;
        let image_tasks =
            (self.images.is_some() || self.spotter.is_some()) && !self.captionless_as_errors;
        let mut ready = Vec::new();
        for (entry, image) in shard.read {
            let caption = entry.caption.as_deref().unwrap_or_default();
            let refused = match self.limits.check_caption(caption.len()) {
                Err(reason) => Some(reason),
                Ok(()) if caption.trim().is_empty() && !image_tasks => {
                    Some(match self.captionless_as_errors {
                        true => "empty or missing caption: this output's caption columns were \
                                 written not nullable (by an older vemo); index into a new \
                                 output to keep items without captions"
                            .into(),
                        false => "empty or missing caption: every task of this job reads it".into(),
                    })
                }
                Ok(()) => None,
            };
            match refused {
                Some(reason) => errors.push(item_error(&entry, Stage::Caption, reason)),
                None => ready.push((entry, image)),
            }
        }
        let captioned: Vec<usize> = (0..ready.len())
            .filter(|&i| has_caption(&ready[i].0))
            .collect();
        let captions: Vec<&str> = captioned
            .iter()
            .map(|&i| ready[i].0.caption.as_deref().unwrap_or_default())
            .collect();
        let mut out = ShardEncoded {
            shard: shard.shard,
            key: shard.key,
            replaces: shard.replaces,
            encoded: captions.len(),
            items: Vec::new(),
            errors,
            failure: None,
        };
        let encoded = crate::contain::per_item(&captions, |batch| {
            let (per_exit, entities) = self
                .encoder
                .encode_all_with_entities(batch, self.batch_size)?;
            Ok::<_, vemo_operators::Error>(
                entities
                    .into_iter()
                    .enumerate()
                    .map(|(i, found)| {
                        (per_exit.iter().map(|exit| exit[i].clone()).collect(), found)
                    })
                    .collect::<Vec<(Vec<Vec<f32>>, _)>>(),
            )
        });
        let mut encoded = match encoded {
            Ok(encoded) => encoded.into_iter(),
            Err(e) => {
                out.failure = Some(format!("shard {}: text encoder: {e}", shard.shard));
                return out;
            }
        };
        let text_exits = self.encoder.exits().len();
        for (entry, image) in ready {
            let (embeddings, found) = if has_caption(&entry) {
                match encoded.next() {
                    Some(Ok(one)) => one,
                    Some(Err(reason)) => {
                        out.errors.push(item_error(&entry, Stage::Encode, reason));
                        continue;
                    }
                    None => {
                        out.failure = Some(format!("shard {}: a caption lost", shard.shard));
                        return out;
                    }
                }
            } else {
                // Null text embeddings, no entities.
                (vec![Vec::new(); text_exits], Vec::new())
            };
            out.items.push(IndexedItem {
                entry,
                image,
                embeddings,
                entities: self.entities.then_some(found),
                spotted: None,
                spotted_entities: None,
            });
        }
        out
    }

    /// EncodeImages: the image tower's embeddings at every exit (and the pooled feature),
    /// appended after the caption embeddings; the crops are dropped once encoded. An item whose
    /// image makes the tower panic is an `errors` row.
    pub fn encode_images(&self, mut shard: ShardEncoded) -> ShardEncoded {
        let _span = tracing::debug_span!("encode_images", shard = shard.shard).entered();
        let Some(encoder) = &self.images else {
            return shard;
        };
        if shard.failure.is_some() || shard.items.is_empty() {
            return shard;
        }
        let crops: Option<Vec<Arc<RgbImage>>> = shard
            .items
            .iter_mut()
            .map(|item| item.image.crop.take())
            .collect();
        let Some(crops) = crops else {
            shard.failure = Some(format!("shard {}: an image has no crop", shard.shard));
            return shard;
        };
        let encoded = crate::contain::per_item(&crops, |batch| {
            let refs: Vec<&RgbImage> = batch.iter().map(|c| &**c).collect();
            let encoded = encoder.encode_all(&refs, self.image_batch_size)?;
            Ok::<_, vemo_operators::Error>(
                (0..batch.len())
                    .map(|i| {
                        let mut one: Vec<Vec<f32>> =
                            encoded.joint.iter().map(|exit| exit[i].clone()).collect();
                        one.extend(encoded.features.as_ref().map(|f| f[i].clone()));
                        one
                    })
                    .collect::<Vec<_>>(),
            )
        });
        match encoded {
            Ok(encoded) => {
                let items = std::mem::take(&mut shard.items);
                for (mut item, result) in items.into_iter().zip(encoded) {
                    match result {
                        Ok(embeddings) => {
                            item.embeddings.extend(embeddings);
                            shard.items.push(item);
                        }
                        Err(reason) => {
                            let reason = format!("image tower: {reason}");
                            shard
                                .errors
                                .push(item_error(&item.entry, Stage::Encode, reason));
                        }
                    }
                }
            }
            Err(e) => shard.failure = Some(format!("shard {}: image encoder: {e}", shard.shard)),
        }
        shard
    }

    /// SpotText: the words written in each image, read by the detector and recognizer (and,
    /// with the entity task, the entities of that text); the whole images are dropped once
    /// read. An image with more text regions than `max_spotted_regions`, or one that makes
    /// the models panic, is an `errors` row.
    pub fn spot_text(&self, mut shard: ShardEncoded) -> ShardEncoded {
        let _span = tracing::debug_span!("spot_text", shard = shard.shard).entered();
        let Some(spotter) = &self.spotter else {
            return shard;
        };
        if shard.failure.is_some() {
            return shard;
        }
        let items = std::mem::take(&mut shard.items);
        for mut item in items {
            let Some(image) = item.image.full.take() else {
                shard.failure = Some(format!("shard {}: an image was not kept", shard.shard));
                return shard;
            };
            let max_regions = self.limits.max_spotted_regions;
            let spotted = crate::contain::unpanicked(|| spotter.spot_within(&image, max_regions));
            drop(image);
            let reason = match spotted {
                Ok(Ok(Spotted::Words(mut words))) => {
                    // Polygons are x, y pairs in the kept image: back to the image's pixels.
                    let scale = item.image.full_scale;
                    if scale != [1.0, 1.0] {
                        for word in &mut words {
                            for (i, v) in word.polygon.iter_mut().enumerate() {
                                *v *= scale[i % 2];
                            }
                        }
                    }
                    item.spotted = Some(words);
                    shard.items.push(item);
                    continue;
                }
                Ok(Ok(Spotted::TooManyRegions(found))) => format!(
                    "text spotting: {found} text regions, over the limit max_spotted_regions = \
                     {max_regions}"
                ),
                Ok(Err(e)) => {
                    shard.failure = Some(format!("shard {}: text spotting: {e}", shard.shard));
                    return shard;
                }
                Err(panic) => format!("text spotting {panic}"),
            };
            shard
                .errors
                .push(item_error(&item.entry, Stage::Encode, reason));
        }
        if self.entities {
            let texts: Vec<String> = shard
                .items
                .iter()
                .map(|item| spotted_text(item.spotted.as_deref().unwrap_or_default()))
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let found = crate::contain::per_item(&refs, |batch| {
                self.encoder.entities_of(batch, self.batch_size)
            });
            match found {
                Ok(found) => {
                    let items = std::mem::take(&mut shard.items);
                    for (mut item, entities) in items.into_iter().zip(found) {
                        match entities {
                            Ok(entities) => {
                                item.spotted_entities = Some(entities);
                                shard.items.push(item);
                            }
                            Err(reason) => {
                                let reason = format!("spotted-text entities: {reason}");
                                shard
                                    .errors
                                    .push(item_error(&item.entry, Stage::Encode, reason));
                            }
                        }
                    }
                }
                Err(e) => {
                    shard.failure =
                        Some(format!("shard {}: spotted-text entities: {e}", shard.shard));
                }
            }
        }
        shard
    }

    /// WriteShard: Lance fragments (uncommitted) and staged Parquet parts.
    pub fn write_shard(&self, shard: ShardEncoded) -> ShardWritten {
        let _span = tracing::debug_span!("write_shard", shard = shard.shard).entered();
        let mut written = ShardWritten {
            shard: shard.shard,
            key: shard.key.clone(),
            replaces: shard.replaces.clone(),
            encoded: shard.encoded,
            items: shard.items.len(),
            errors: shard.errors.len(),
            failure: shard.failure.clone(),
            ..Default::default()
        };
        vemo_operators::crash::point("before-write", &shard.shard.to_string());
        if written.failure.is_none()
            && let Err(e) = self.runtime.block_on(self.write(&shard, &mut written))
        {
            written.failure = Some(format!("shard {}: write: {e}", shard.shard));
        }
        written
    }

    async fn write(
        &self,
        shard: &ShardEncoded,
        out: &mut ShardWritten,
    ) -> vemo_operators::Result<()> {
        let suffix: u64 = rand::random();
        let part = format!(
            "part-{}-{:06}-{suffix:016x}.parquet",
            self.stamp.job_id, shard.shard
        );
        if !shard.items.is_empty() {
            let items = in_schema_order(
                items_batch(&self.columns, &shard.items, &self.stamp)?,
                &self.items_schema,
            )?;
            let fragments = write_fragments_uncommitted(&self.items_uri, vec![items]).await?;
            out.item_fragments = WrittenFragments::new(fragments);
            let long = embeddings_long_batch(&self.columns, &shard.items, &self.stamp)?;
            out.staged_parts.push(
                self.stage_part(&long, PARQUET_EMBEDDINGS_DIR, &part)
                    .await?,
            );
            if self.entities {
                let entities = entities_long_batch(&shard.items, &self.stamp)?;
                out.staged_parts.push(
                    self.stage_part(&entities, PARQUET_ENTITIES_DIR, &part)
                        .await?,
                );
            }
            if self.spotter.is_some() {
                let spotted = spotted_long_batch(&shard.items, &self.stamp)?;
                out.staged_parts.push(
                    self.stage_part(&spotted, PARQUET_SPOTTED_DIR, &part)
                        .await?,
                );
            }
        }
        if !shard.errors.is_empty() {
            let errors = errors_batch(&shard.errors, &self.stamp)?;
            let fragments =
                write_fragments_uncommitted(&self.errors_uri, vec![errors.clone()]).await?;
            out.error_fragments = WrittenFragments::new(fragments);
            out.staged_parts
                .push(self.stage_part(&errors, PARQUET_ERRORS_DIR, &part).await?);
        }
        Ok(())
    }

    async fn stage_part(
        &self,
        batch: &arrow_array::RecordBatch,
        dir: &str,
        part: &str,
    ) -> vemo_operators::Result<(String, String)> {
        let staged = OutputLayout::staged_part(&self.stamp.job_id, dir, part);
        write_parquet(&self.output.child(&staged)?, batch).await?;
        Ok((staged, format!("{dir}/{part}")))
    }
}

/// `batch` with its columns in the order of `schema` (the same columns, by name).
fn in_schema_order(
    batch: arrow_array::RecordBatch,
    schema: &arrow_schema::SchemaRef,
) -> vemo_operators::Result<arrow_array::RecordBatch> {
    let order: Vec<usize> = schema
        .fields()
        .iter()
        .map(|f| batch.schema().index_of(f.name()))
        .collect::<Result<_, _>>()?;
    Ok(batch.project(&order)?)
}

/// The `errors` row of an image whose read task died (a panic in a decoder): stage `read`.
fn read_failure(entry: &ManifestEntry, reason: &str) -> ErrorRecord {
    item_error(entry, Stage::Read, reason.to_string())
}

/// The `errors` row of `entry`.
fn item_error(entry: &ManifestEntry, stage: Stage, reason: String) -> ErrorRecord {
    ErrorRecord {
        id: entry.id.clone(),
        image: entry.image.clone(),
        stage,
        reason,
    }
}

/// Whether the entry has a caption to encode (not empty, not only white space).
fn has_caption(entry: &ManifestEntry) -> bool {
    entry
        .caption
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty())
}
