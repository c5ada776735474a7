//! EncodeImages: the image tower (EfficientNet-Lite0 + ConSE + exit heads, or CLIP's vision
//! tower) with several exits.
//!
//! EfficientNet-Lite0: the last exit (stage 7, the full classifier) embeds an image into the
//! caption space through its aligned head (`vemo train align`), which reads the unit 1280-d
//! pooled feature and the ConSE embedding of the classifier's output (ConSE alone where the
//! bundle has no such head); it also yields the pooled feature for image-to-image search. A
//! lower exit pools its stage's output and maps it into the caption space with its trained
//! exit head. Only the stages up to the deepest requested exit run.
//!
//! CLIP: exit L takes the class token after L vision layers through the checkpoint's
//! `post_layernorm` and `visual_projection` into the space shared with CLIP's text tower
//! (through a trained head where the bundle has one); no feature column. Only the layers up to
//! the deepest requested exit run.

use std::sync::Arc;

use arrow_array::FixedSizeListArray;
use candle_core::{DType, Device, Tensor};
use candle_nn::Linear;

use super::clip::ClipModel;
use super::clip_towers::{check_exits, shared_model};
use super::columns::ColumnBuffers;
use super::conse::Conse;
use super::efficientnet::{EfficientNetLite, ImageOutputs, STAGES};
use super::exit_heads::project;
use crate::bundle::{Bundle, ImageArchitecture, ImageTowerSpec};
use crate::device::Precision;
use crate::pixels::PixelNorm;
use crate::{Error, Result};
use vemo_schemas::{EmbeddingColumn, Tower};

/// What the image tower gives for a batch.
#[derive(Debug, Default)]
pub struct ImageEmbeddings {
    /// `[exit][image]` -> unit vector in the caption space, in the encoder's exit order.
    pub joint: Vec<Vec<Vec<f32>>>,
    /// `[image]` -> unit 1280-d pooled feature, when the last exit ran.
    pub features: Option<Vec<Vec<f32>>>,
}

/// The network of an image tower.
enum Backbone {
    /// EfficientNet-Lite0 and the ConSE table its classifier output is embedded with.
    EfficientNet { net: EfficientNetLite, conse: Conse },
    /// A CLIP model (its vision tower runs; the text tower may be shared with the text encoder).
    Clip(Arc<ClipModel>),
}

