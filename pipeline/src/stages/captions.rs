//! EncodeCaptions: every caption embedded at every text exit, the embeddings written straight
//! into the shard's caption columns (and, with the entity task, the caption's entities).
//!
//! A caption over the byte limit is an `errors` row; an item without a caption keeps null
//! caption columns (its image is still indexed), unless every task of the job reads the
//! caption: then it is an `errors` row.

use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, StringArray};
use vemo_models::models::text_encoder::TextEncoder;
use vemo_operators::batches::{entity_list, spread_embeddings};
use vemo_operators::limits::InputLimits;
use vemo_schemas::{COL_CAPTION, COL_ENTITIES, Entity, Stage, Tower, embedding_column};

use super::{Passed, ShardBatch, Shards, StageError, column, concat_rows, each_shard, passed};
use crate::contain::{Contained, contained};

/// A worker's caption encoding.
pub struct CaptionStage {
    pub encoder: Arc<TextEncoder>,
    /// Captions per pass of the tower.
    pub batch_size: usize,
    /// What one caption may cost.
    pub limits: InputLimits,
    /// Whether the entity task runs (the encoder then carries the NER branch).
    pub entities: bool,
    /// Whether a task of the job reads the image (an item without a caption is then indexed).
    pub image_tasks: bool,
    /// Make an item without a caption an `errors` row even when images are indexed (an output
    /// whose caption columns are not nullable, written by an older vemo).
    pub captionless_as_errors: bool,
    /// The threads model passes run on.
    pub threads: super::ModelThreads,
}

/// What the text tower gave for the captions that passed: a column per exit, their entities.
type Encoded = (Vec<FixedSizeListArray>, Vec<Vec<Entity>>);

impl CaptionStage {
    fn encode(&self, shard: &mut ShardBatch) -> Result<(), StageError> {
        let _span = tracing::debug_span!("encode_captions", shard = shard.shard).entered();
        let refused = self.refused(shard)?;
        shard.items.fail(refused)?;
        let (mut present, captioned, outcome) = {
            let captions = shard.items.strings(COL_CAPTION)?;
            let present: Vec<bool> = (0..captions.len())
                .map(|i| has_caption(captions, i))
                .collect();
            let captioned: Vec<usize> = (0..present.len()).filter(|&i| present[i]).collect();
            let texts: Vec<&str> = captioned.iter().map(|&i| captions.value(i)).collect();
            shard.encoded = texts.len();
            (present, captioned, self.run(&texts))
        };
        let ((embeddings, entities), failed) =
            outcome.map_err(|e| StageError::new(format!("text encoder: {e}")))?;
        let failed: Vec<(usize, Stage, String)> = failed
            .into_iter()
            .map(|(i, reason)| (captioned[i], Stage::Encode, reason))
            .collect();
        for (row, _, _) in failed.iter().rev() {
            present.remove(*row);
        }
        shard.items.fail(failed)?;
        for (exit, embeddings) in self.encoder.exits().iter().zip(&embeddings) {
            let spread = spread_embeddings(embeddings, &present)?;
            let name = embedding_column(Tower::Text, *exit);
            shard.items.add_column(&name, column(spread))?;
        }
        if self.entities {
            // Items without a caption have none.
            let mut found = entities.into_iter();
            let per_row: Vec<Vec<Entity>> = present
                .iter()
                .map(|&here| match here {
                    true => found.next().unwrap_or_default(),
                    false => Vec::new(),
                })
                .collect();
            let refs: Vec<&[Entity]> = per_row.iter().map(Vec::as_slice).collect();
            shard.items.add_column(COL_ENTITIES, entity_list(&refs)?)?;
        }
        Ok(())
    }

    /// The rows whose caption is refused, with the reason.
    fn refused(&self, shard: &ShardBatch) -> vemo_operators::Result<Vec<(usize, Stage, String)>> {
        let captions = shard.items.strings(COL_CAPTION)?;
        let keep_captionless = self.image_tasks && !self.captionless_as_errors;
        let mut refused = Vec::new();
        for row in 0..captions.len() {
            let caption = match captions.is_valid(row) {
                true => captions.value(row),
                false => "",
            };
            let reason = match self.limits.check_caption(caption.len()) {
                Err(reason) => reason,
                Ok(()) if caption.trim().is_empty() && !keep_captionless => {
                    match self.captionless_as_errors {
                        true => "empty or missing caption: this output's caption columns were \
                                 written not nullable (by an older vemo); index into a new \
                                 output to keep items without captions"
                            .into(),
                        false => "empty or missing caption: every task of this job reads it".into(),
                    }
                }
                Ok(()) => continue,
            };
            refused.push((row, Stage::Caption, reason));
        }
        Ok(refused)
    }

    /// The tower over `texts`, one panicking caption contained to itself: the columns of the
    /// captions that passed, their entities, and the (caption, reason) of those that did not.
    fn run(&self, texts: &[&str]) -> vemo_operators::Result<Passed<Encoded>> {
        let outcome = contained(texts, |batch| {
            self.encoder
                .encode_columns(batch, self.batch_size)
                .map_err(vemo_operators::Error::from)
        })?;
        match outcome {
            Contained::Batch(encoded) => Ok((encoded, Vec::new())),
            Contained::Each(each) => {
                let (ok, failed) = passed(each);
                let (parts, found): (Vec<_>, Vec<_>) = ok.into_iter().unzip();
                let dims = vec![self.encoder.dim(); self.encoder.exits().len()];
                let entities = found.into_iter().flatten().collect();
                Ok(((concat_rows(&parts, &dims)?, entities), failed))
            }
        }
    }
}

/// EncodeCaptions: the caption columns of each shard.
pub trait EncodeCaptions<'scope> {
    fn encode_captions(self, stage: CaptionStage) -> Shards<'scope>;
}

impl<'scope> EncodeCaptions<'scope> for Shards<'scope> {
    fn encode_captions(self, stage: CaptionStage) -> Shards<'scope> {
        each_shard(
            self,
            "EncodeCaptions",
            stage.threads.clone(),
            move |shard| stage.encode(shard),
        )
    }
}

/// Whether row `i` has a caption to encode (not empty, not only white space).
fn has_caption(captions: &StringArray, i: usize) -> bool {
    captions.is_valid(i) && !captions.value(i).trim().is_empty()
}
