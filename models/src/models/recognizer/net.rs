//! The english_g2 network: a VGG-style CNN, two BiLSTM blocks and a per-step classifier.
//!
//! Ports `Model` of easyocr 1.7.2 (`easyocr/model/vgg_model.py`, `model/modules.py`:
//! `VGG_FeatureExtractor`, `BidirectionalLSTM`) with its state-dict names (the checkpoint's
//! `module.` prefix stripped). Eval mode: the two batch norms (eps 1e-5) fold into the
//! convolutions before them at load.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::models::lstm::BiLstm;

/// Batch-norm epsilon of `nn.BatchNorm2d`'s default.
const BN_EPS: f64 = 1e-5;

/// What follows a convolution in `ConvNet`.
#[derive(Clone, Copy)]
enum Pool {
    None,
    /// `MaxPool2d(2, 2)`.
    Both,
    /// `MaxPool2d((2, 1), (2, 1))`: halves the height only.
    Height,
}

/// `ConvNet`'s convolutions: index in the `nn.Sequential`, the batch norm's index when one
/// follows, padding, and the pooling after the ReLU.
const CONVS: [(usize, Option<usize>, usize, Pool); 7] = [
    (0, None, 1, Pool::Both),
    (3, None, 1, Pool::Both),
    (6, None, 1, Pool::None),
    (8, None, 1, Pool::Height),
    (11, Some(12), 1, Pool::None),
    (14, Some(15), 1, Pool::Height),
    (18, None, 0, Pool::None),
];

/// A convolution with a bias (its batch norm folded in), then ReLU and an optional pooling.
struct ConvReluPool {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    pool: Pool,
}

impl ConvReluPool {
    fn load(
        vb: &VarBuilder,
        conv: usize,
        bn: Option<usize>,
        padding: usize,
        pool: Pool,
    ) -> Result<Self> {
        let weight = vb.get_unchecked_dtype(&format!("{conv}.weight"), DType::F32)?;
        let out = weight.dim(0)?;
        let Some(bn) = bn else {
            let bias = vb.get(out, &format!("{conv}.bias"))?;
            return Ok(Self {
                weight,
                bias,
                padding,
                pool,
            });
        };
        let bn = vb.pp(bn.to_string());
        let scale = bn
            .get(out, "weight")?
            .div(&(bn.get(out, "running_var")? + BN_EPS)?.sqrt()?)?;
        let bias = bn
            .get(out, "bias")?
            .sub(&bn.get(out, "running_mean")?.mul(&scale)?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
        Ok(Self {
            weight,
            bias,
            padding,
            pool,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.weight.dim(0)?;
        let y = x
            .conv2d(&self.weight, self.padding, 1, 1, 1)?
            .broadcast_add(&self.bias.reshape((1, out, 1, 1))?)?
            .relu()?;
        match self.pool {
            Pool::None => Ok(y),
            Pool::Both => y.max_pool2d_with_stride(2, 2),
            Pool::Height => y.max_pool2d_with_stride((2, 1), (2, 1)),
        }
    }
}

/// `BidirectionalLSTM`: an LSTM and a linear layer over its concatenated outputs.
struct LstmBlock {
    rnn: BiLstm,
    linear: Linear,
}

impl LstmBlock {
    fn load(vb: VarBuilder, input: usize, hidden: usize, output: usize) -> Result<Self> {
        Ok(Self {
            rnn: BiLstm::load(vb.pp("rnn"), input, hidden)?,
            linear: linear(2 * hidden, output, vb.pp("linear"))?,
        })
    }
}

impl Module for LstmBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear.forward(&self.rnn.forward(x)?)
    }
}

/// The english_g2 recognition network in eval mode.
pub struct RecognitionNet {
    convs: Vec<ConvReluPool>,
    sequence: [LstmBlock; 2],
    prediction: Linear,
}

impl RecognitionNet {
    /// Loads the network from a state dict with easyocr's names (`FeatureExtraction.ConvNet.N`,
    /// `SequenceModeling.N.{rnn,linear}`, `Prediction`); sizes come from the weights.
    pub fn load(vb: VarBuilder) -> Result<Self> {
        let features = vb.pp("FeatureExtraction.ConvNet");
        let convs = CONVS
            .iter()
            .map(|&(conv, bn, padding, pool)| {
                ConvReluPool::load(&features, conv, bn, padding, pool)
            })
            .collect::<Result<Vec<_>>>()?;
        let channels = convs.last().map_or(Ok(0), |c| c.weight.dim(0))?;
        let prediction_weight = vb.get_unchecked_dtype("Prediction.weight", DType::F32)?;
        let (classes, hidden) = prediction_weight.dims2()?;
        let seq = vb.pp("SequenceModeling");
        let sequence = [
            LstmBlock::load(seq.pp("0"), channels, hidden, hidden)?,
            LstmBlock::load(seq.pp("1"), hidden, hidden, hidden)?,
        ];
        Ok(Self {
            convs,
            sequence,
            prediction: linear(hidden, classes, vb.pp("Prediction"))?,
        })
    }

    /// `x`: (batch, 1, 64, width) normalised to [-1, 1] -> logits (batch, width / 4 - 1, classes).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("recognition_net").entered();
        let mut x = x.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?;
        }
        // AdaptiveAvgPool2d((None, 1)) over (batch, width, channels, height): the mean over height.
        let mut x = x.mean(2)?.transpose(1, 2)?.contiguous()?;
        for block in &self.sequence {
            x = block.forward(&x)?;
        }
        self.prediction.forward(&x)
    }

    /// Number of output classes (blank + characters).
    pub fn classes(&self) -> Result<usize> {
        self.prediction.weight().dim(0)
    }
}
