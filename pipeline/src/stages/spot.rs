//! SpotText: the words written in each image, read by the detector and recognizer (and, with
//! the entity task, the entities of that text); the whole images are dropped once read. An
//! image with more text regions than `max_spotted_regions`, or one that makes the models
//! panic, is an `errors` row.

use std::sync::Arc;

use rayon::prelude::*;

use vemo_models::models::text_encoder::TextEncoder;
use vemo_models::spotting::{Spotted, Spotter, spotted_text};
use vemo_operators::batches::{entity_list, spotted_columns};
use vemo_operators::images::DecodedImage;
use vemo_schemas::{
    COL_SPOTTED, COL_SPOTTED_ENTITIES, COL_SPOTTED_TEXT, Entity, SpottedWord, Stage,
};

use super::{ShardBatch, Shards, StageError, each_shard};
use crate::contain::{per_item, unpanicked};

/// A worker's text spotting: nothing unless the job runs the spotting task.
pub struct SpotStage {
    pub spotter: Option<Arc<Spotter>>,
    /// Text regions an image may have (`max_spotted_regions`).
    pub max_regions: usize,
    /// The text encoder, for the entities of the spotted text when the entity task runs.
    pub entities: Option<Arc<TextEncoder>>,
    /// Texts per pass of the text encoder.
    pub batch_size: usize,
    /// The threads model passes run on.
    pub threads: super::ModelThreads,
}

/// What spotting one image gave: its words, or the reason the item fails.
type SpotRead = Result<Vec<SpottedWord>, String>;

impl SpotStage {
    fn spot(&self, shard: &mut ShardBatch) -> Result<(), StageError> {
        let _span = tracing::debug_span!("spot_text", shard = shard.shard).entered();
        let Some(spotter) = &self.spotter else {
            return Ok(());
        };
        // One image a thread: the detector's hundreds of parallel loops an image each wait
        // for their slowest tile, and its serial parts (boxes, crops, the recognizer's
        // decoding) left the other core idle; nested loops still spread an image alone.
        let read: Vec<Result<SpotRead, StageError>> = shard
            .items
            .images_mut()
            .par_iter_mut()
            .map(|image| self.spot_one(spotter, image))
            .collect();
        let (mut words, mut failed) = (Vec::new(), Vec::new());
        for (row, one) in read.into_iter().enumerate() {
            match one? {
                Ok(found) => words.push(found),
                Err(reason) => failed.push((row, Stage::Encode, reason)),
            }
        }
        shard.items.fail(failed)?;
        let per_row: Vec<&[SpottedWord]> = words.iter().map(Vec::as_slice).collect();
        let [spotted, text] = spotted_columns(&per_row)?;
        shard.items.add_column(COL_SPOTTED, spotted)?;
        shard.items.add_column(COL_SPOTTED_TEXT, text)?;
        match &self.entities {
            Some(encoder) => self.add_entities(shard, encoder, &words),
            None => Ok(()),
        }
    }

    /// The words of one image, scaled back to its pixels. `Err`: the stage failed.
    fn spot_one(
        &self,
        spotter: &Spotter,
        image: &mut DecodedImage,
    ) -> Result<SpotRead, StageError> {
        let Some(full) = image.full.take() else {
            return Err(StageError::new("an image was not kept"));
        };
        let max_regions = self.max_regions;
        let spotted = unpanicked(|| spotter.spot_within(&full, max_regions));
        drop(full);
        match spotted {
            Ok(Ok(Spotted::Words(mut words))) => {
                // Polygons are x, y pairs in the kept image: back to the image's pixels.
                let scale = image.full_scale;
                if scale != [1.0, 1.0] {
                    for word in &mut words {
                        for (i, v) in word.polygon.iter_mut().enumerate() {
                            *v *= scale[i % 2];
                        }
                    }
                }
                Ok(Ok(words))
            }
            Ok(Ok(Spotted::TooManyRegions(found))) => Ok(Err(format!(
                "text spotting: {found} text regions, over the limit max_spotted_regions = \
                 {max_regions}"
            ))),
            Ok(Err(e)) => Err(StageError::new(format!("text spotting: {e}"))),
            Err(panic) => Ok(Err(format!("text spotting {panic}"))),
        }
    }

    /// Adds the entities of each row's spotted text (`words`, a row's words each).
    fn add_entities(
        &self,
        shard: &mut ShardBatch,
        encoder: &TextEncoder,
        words: &[Vec<SpottedWord>],
    ) -> Result<(), StageError> {
        let texts: Vec<String> = words.iter().map(|w| spotted_text(w)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let found = per_item(&refs, |batch| encoder.entities_of(batch, self.batch_size))
            .map_err(|e| StageError::new(format!("spotted-text entities: {e}")))?;
        let (mut entities, mut failed) = (Vec::new(), Vec::new());
        for (row, one) in found.into_iter().enumerate() {
            match one {
                Ok(list) => entities.push(list),
                Err(reason) => {
                    let reason = format!("spotted-text entities: {reason}");
                    failed.push((row, Stage::Encode, reason));
                }
            }
        }
        shard.items.fail(failed)?;
        let refs: Vec<&[Entity]> = entities.iter().map(Vec::as_slice).collect();
        shard
            .items
            .add_column(COL_SPOTTED_ENTITIES, entity_list(&refs)?)?;
        Ok(())
    }
}

/// SpotText: the spotted-word columns of each shard.
pub trait SpotText<'scope> {
    fn spot_text(self, stage: SpotStage) -> Shards<'scope>;
}

impl<'scope> SpotText<'scope> for Shards<'scope> {
    fn spot_text(self, stage: SpotStage) -> Shards<'scope> {
        each_shard(self, "SpotText", stage.threads.clone(), move |shard| {
            stage.spot(shard)
        })
    }
}
