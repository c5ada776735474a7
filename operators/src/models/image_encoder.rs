//! EncodeImages: the image tower (EfficientNet-Lite0 + ConSE + exit heads) with several exits.
//!
//! The last exit (stage 7, the full classifier) embeds an image by ConSE into the caption
//! space and also yields the 1280-d pooled feature for image-to-image search; a lower exit
//! pools its stage's output and maps it into the caption space with its trained exit head.
//! Only the stages up to the deepest requested exit run.

use candle_core::{Device, Tensor};
use candle_nn::Linear;

use super::conse::Conse;
use super::efficientnet::{EfficientNetLite, ImageOutputs, STAGES};
use super::exit_heads::project;
use crate::bundle::Bundle;
use crate::images::normalize_crop;
use crate::{Error, Result};
use vemo_schemas::EmbeddingColumn;

/// The tower's name in column names and exit heads.
pub const TOWER: &str = "image";

/// What the image tower gives for a batch.
#[derive(Debug, Default)]
pub struct ImageEmbeddings {
    /// `[exit][image]` -> unit vector in the caption space, in the encoder's exit order.
    pub joint: Vec<Vec<Vec<f32>>>,
    /// `[image]` -> unit 1280-d pooled feature, when the last exit ran.
    pub features: Option<Vec<Vec<f32>>>,
}

/// The image tower of a bundle, loaded for the exits a job asked for.
pub struct ImageEncoder {
    net: EfficientNetLite,
    conse: Conse,
    exits: Vec<usize>,
    heads: Vec<Option<Linear>>,
    resize: u32,
    input_size: u32,
    device: Device,
}

impl std::fmt::Debug for ImageEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageEncoder")
            .field("exits", &self.exits)
            .finish()
    }
}

impl ImageEncoder {
    /// Loads the image tower of `bundle` for `exits` (empty: the bundle's default exit). A
    /// lower exit without a trained head is a bundle error that says how to train one.
    pub fn load(bundle: &Bundle, exits: &[usize], device: &Device) -> Result<Self> {
        let spec = bundle.image()?;
        let exits = if exits.is_empty() {
            vec![spec.default_exit]
        } else {
            exits.to_vec()
        };
        let fail = |reason: String| Error::Bundle {
            path: bundle.root.display().to_string(),
            reason,
        };
        if let Some(bad) = exits.iter().find(|e| !spec.exits.contains(e)) {
            return Err(fail(format!(
                "image exit {bad} not offered; the bundle has {:?}",
                spec.exits
            )));
        }
        let trained = bundle.exit_heads(device)?;
        let heads = exits
            .iter()
            .map(|&exit| match (exit, trained.get("image", exit)) {
                (STAGES, _) => Ok(None),
                (_, Some(head)) => Ok(Some(head.clone())),
                (_, None) => Err(fail(format!(
                    "image exit {exit} has no trained exit head; run `vemo train exits` first"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            net: EfficientNetLite::from_bundle(bundle, device)?,
            conse: Conse::load(
                &bundle.file(&spec.conse.classes),
                spec.conse.top_k,
                spec.conse.temperature,
                device,
            )?,
            exits,
            heads,
            resize: spec.resize as u32,
            input_size: spec.input_size as u32,
            device: device.clone(),
        })
    }

    /// The exits this encoder produces, in output order.
    pub fn exits(&self) -> &[usize] {
        &self.exits
    }

    /// Whether the 1280-d pooled feature comes out (the last exit runs).
    pub fn has_features(&self) -> bool {
        self.exits.contains(&STAGES)
    }

    /// (resize, crop) of the input the tower expects.
    pub fn input_geometry(&self) -> (u32, u32) {
        (self.resize, self.input_size)
    }

    /// Width of the caption-space embeddings.
    pub fn dim(&self) -> Result<usize> {
        self.conse.dim()
    }

    /// The `items` columns this encoder fills, in the order [`Self::encode`] returns them:
    /// one joint-space column per exit, then the feature column when the last exit runs.
    pub fn columns(&self) -> Result<Vec<EmbeddingColumn>> {
        let dim = self.dim()?;
        let mut columns: Vec<EmbeddingColumn> = self
            .exits
            .iter()
            .map(|&exit| EmbeddingColumn::joint(TOWER, exit, dim))
            .collect();
        if self.has_features() {
            columns.push(EmbeddingColumn {
                feature: true,
                ..EmbeddingColumn::joint(TOWER, STAGES, self.net.feature_dim()?)
            });
        }
        Ok(columns)
    }

    /// Stacks crops into a (batch, 3, side, side) normalised tensor.
    pub fn batch_tensor(&self, crops: &[&image::RgbImage]) -> Result<Tensor> {
        let side = self.input_size as usize;
        let mut data = Vec::with_capacity(crops.len() * 3 * side * side);
        for crop in crops {
            if (crop.width(), crop.height()) != (self.input_size, self.input_size) {
                return Err(Error::Bundle {
                    path: "image tower".into(),
                    reason: format!("a crop is {}x{}, not {side}", crop.width(), crop.height()),
                });
            }
            data.extend(normalize_crop(crop));
        }
        Ok(Tensor::from_vec(
            data,
            (crops.len(), 3, side, side),
            &self.device,
        )?)
    }

    /// Runs the backbone for `stages`: the pooled stage outputs below the last stage (in the
    /// order asked) and, if the last stage is asked for, the classifier outputs.
    pub fn backbone(
        &self,
        crops: &[&image::RgbImage],
        stages: &[usize],
    ) -> Result<(Vec<Tensor>, Option<ImageOutputs>)> {
        Ok(self.net.forward_exits(&self.batch_tensor(crops)?, stages)?)
    }

    /// The ConSE embedding of classifier logits.
    pub fn conse(&self, logits: &Tensor) -> Result<Tensor> {
        self.conse.embed(logits)
    }

    /// Encodes one batch of crops at every exit.
    pub fn encode(&self, crops: &[&image::RgbImage]) -> Result<ImageEmbeddings> {
        let (pooled, full) = self.backbone(crops, &self.exits)?;
        let mut lower = pooled.into_iter();
        let mut out = ImageEmbeddings::default();
        for (exit, head) in self.exits.iter().zip(&self.heads) {
            let joint = match (head, &full) {
                (Some(head), _) => {
                    let stage = lower.next().ok_or_else(|| Error::Bundle {
                        path: "image tower".into(),
                        reason: format!("no pooled output for exit {exit}"),
                    })?;
                    project(head, &stage)?
                }
                (None, Some(full)) => self.conse.embed(&full.logits)?,
                (None, None) => {
                    return Err(Error::Bundle {
                        path: "image tower".into(),
                        reason: format!("exit {exit} has neither a head nor the classifier"),
                    });
                }
            };
            out.joint.push(joint.to_vec2::<f32>()?);
        }
        if let Some(full) = full {
            out.features = Some(super::l2_normalize(&full.pooled)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// Encodes any number of crops in batches of `batch_size`.
    pub fn encode_all(
        &self,
        crops: &[&image::RgbImage],
        batch_size: usize,
    ) -> Result<ImageEmbeddings> {
        let mut out = ImageEmbeddings {
            joint: vec![Vec::new(); self.exits.len()],
            features: self.has_features().then(Vec::new),
        };
        for chunk in crops.chunks(batch_size.max(1)) {
            let batch = self.encode(chunk)?;
            for (all, part) in out.joint.iter_mut().zip(batch.joint) {
                all.extend(part);
            }
            if let (Some(all), Some(part)) = (out.features.as_mut(), batch.features) {
                all.extend(part);
            }
        }
        Ok(out)
    }
}
