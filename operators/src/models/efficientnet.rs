//! EfficientNet-Lite0, the ImageNet classifier behind vemo-mini's image tower.
//!
//! A port of `EfficientNet` from the package efficientnet-lite-pytorch 0.1.0 (model.py), with
//! its state-dict names (`_conv_stem`, `_blocks.N._expand_conv`, ...): MBConv blocks without
//! squeeze-excite, ReLU6, TensorFlow "same" padding (asymmetric on stride 2), batch norm in
//! eval mode (eps 1e-3), a 1280-d head and 1000 classes. Block kernel sizes and widths come
//! from the weights; strides from the architecture table below.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

/// Batch-norm epsilon of the EfficientNet family.
const BN_EPS: f64 = 1e-3;
/// Stride of each of Lite0's 16 blocks (stages: 1, 2, 2, 3, 3, 4, 1 blocks; the first block of
/// stages 2, 3, 4 and 6 halves the resolution).
const STRIDES: [usize; 16] = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1];

/// Batch norm folded into a per-channel scale and shift, shaped (1, C, 1, 1).
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
        Ok(Self {
            scale: scale.reshape((1, channels, 1, 1))?,
            shift: shift.reshape((1, channels, 1, 1))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}

/// A bias-free convolution with TensorFlow "same" padding.
struct SameConv {
    weight: Tensor,
    stride: usize,
    groups: usize,
}

impl SameConv {
    fn load(vb: VarBuilder, name: &str, stride: usize, depthwise: bool) -> Result<Self> {
        let weight = vb.get_unchecked_dtype(&format!("{name}.weight"), DType::F32)?;
        let groups = if depthwise { weight.dim(0)? } else { 1 };
        Ok(Self {
            weight,
            stride,
            groups,
        })
    }

    fn out_channels(&self) -> Result<usize> {
        self.weight.dim(0)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.weight.dim(D::Minus1)?;
        let (_, _, h, w) = x.dims4()?;
        let pad = |size: usize| {
            let out = size.div_ceil(self.stride);
            ((out - 1) * self.stride + k).saturating_sub(size)
        };
        let (ph, pw) = (pad(h), pad(w));
        let x = if ph + pw > 0 {
            x.pad_with_zeros(2, ph / 2, ph - ph / 2)?
                .pad_with_zeros(3, pw / 2, pw - pw / 2)?
        } else {
            x.clone()
        };
        x.conv2d(&self.weight, 0, self.stride, 1, self.groups)
    }
}

fn relu6(x: &Tensor) -> Result<Tensor> {
    x.clamp(0f32, 6f32)
}

/// A mobile inverted bottleneck block (no squeeze-excite in the Lite variants).
struct MbConv {
    expand: Option<(SameConv, BatchNorm)>,
    depthwise: SameConv,
    bn1: BatchNorm,
    project: SameConv,
    bn2: BatchNorm,
    residual: bool,
}

impl MbConv {
    fn load(vb: VarBuilder, stride: usize) -> Result<Self> {
        let expand = if vb.contains_tensor("_expand_conv.weight") {
            let conv = SameConv::load(vb.clone(), "_expand_conv", 1, false)?;
            let bn = BatchNorm::load(vb.pp("_bn0"), conv.out_channels()?)?;
            Some((conv, bn))
        } else {
            None
        };
        let depthwise = SameConv::load(vb.clone(), "_depthwise_conv", stride, true)?;
        let bn1 = BatchNorm::load(vb.pp("_bn1"), depthwise.out_channels()?)?;
        let project = SameConv::load(vb.clone(), "_project_conv", 1, false)?;
        let bn2 = BatchNorm::load(vb.pp("_bn2"), project.out_channels()?)?;
        let inputs = match &expand {
            Some((conv, _)) => conv.weight.dim(1)?,
            None => depthwise.out_channels()?,
        };
        let residual = stride == 1 && inputs == project.out_channels()?;
        Ok(Self {
            expand,
            depthwise,
            bn1,
            project,
            bn2,
            residual,
        })
    }

    fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let mut x = input.clone();
        if let Some((conv, bn)) = &self.expand {
            x = relu6(&bn.forward(&conv.forward(&x)?)?)?;
        }
        x = relu6(&self.bn1.forward(&self.depthwise.forward(&x)?)?)?;
        x = self.bn2.forward(&self.project.forward(&x)?)?;
        if self.residual { x + input } else { Ok(x) }
    }
}

/// EfficientNet-Lite0 in eval mode.
pub struct EfficientNetLite {
    stem: SameConv,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    head: SameConv,
    bn1: BatchNorm,
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
        let stem = SameConv::load(vb.clone(), "_conv_stem", 2, false)?;
        let bn0 = BatchNorm::load(vb.pp("_bn0"), stem.out_channels()?)?;
        let blocks = STRIDES
            .iter()
            .enumerate()
            .map(|(i, &s)| MbConv::load(vb.pp(format!("_blocks.{i}")), s))
            .collect::<Result<Vec<_>>>()?;
        let head = SameConv::load(vb.clone(), "_conv_head", 1, false)?;
        let bn1 = BatchNorm::load(vb.pp("_bn1"), head.out_channels()?)?;
        let fc = linear(head.out_channels()?, 1000, vb.pp("_fc"))?;
        Ok(Self {
            stem,
            bn0,
            blocks,
            head,
            bn1,
            fc,
        })
    }

    /// `x`: (batch, 3, 224, 224), normalised as (pixel - 127) / 128.
    pub fn forward(&self, x: &Tensor) -> Result<ImageOutputs> {
        let mut x = relu6(&self.bn0.forward(&self.stem.forward(x)?)?)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let x = relu6(&self.bn1.forward(&self.head.forward(&x)?)?)?;
        let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
        let logits = self.fc.forward(&pooled)?;
        Ok(ImageOutputs { pooled, logits })
    }
}
