//! EncodeImages: the image tower's embeddings at every exit (and the pooled feature), written
//! straight into the shard's image columns; the crops are dropped once encoded. An item whose
//! image makes the tower panic is an `errors` row.

use std::sync::Arc;

use arrow_array::FixedSizeListArray;
use image::RgbImage;
use vemo_models::models::image_encoder::ImageEncoder;
use vemo_schemas::{EmbeddingColumn, Stage};

use super::{Passed, ShardBatch, Shards, StageError, column, concat_rows, each_shard, passed};
use crate::contain::{Contained, contained};

/// A worker's image encoding: nothing when the bundle has no image tower.
pub struct ImageStage {
    pub encoder: Option<Arc<ImageEncoder>>,
    /// Crops per pass of the tower.
    pub batch_size: usize,
    /// The columns the encoder fills, in its order ([`ImageEncoder::columns`]).
    pub columns: Vec<EmbeddingColumn>,
    /// The threads model passes run on.
    pub threads: super::ModelThreads,
}

impl ImageStage {
    fn encode(&self, shard: &mut ShardBatch) -> Result<(), StageError> {
        let _span = tracing::debug_span!("encode_images", shard = shard.shard).entered();
        let Some(encoder) = &self.encoder else {
            return Ok(());
        };
        if shard.items.is_empty() {
            return Ok(());
        }
        let crops: Option<Vec<Arc<RgbImage>>> = shard
            .items
            .images_mut()
            .iter_mut()
            .map(|image| image.crop.take())
            .collect();
        let crops = crops.ok_or_else(|| StageError::new("an image has no crop"))?;
        let (columns, failed) = self
            .run(encoder, &crops)
            .map_err(|e| StageError::new(format!("image encoder: {e}")))?;
        drop(crops);
        let failed = failed
            .into_iter()
            .map(|(row, reason)| (row, Stage::Encode, format!("image tower: {reason}")))
            .collect();
        shard.items.fail(failed)?;
        for (name, array) in self.columns.iter().map(EmbeddingColumn::name).zip(columns) {
            shard.items.add_column(&name, column(array))?;
        }
        Ok(())
    }

    /// The tower over `crops`, one panicking crop contained to itself: the columns of the
    /// crops that passed, and the (crop, reason) of those that did not.
    fn run(
        &self,
        encoder: &ImageEncoder,
        crops: &[Arc<RgbImage>],
    ) -> vemo_operators::Result<Passed<Vec<FixedSizeListArray>>> {
        let outcome = contained(crops, |batch| {
            let refs: Vec<&RgbImage> = batch.iter().map(|c| &**c).collect();
            encoder
                .encode_columns(&refs, self.batch_size)
                .map_err(vemo_operators::Error::from)
        })?;
        match outcome {
            Contained::Batch(columns) => Ok((columns, Vec::new())),
            Contained::Each(each) => {
                let (parts, failed) = passed(each);
                let dims: Vec<usize> = self.columns.iter().map(|c| c.dim).collect();
                Ok((concat_rows(&parts, &dims)?, failed))
            }
        }
    }
}

/// EncodeImages: the image columns of each shard.
pub trait EncodeImages<'scope> {
    fn encode_images(self, stage: ImageStage) -> Shards<'scope>;
}

impl<'scope> EncodeImages<'scope> for Shards<'scope> {
    fn encode_images(self, stage: ImageStage) -> Shards<'scope> {
        each_shard(self, "EncodeImages", stage.threads.clone(), move |shard| {
            stage.encode(shard)
        })
    }
}