/// The image tower of a bundle, loaded for the exits a job asked for.
pub struct ImageEncoder {
    backbone: Backbone,
    exits: Vec<usize>,
    heads: Vec<Option<Linear>>,
    norm: PixelNorm,
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
        Self::load_in(bundle, exits, device, Precision::Auto)
    }

    /// [`Self::load`], a CLIP tower in `precision` (see [`crate::device`]); EfficientNet-Lite0
    /// and the heads stay f32.
    pub fn load_in(
        bundle: &Bundle,
        exits: &[usize],
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
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
            .map(|&exit| {
                let head = trained.get(Tower::Image, exit).cloned();
                match (spec.architecture, head) {
                    // CLIP: every exit is in the joint space already, a head is optional.
                    (ImageArchitecture::Clip, head) => Ok(head),
                    // EfficientNet: the last stage falls back to ConSE alone, a lower one must
                    // have a head.
                    (ImageArchitecture::EfficientNetLite0, head) if exit == STAGES => Ok(head),
                    (ImageArchitecture::EfficientNetLite0, None) => Err(fail(format!(
                        "image exit {exit} has no trained exit head; run `vemo train exits` first"
                    ))),
                    (ImageArchitecture::EfficientNetLite0, head) => Ok(head),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let backbone = match spec.architecture {
            ImageArchitecture::Clip => {
                Self::load_clip(bundle, spec, &exits, device, precision.dtype_on(device))?
            }
            ImageArchitecture::EfficientNetLite0 => {
                let conse = bundle.conse()?;
                Backbone::EfficientNet {
                    net: EfficientNetLite::from_bundle(bundle, device)?,
                    conse: Conse::load(
                        &bundle.file(&conse.classes),
                        conse.top_k,
                        conse.temperature,
                        device,
                    )?,
                }
            }
        };
        Ok(Self {
            backbone,
            exits,
            heads,
            norm: spec.pixel_norm(),
            resize: spec.resize as u32,
            input_size: spec.input_size as u32,
            device: device.clone(),
        })
    }

    fn load_clip(
        bundle: &Bundle,
        spec: &ImageTowerSpec,
        exits: &[usize],
        device: &Device,
        dtype: DType,
    ) -> Result<Backbone> {
        let config = spec.config.as_deref().ok_or_else(|| Error::Bundle {
            path: bundle.root.display().to_string(),
            reason: "a clip image tower needs `config`".into(),
        })?;
        let model = shared_model(bundle, config, &spec.weights, device, dtype)?;
        let cfg = &model.config().vision_config;
        check_exits(bundle, Tower::Image, exits, cfg.num_hidden_layers)?;
        if spec.input_size != cfg.image_size {
            return Err(Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: format!(
                    "[image] input_size {} is not the checkpoint's image_size {}",
                    spec.input_size, cfg.image_size
                ),
            });
        }
        Ok(Backbone::Clip(model))
    }

    /// This encoder with its last exit embedded by ConSE alone, its aligned head (if any)
    /// dropped: the comparison `vemo eval retrieval` prints as `conse_e7`.
    pub fn with_conse_last_exit(mut self) -> Self {
        if matches!(self.backbone, Backbone::EfficientNet { .. }) {
            for (exit, head) in self.exits.iter().zip(self.heads.iter_mut()) {
                if *exit == STAGES {
                    *head = None;
                }
            }
        }
        self
    }

    /// The exits this encoder produces, in output order.
    pub fn exits(&self) -> &[usize] {
        &self.exits
    }

    /// Whether the 1280-d pooled feature comes out (EfficientNet-Lite0 when the last exit
    /// runs; never for CLIP).
    pub fn has_features(&self) -> bool {
        matches!(self.backbone, Backbone::EfficientNet { .. }) && self.exits.contains(&STAGES)
    }

    /// (resize, crop) of the input the tower expects.
    pub fn input_geometry(&self) -> (u32, u32) {
        (self.resize, self.input_size)
    }

    /// Width of the caption-space embeddings.
    pub fn dim(&self) -> Result<usize> {
        match &self.backbone {
            Backbone::EfficientNet { conse, .. } => conse.dim(),
            Backbone::Clip(clip) => Ok(clip.config().projection_dim),
        }
    }

    /// The `items` columns this encoder fills, in the order [`Self::encode`] returns them:
    /// one joint-space column per exit, then the feature column when the last exit runs.
    pub fn columns(&self) -> Result<Vec<EmbeddingColumn>> {
        let dim = self.dim()?;
        let mut columns: Vec<EmbeddingColumn> = self
            .exits
            .iter()
            .map(|&exit| EmbeddingColumn::joint(Tower::Image, exit, dim))
            .collect();
        if let (true, Backbone::EfficientNet { net, .. }) = (self.has_features(), &self.backbone) {
            columns.push(EmbeddingColumn {
                feature: true,
                ..EmbeddingColumn::joint(Tower::Image, STAGES, net.feature_dim()?)
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
            data.extend(self.norm.apply(crop));
        }
        Ok(Tensor::from_vec(
            data,
            (crops.len(), 3, side, side),
            &self.device,
        )?)
    }

    /// EfficientNet-Lite0's net and ConSE table, or a bundle error for a CLIP tower.
    fn efficientnet(&self) -> Result<(&EfficientNetLite, &Conse)> {
        match &self.backbone {
            Backbone::EfficientNet { net, conse } => Ok((net, conse)),
            Backbone::Clip(_) => Err(Error::Bundle {
                path: "image tower".into(),
                reason: "a CLIP image tower has no EfficientNet stages or ConSE table".into(),
            }),
        }
    }

    /// EfficientNet-Lite0 only: runs the backbone for `stages`: the pooled stage outputs below
    /// the last stage (in the order asked) and, if the last stage is asked for, the classifier
    /// outputs.
    pub fn backbone(
        &self,
        crops: &[&image::RgbImage],
        stages: &[usize],
    ) -> Result<(Vec<Tensor>, Option<ImageOutputs>)> {
        let (net, _) = self.efficientnet()?;
        Ok(net.forward_exits(&self.batch_tensor(crops)?, stages)?)
    }

    /// EfficientNet-Lite0 only: the ConSE embedding of classifier logits.
    pub fn conse(&self, logits: &Tensor) -> Result<Tensor> {
        self.efficientnet()?.1.embed(logits)
    }

    /// EfficientNet-Lite0 only: what the last exit's aligned head reads, the unit pooled
    /// feature and the ConSE embedding side by side, (batch, 1280 + dim).
    pub fn last_exit_input(&self, full: &ImageOutputs) -> Result<Tensor> {
        Ok(Tensor::cat(
            &[
                super::l2_normalize(&full.pooled)?,
                self.conse(&full.logits)?,
            ],
            1,
        )?)
    }

    /// EfficientNet-Lite0 only: the last exit's embedding in the caption space, through its
    /// aligned head when this encoder has one, else by ConSE alone.
    pub fn last_exit_embedding(&self, full: &ImageOutputs) -> Result<Tensor> {
        let head = self
            .exits
            .iter()
            .zip(&self.heads)
            .find_map(|(exit, head)| head.as_ref().filter(|_| *exit == STAGES));
        match head {
            Some(head) => project(head, &self.last_exit_input(full)?),
            None => self.conse(&full.logits),
        }
    }

    /// Encodes one batch of crops at every exit.
    pub fn encode(&self, crops: &[&image::RgbImage]) -> Result<ImageEmbeddings> {
        let mut outputs = self.forward(crops)?.into_iter();
        let joint = outputs
            .by_ref()
            .take(self.exits.len())
            .map(|exit| Ok(exit.to_vec2::<f32>()?))
            .collect::<Result<Vec<_>>>()?;
        let features = outputs.next().map(|f| f.to_vec2::<f32>()).transpose()?;
        Ok(ImageEmbeddings { joint, features })
    }

    /// Encodes any number of crops in batches of `batch_size`, into the columns of
    /// [`Self::columns`], in its order: each an embedding column with a row per crop.
    pub fn encode_columns(
        &self,
        crops: &[&image::RgbImage],
        batch_size: usize,
    ) -> Result<Vec<FixedSizeListArray>> {
        let dims = self.columns()?.iter().map(|c| c.dim).collect();
        let mut out = ColumnBuffers::new(dims, crops.len());
        let size = batch_size.max(1);
        for (n, chunk) in crops.chunks(size).enumerate() {
            let at: Vec<usize> = (n * size..n * size + chunk.len()).collect();
            out.put(&self.forward(chunk)?, &at)?;
        }
        out.into_arrays()
    }

    /// One batch through the tower: a `(crop, dim)` tensor per exit, then the pooled feature
    /// when it comes out ([`Self::has_features`]).
    fn forward(&self, crops: &[&image::RgbImage]) -> Result<Vec<Tensor>> {
        match &self.backbone {
            Backbone::EfficientNet { .. } => self.forward_efficientnet(crops),
            Backbone::Clip(clip) => {
                let pixels = self.batch_tensor(crops)?;
                let projected = clip.encode_image_exits(&pixels, &self.exits)?;
                projected
                    .iter()
                    .zip(&self.heads)
                    .map(|(p, head)| {
                        let unit = super::l2_normalize(p)?;
                        match head {
                            Some(head) => project(head, &unit),
                            None => Ok(unit),
                        }
                    })
                    .collect()
            }
        }
    }

    fn forward_efficientnet(&self, crops: &[&image::RgbImage]) -> Result<Vec<Tensor>> {
        let (pooled, full) = self.backbone(crops, &self.exits)?;
        let mut lower = pooled.into_iter();
        let mut out = Vec::with_capacity(self.exits.len() + 1);
        for (exit, head) in self.exits.iter().zip(&self.heads) {
            let joint = match (head, &full) {
                (_, Some(full)) if *exit == STAGES => self.last_exit_embedding(full)?,
                (Some(head), _) => {
                    let stage = lower.next().ok_or_else(|| Error::Bundle {
                        path: "image tower".into(),
                        reason: format!("no pooled output for exit {exit}"),
                    })?;
                    project(head, &stage)?
                }
                (None, _) => {
                    return Err(Error::Bundle {
                        path: "image tower".into(),
                        reason: format!("exit {exit} has neither a head nor the classifier"),
                    });
                }
            };
            out.push(joint);
        }
        if let Some(full) = full {
            out.push(super::l2_normalize(&full.pooled)?);
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
