//! EfficientNet-Lite0, the ImageNet classifier behind vemo-mini's image tower.
//!
//! A port of `EfficientNet` from the package efficientnet-lite-pytorch 0.1.0 (model.py), with
//! its state-dict names (`_conv_stem`, `_blocks.N._expand_conv`, ...): MBConv blocks without
//! squeeze-excite, ReLU6, TensorFlow "same" padding (asymmetric on stride 2), batch norm in
//! eval mode (eps 1e-3, folded into the convolutions at load), a 1280-d head and 1000 classes.
//! Block kernel sizes and widths come from the weights; strides from the table below.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// Batch-norm epsilon of the EfficientNet family.
const BN_EPS: f64 = 1e-3;
/// Stride of each of Lite0's 16 blocks (stages: 1, 2, 2, 3, 3, 4, 1 blocks; the first block of
/// stages 2, 3, 4 and 6 halves the resolution).
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];
/// Blocks run by the end of each of the 7 stages (stage N ends after `STAGE_ENDS[N - 1]` blocks).
const STAGE_ENDS: [usize; 7] = [1, 3, 5, 8, 11, 15, 16];
/// The number of stages; exit [`STAGES`] is the full network (head and classifier).
pub const STAGES: usize = 7;

/// Batch norm in eval mode as a per-channel scale and shift (length C), folded into the
/// preceding convolution at load time.
struct BatchNorm {
    scale: Tensor,
    shift: Tensor,
}

impl BatchNorm {
    fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        let mean = vb.get(channels, "running_mean")?;
        let var = vb.get(channels, "running_var")?;
        let scale = weight.div(&(var + BN_EPS)?.sqrt()?)?;
        let shift = bias.sub(&mean.mul(&scale)?)?;
        Ok(Self { scale, shift })
    }
}

/// A convolution with TensorFlow "same" padding; a following batch norm folds into its
/// weights and a per-channel bias (one multiply-add less per activation), and a following
/// ReLU6 into its output. On CPU, every convolution runs on `vemo_kernels` (candle runs a
/// grouped convolution as one convolution per channel, and its others as unfused passes).
struct SameConv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    groups: usize,
    relu6: bool,
}

impl SameConv {
    fn load(vb: VarBuilder, name: &str, stride: usize, depthwise: bool) -> Result<Self> {
        let weight = vb.get_unchecked_dtype(&format!("{name}.weight"), DType::F32)?;
        let groups = if depthwise { weight.dim(0)? } else { 1 };
        Ok(Self {
            weight,
            bias: None,
            stride,
            groups,
            relu6: false,
        })
    }

    /// Loads the convolution `name`, folds the batch norm `bn` into it and, with `relu6`,
    /// the activation after it.
    fn load_with_bn(
        vb: VarBuilder,
        name: &str,
        bn: &str,
        stride: usize,
        depthwise: bool,
        relu6: bool,
    ) -> Result<Self> {
        let conv = Self::load(vb.clone(), name, stride, depthwise)?;
        let bn = BatchNorm::load(vb.pp(bn), conv.out_channels()?)?;
        let out = conv.out_channels()?;
        Ok(Self {
            weight: conv
                .weight
                .broadcast_mul(&bn.scale.reshape((out, 1, 1, 1))?)?,
            bias: Some(bn.shift),
            relu6,
            ..conv
        })
    }

    fn out_channels(&self) -> Result<usize> {
        self.weight.dim(0)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let clamp = self.relu6.then_some((0f32, 6f32));
        let (k, out) = (self.weight.dim(D::Minus1)?, self.out_channels()?);
        let (_, c, h, w) = x.dims4()?;
        let pad = |size: usize| {
            let out = size.div_ceil(self.stride);
            ((out - 1) * self.stride + k).saturating_sub(size)
        };
        let (ph, pw) = (pad(h), pad(w));
        let cpu = x.device().is_cpu() && x.dtype() == DType::F32;
        if let (true, Some(bias)) = (cpu, &self.bias) {
            if self.groups > 1 && self.groups == c {
                return vemo_kernels::depthwise_conv2d(x, &self.weight, bias, self.stride, clamp);
            }
            if self.groups == 1 {
                let activation = match clamp {
                    Some((lo, hi)) => vemo_kernels::Activation::Clamp { lo, hi },
                    None => vemo_kernels::Activation::Identity,
                };
                let pads = [ph / 2, pw / 2, ph - ph / 2, pw - pw / 2];
                let strides = (self.stride, self.stride);
                return vemo_kernels::conv2d(
                    x,
                    &self.weight,
                    Some(bias),
                    strides,
                    pads,
                    activation,
                );
            }
        }
        let x = if ph + pw > 0 {
            x.pad_with_zeros(2, ph / 2, ph - ph / 2)?
                .pad_with_zeros(3, pw / 2, pw - pw / 2)?
        } else {
            x.clone()
        };
        let mut y = x.conv2d(&self.weight, 0, self.stride, 1, self.groups)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&bias.reshape((1, out, 1, 1))?)?;
        }
        if self.relu6 { relu6(&y) } else { Ok(y) }
    }
}

fn relu6(x: &Tensor) -> Result<Tensor> {
    x.clamp(0f32, 6f32)
}

/// A mobile inverted bottleneck block (no squeeze-excite in the Lite variants), its batch
/// norms folded into the convolutions.
struct MbConv {
    expand: Option<SameConv>,
    depthwise: SameConv,
    project: SameConv,
    residual: bool,
}

