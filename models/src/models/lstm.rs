//! A single-layer bidirectional LSTM with PyTorch's parameters and semantics.
//!
//! Ports `torch.nn.LSTM(input, hidden, bidirectional=True, batch_first=True)` in eval mode:
//! gates in PyTorch's order (input, forget, cell, output), both biases, zero initial state, the
//! forward and reverse outputs concatenated on the feature axis. Parameter names follow the
//! state dict: `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0` and the same with
//! `_reverse`. Reference: <https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html>.

use candle_core::{D, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// One direction of the LSTM: the input projection runs over all steps at once, the recurrence
/// one step at a time.
struct Direction {
    /// (input, 4 * hidden): `weight_ih` transposed.
    w_ih_t: Tensor,
    /// (hidden, 4 * hidden): `weight_hh` transposed.
    w_hh_t: Tensor,
    /// (4 * hidden): `bias_ih + bias_hh`.
    bias: Tensor,
    reverse: bool,
}

impl Direction {
    fn load(vb: &VarBuilder, input: usize, hidden: usize, reverse: bool) -> Result<Self> {
        let suffix = if reverse { "_reverse" } else { "" };
        let w_ih = vb.get((4 * hidden, input), &format!("weight_ih_l0{suffix}"))?;
        let w_hh = vb.get((4 * hidden, hidden), &format!("weight_hh_l0{suffix}"))?;
        let b_ih = vb.get(4 * hidden, &format!("bias_ih_l0{suffix}"))?;
        let b_hh = vb.get(4 * hidden, &format!("bias_hh_l0{suffix}"))?;
        Ok(Self {
            w_ih_t: w_ih.t()?.contiguous()?,
            w_hh_t: w_hh.t()?.contiguous()?,
            bias: (b_ih + b_hh)?,
            reverse,
        })
    }

    /// `x`: (batch, time, input) -> (batch, time, hidden).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, steps, input) = x.dims3()?;
        let hidden = self.w_hh_t.dim(0)?;
        let projected = x
            .reshape((batch * steps, input))?
            .matmul(&self.w_ih_t)?
            .broadcast_add(&self.bias)?
            .reshape((batch, steps, 4 * hidden))?;
        let mut h = Tensor::zeros((batch, hidden), x.dtype(), x.device())?;
        let mut c = h.clone();
        let mut outputs = vec![h.clone(); steps];
        for step in 0..steps {
            let t = if self.reverse { steps - 1 - step } else { step };
            let gates = (projected.narrow(1, t, 1)?.squeeze(1)? + h.matmul(&self.w_hh_t)?)?;
            let sig = candle_nn::ops::sigmoid(&gates)?;
            let input_gate = sig.narrow(1, 0, hidden)?;
            let forget_gate = sig.narrow(1, hidden, hidden)?;
            let cell_gate = gates.narrow(1, 2 * hidden, hidden)?.tanh()?;
            let output_gate = sig.narrow(1, 3 * hidden, hidden)?;
            c = ((forget_gate * &c)? + (input_gate * cell_gate)?)?;
            h = (output_gate * c.tanh()?)?;
            outputs[t] = h.clone();
        }
        Tensor::stack(&outputs, 1)
    }
}

/// `nn.LSTM(input, hidden, bidirectional=True, batch_first=True)`, one layer, eval mode.
pub struct BiLstm {
    forward: Direction,
    backward: Direction,
}

impl BiLstm {
    /// Loads the eight parameters under `vb` (e.g. `SequenceModeling.0.rnn`).
    pub fn load(vb: VarBuilder, input: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            forward: Direction::load(&vb, input, hidden, false)?,
            backward: Direction::load(&vb, input, hidden, true)?,
        })
    }
}

impl Module for BiLstm {
    /// `x`: (batch, time, input) -> (batch, time, 2 * hidden), forward outputs first.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("bilstm").entered();
        let x = x.contiguous()?;
        Tensor::cat(
            &[self.forward.forward(&x)?, self.backward.forward(&x)?],
            D::Minus1,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device};

    use super::*;

    /// Parity with `torch.nn.LSTM` on random weights: `golden/lstm.json` was written by
    /// `infra/models/golden_lstm.py` (torch 2.15.0, seed 0, input 2x5x8, hidden 6).
    /// Tolerance: max |a - b| < 1e-5 (f32, five steps).
    #[test]
    fn bilstm_matches_torch_on_random_weights() {
        let golden: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/golden/lstm.json")).expect("golden");
        let (input, hidden) = (8, 6);
        let dev = Device::Cpu;
        let params: HashMap<String, Vec<f32>> =
            serde_json::from_value(golden["params"].clone()).expect("params");
        let tensors = params
            .into_iter()
            .map(|(name, values)| {
                let shape = if name.starts_with("weight_ih") {
                    vec![4 * hidden, input]
                } else if name.starts_with("weight_hh") {
                    vec![4 * hidden, hidden]
                } else {
                    vec![4 * hidden]
                };
                (name, Tensor::from_vec(values, shape, &dev).expect("param"))
            })
            .collect::<HashMap<_, _>>();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let lstm = BiLstm::load(vb, input, hidden).expect("load");
        let x: Vec<f32> = serde_json::from_value(golden["input"].clone()).expect("input");
        let x = Tensor::from_vec(x, (2, 5, input), &dev).expect("x");
        let want: Vec<f32> = serde_json::from_value(golden["output"].clone()).expect("output");
        let got = lstm.forward(&x).expect("forward");
        assert_eq!(got.dims(), &[2, 5, 2 * hidden]);
        let got = got
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("vec");
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("max |vemo - torch| on the BiLSTM output: {diff:e}");
        assert!(diff < 1e-5, "BiLSTM output differs by {diff}");
    }
}
