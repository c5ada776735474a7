//! Linear layers (`y = x W^T + b`, then an activation) of the text towers on the AVX-512 or AVX2
//! product, for CPUs that have it: the weights are stored transposed once, at load (on AVX2
//! already packed into the product's panels), so that each output row of `y` is the input row
//! times contiguous weight rows; several layers that read the same input (a transformer's
//! query, key and value) are one product.
// The jobs write disjoint blocks of one output through a shared pointer.
#![allow(unsafe_code)]

use candle_core::{Device, Result, Tensor, bail};
use rayon::prelude::*;

use crate::conv::{Activation, with_values};
use crate::tile;

/// Rows of the input per parallel job (a multiple of the product's register tile).
const ROW_CHUNK: usize = 8 * tile::ROWS;
/// Output columns per parallel job.
const COLUMN_CHUNK: usize = 4 * tile::PIXELS;

/// One or more linear layers over the same input, their outputs side by side.
pub struct FastLinear {
    /// The weights transposed, (inputs x outputs), laid out once for the product.
    transposed: tile::Columns,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl FastLinear {
    /// The layers with `weights` (each outputs_i x inputs) and optional `biases`, as one; `None`
    /// when this CPU has neither AVX-512 nor AVX2 + FMA (callers keep candle's layers then).
    pub fn new(weights: &[&Tensor], biases: &[Option<&Tensor>]) -> Result<Option<Self>> {
        if !tile::available() {
            return Ok(None);
        }
        let Some(first) = weights.first() else {
            bail!("no weights");
        };
        let inputs = first.dim(1)?;
        let mut rows: Vec<Vec<f32>> = Vec::new();
        let mut bias = Vec::new();
        for (i, w) in weights.iter().enumerate() {
            let (outputs, k) = w.dims2()?;
            if k != inputs {
                bail!("linear layers of {inputs} and {k} inputs");
            }
            rows.extend(w.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?);
            match biases.get(i).copied().flatten() {
                Some(b) => bias.extend(b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?),
                None => bias.extend(std::iter::repeat_n(0f32, outputs)),
            }
        }
        let outputs = rows.len();
        let mut transposed = vec![0f32; inputs * outputs];
        for (o, row) in rows.iter().enumerate() {
            for (k, &v) in row.iter().enumerate() {
                transposed[k * outputs + o] = v;
            }
        }
        Ok(Some(Self {
            transposed: tile::Columns::new(transposed, inputs, outputs),
            bias,
            inputs,
            outputs,
        }))
    }

    /// `activation(x W^T + b)` for `x` (..., inputs), an f32 CPU tensor: (..., outputs).
    pub fn forward(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let dims = x.dims();
        if dims.last() != Some(&self.inputs) {
            bail!("linear: input {dims:?} for {} inputs", self.inputs);
        }
        let rows = x.elem_count() / self.inputs.max(1);
        let (k, n) = (self.inputs, self.outputs);
        let packed = with_values(x, "input", |v| tile::pack_weights(v, rows, k))?;
        let mut out: Vec<f32> = Vec::with_capacity(rows * n);
        let dst = SharedOut(out.as_mut_ptr());
        let (row_jobs, column_jobs) = (rows.div_ceil(ROW_CHUNK), n.div_ceil(COLUMN_CHUNK));
        (0..row_jobs * column_jobs).into_par_iter().for_each(|job| {
            let (r0, c0) = (
                (job / column_jobs) * ROW_CHUNK,
                (job % column_jobs) * COLUMN_CHUNK,
            );
            let (m, len) = (ROW_CHUNK.min(rows - r0), COLUMN_CHUNK.min(n - c0));
            let block = &packed[r0 * k..];
            // SAFETY: rows r0..r0 + m, columns c0..c0 + len of `out` (row stride n) are inside
            // its capacity and written by this job alone.
            unsafe {
                let at = dst.at(r0 * n + c0);
                tile::product_on(block, m, &self.transposed, (c0, len), at, n);
                for r in 0..m {
                    let row = std::slice::from_raw_parts_mut(at.add(r * n), len);
                    for (v, b) in row.iter_mut().zip(&self.bias[c0..c0 + len]) {
                        *v += b;
                    }
                    activation.shift_apply(row, 0.0);
                }
            }
        });
        // SAFETY: the jobs cover every row and column, and each wrote its elements.
        unsafe { out.set_len(rows * n) };
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("rank >= 1") = n;
        Tensor::from_vec(out, shape, &Device::Cpu)
    }
}

/// The output pointer the jobs write through, each to its own elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `offset` must stay inside the allocation.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: as the caller promises.
        unsafe { self.0.add(offset) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_layers_match_candle() -> Result<()> {
        let device = Device::Cpu;
        // 300 inputs: past the AVX2 product's pass over K (256).
        let x = Tensor::randn(0f32, 1.0, (3, 37, 300), &device)?;
        let (w1, w2) = (
            Tensor::randn(0f32, 0.2, (50, 300), &device)?,
            Tensor::randn(0f32, 0.2, (300, 300), &device)?,
        );
        let b1 = Tensor::randn(0f32, 1.0, 50, &device)?;
        let Some(layer) = FastLinear::new(&[&w1, &w2], &[Some(&b1), None])? else {
            return Ok(()); // no AVX-512 or AVX2 here: candle's layers run instead
        };
        let ours = layer.forward(&x, Activation::Gelu)?;
        let want = Tensor::cat(
            &[
                x.broadcast_matmul(&w1.t()?)?.broadcast_add(&b1)?,
                x.broadcast_matmul(&w2.t()?)?,
            ],
            2,
        )?
        .gelu_erf()?;
        assert_eq!(ours.dims(), &[3, 37, 350]);
        let diff = (ours - want)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }
}