impl MbConv {
    fn load(vb: VarBuilder, stride: usize) -> Result<Self> {
        let expand = if vb.contains_tensor("_expand_conv.weight") {
            Some(SameConv::load_with_bn(
                vb.clone(),
                "_expand_conv",
                "_bn0",
                1,
                false,
                true,
            )?)
        } else {
            None
        };
        let depthwise =
            SameConv::load_with_bn(vb.clone(), "_depthwise_conv", "_bn1", stride, true, true)?;
        let project = SameConv::load_with_bn(vb.clone(), "_project_conv", "_bn2", 1, false, false)?;
        let inputs = match &expand {
            Some(conv) => conv.weight.dim(1)?,
            None => depthwise.out_channels()?,
        };
        let residual = stride == 1 && inputs == project.out_channels()?;
        Ok(Self {
            expand,
            depthwise,
            project,
            residual,
        })
    }

    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        if let Some(conv) = &self.expand {
            x = conv.forward(&x)?;
        }
        x = self.depthwise.forward(&x)?;
        x = self.project.forward(&x)?;
        match self.residual {
            true if x.device().is_cpu() && x.dtype() == DType::F32 => {
                vemo_kernels::binary_same_shape(&x, input, vemo_kernels::Binary::Add)
            }
            true => x + input,
            false => Ok(x),
        }
    }
}

/// EfficientNet-Lite0 in eval mode.
pub struct EfficientNetLite {
    stem: SameConv,
    blocks: Vec<MbConv>,
    head: SameConv,
    fc: Linear,
}

/// What one forward pass gives: the pooled 1280-d features and the 1000 class logits.
#[derive(Debug)]
pub struct ImageOutputs {
    /// (batch, 1280) global-average-pooled head features.
    pub pooled: Tensor,
    /// (batch, 1000) ImageNet logits.
    pub logits: Tensor,
}

impl EfficientNetLite {
    /// Loads the image tower of `bundle`.
    pub fn from_bundle(
        bundle: &crate::bundle::Bundle,
        device: &candle_core::Device,
    ) -> crate::Result<Self> {
        let spec = bundle
            .manifest
            .image
            .as_ref()
            .ok_or_else(|| crate::Error::Bundle {
                path: bundle.root.display().to_string(),
                reason: "the bundle has no image tower".into(),
            })?;
        let path = bundle.file(&spec.weights);
        let weights = std::fs::read(&path).map_err(|e| crate::Error::Io {
            path: path.display().to_string(),
            cause: e,
        })?;
        Ok(Self::load(VarBuilder::from_buffered_safetensors(
            weights,
            DType::F32,
            device,
        )?)?)
    }

    /// Loads Lite0 from a state dict with the reference's names.
    pub fn load(vb: VarBuilder) -> Result<Self> {
        let stem = SameConv::load_with_bn(vb.clone(), "_conv_stem", "_bn0", 2, false, true)?;
        let blocks = STRIDES
            .iter()
            .enumerate()
            .map(|(i, &s)| MbConv::load(vb.pp(format!("_blocks.{i}")), s))
            .collect::<Result<Vec<_>>>()?;
        let head = SameConv::load_with_bn(vb.clone(), "_conv_head", "_bn1", 1, false, true)?;
        let fc = linear(head.out_channels()?, 1000, vb.pp("_fc"))?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
        })
    }

    /// `x`: (batch, 3, 224, 224), normalised as (pixel - 127) / 128.
    pub fn forward(&self, x: &Tensor) -> Result<ImageOutputs> {
        let (_, outputs) = self.forward_exits(x, &[STAGES])?;
        outputs.ok_or_else(|| candle_core::Error::Msg("the full network did not run".into()))
    }

    /// Runs only the stages up to the deepest of `stages` (1..=7). Returns, for each requested
    /// stage below 7, the stage output global-average-pooled to (batch, channels), in the order
    /// asked; and, when stage 7 is asked for, the head's pooled features and the logits.
    pub fn forward_exits(
        &self,
        x: &Tensor,
        stages: &[usize],
    ) -> Result<(Vec<Tensor>, Option<ImageOutputs>)> {
        let deepest = stages.iter().copied().max().unwrap_or(STAGES);
        if deepest == 0 || deepest > STAGES {
            candle_core::bail!("image stage {deepest} out of range 1..={STAGES}");
        }
        let mut x = self.stem.forward(x)?;
        let mut pooled_stages = vec![None; stages.len()];
        for (stage, &end) in STAGE_ENDS.iter().enumerate().take(deepest) {
            let start = if stage == 0 { 0 } else { STAGE_ENDS[stage - 1] };
            for block in &self.blocks[start..end] {
                x = block.forward(&x)?;
            }
            for (slot, _) in stages.iter().enumerate().filter(|(_, s)| **s == stage + 1) {
                if stage + 1 < STAGES {
                    pooled_stages[slot] = Some(x.mean(D::Minus1)?.mean(D::Minus1)?);
                }
            }
        }
        let full = if deepest == STAGES {
            let x = self.head.forward(&x)?;
            let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
            let logits = self.fc.forward(&pooled)?;
            Some(ImageOutputs { pooled, logits })
        } else {
            None
        };
        Ok((pooled_stages.into_iter().flatten().collect(), full))
    }

    /// Width of the pooled head feature (1280).
    pub fn feature_dim(&self) -> Result<usize> {
        self.head.out_channels()
    }

    /// Channels of the output of stage `stage` (1..=6).
    pub fn stage_channels(&self, stage: usize) -> Result<usize> {
        match stage {
            1..STAGES => self.blocks[STAGE_ENDS[stage - 1] - 1]
                .project
                .out_channels(),
            _ => candle_core::bail!("stage {stage} has no pooled exit (1..{STAGES})"),
        }
    }
}
