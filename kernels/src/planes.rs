//! Per-plane kernels for the ONNX graphs, parallel over both cores: max pooling, nearest
//! upsampling by whole factors, activations and same-shape element-wise operations (candle's
//! CPU element-wise ops run on one thread and allocate per step).

use candle_core::{Device, Result, Tensor, bail};
use rayon::prelude::*;

use crate::conv::{Activation, with_values};
use crate::{conv_output_len, inside_columns};

/// Max pooling over `x` (B, C, H, W) with padded positions ignored (ONNX `MaxPool`; every
/// window must hold a real pixel, which pads smaller than the kernel ensure).
pub fn max_pool2d(
    x: &Tensor,
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    [top, left, bottom, right]: [usize; 4],
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if sh == 0 || sw == 0 || h + top + bottom < kh || w + left + right < kw {
        bail!("max_pool2d: input {:?}, kernel {:?}", x.dims(), (kh, kw));
    }
    let (oh, ow) = (
        conv_output_len(h, top + bottom, kh, sh),
        conv_output_len(w, left + right, kw, sw),
    );
    let mut out = vec![f32::NEG_INFINITY; b * c * oh * ow];
    with_values(x, "input", |input| {
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, dst)| {
                let x = &input[plane * h * w..(plane + 1) * h * w];
                for (oy, line) in dst.chunks_mut(ow).enumerate() {
                    for ky in 0..kh {
                        let iy = (oy * sh + ky) as isize - top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let src = &x[iy as usize * w..(iy as usize + 1) * w];
                        for kx in 0..kw {
                            let (first, end) = inside_columns(kx, left, w, sw, ow);
                            if first == end {
                                continue;
                            }
                            let start = first * sw + kx - left;
                            let line = &mut line[first..end];
                            if sw == 1 {
                                let src = &src[start..start + line.len()];
                                line.iter_mut().zip(src).for_each(|(o, &v)| *o = o.max(v));
                            } else {
                                let src = src[start..].iter().step_by(sw);
                                line.iter_mut().zip(src).for_each(|(o, &v)| *o = o.max(v));
                            }
                        }
                    }
                }
            })
    })?;
    Tensor::from_vec(out, (b, c, oh, ow), &Device::Cpu)
}

/// `activation` of every element of an f32 CPU tensor, in parallel.
pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    let out = with_values(x, "input", |input| {
        copied_then(input, |_, chunk| activation.shift_apply(chunk, 0.0))
    })?;
    Tensor::from_vec(out, x.dims(), &Device::Cpu)
}

/// Elements per parallel chunk of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// A copy of `input` made in parallel chunks of [`CHUNK`], each passed to `then` (with its
/// index) while it is in cache: one pass over memory for an element-wise operation.
#[allow(unsafe_code)]
fn copied_then(input: &[f32], then: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let n = input.len();
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(index, (dst, src))| {
            for (d, &s) in dst.iter_mut().zip(src) {
                d.write(s);
            }
            // SAFETY: every element of `dst` was written just above.
            let dst = unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            then(index, dst);
        });
    // SAFETY: the chunks cover all `n` elements, and each was written.
    unsafe { out.set_len(n) };
    out
}

/// An element-wise operation on two tensors of one shape.
#[derive(Debug, Clone, Copy)]
pub enum Binary {
    Add,
    Mul,
}

/// `a + b` or `a * b` for two f32 CPU tensors of the same shape, in parallel.
pub fn binary_same_shape(a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    if a.dims() != b.dims() {
        bail!("binary: shapes {:?} and {:?}", a.dims(), b.dims());
    }
    let out = with_values(a, "lhs", |lhs| {
        with_values(b, "rhs", |rhs| {
            copied_then(lhs, |index, y| {
                let r = &rhs[index * CHUNK..index * CHUNK + y.len()];
                match op {
                    Binary::Add => y.iter_mut().zip(r).for_each(|(y, r)| *y += r),
                    Binary::Mul => y.iter_mut().zip(r).for_each(|(y, r)| *y *= r),
                }
            })
        })
    })??;
    Tensor::from_vec(out, a.dims(), &Device::Cpu)
}

/// Nearest-neighbour upsampling of `x` (B, C, H, W) by whole factors `(fh, fw)`.
pub fn upsample_nearest(x: &Tensor, (fh, fw): (usize, usize)) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if fh == 0 || fw == 0 {
        bail!("upsample_nearest: factors {:?}", (fh, fw));
    }
    let (oh, ow) = (h * fh, w * fw);
    let mut out = vec![0f32; b * c * oh * ow];
    with_values(x, "input", |input| {
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, dst)| {
                let x = &input[plane * h * w..(plane + 1) * h * w];
                for (y, src) in x.chunks(w).enumerate() {
                    let rows = &mut dst[y * fh * ow..(y + 1) * fh * ow];
                    let (first, rest) = rows.split_at_mut(ow);
                    for (cell, &v) in first.chunks_mut(fw).zip(src) {
                        cell.fill(v);
                    }
                    for row in rest.chunks_mut(ow) {
                        row.copy_from_slice(first);
                    }
                }
            })
    })?;
    Tensor::from_vec(out, (b, c, oh, ow), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn max_pool_ignores_padding() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 6, 7), &device)?;
        let ours = max_pool2d(&x, (2, 2), (1, 1), [0, 0, 1, 1])?;
        let theirs = x
            .pad_with_same(2, 0, 1)?
            .pad_with_same(3, 0, 1)?
            .max_pool2d_with_stride((2, 2), (1, 1))?;
        assert_eq!(max_diff(&ours, &theirs)?, 0.0);
        let ours = max_pool2d(&x, (3, 3), (2, 2), [1, 1, 1, 1])?;
        let theirs = x
            .pad_with_same(2, 1, 1)?
            .pad_with_same(3, 1, 1)?
            .max_pool2d_with_stride((3, 3), (2, 2))?;
        assert_eq!(max_diff(&ours, &theirs)?, 0.0);
        Ok(())
    }

    #[test]
    fn element_wise_kernels_match_candle() -> Result<()> {
        let device = Device::Cpu;
        let a = Tensor::randn(0f32, 2.0, (3, 40_000), &device)?;
        let b = Tensor::randn(0f32, 2.0, (3, 40_000), &device)?;
        assert_eq!(
            max_diff(&binary_same_shape(&a, &b, Binary::Add)?, &(&a + &b)?)?,
            0.0
        );
        assert_eq!(
            max_diff(&binary_same_shape(&a, &b, Binary::Mul)?, &(&a * &b)?)?,
            0.0
        );
        assert!(max_diff(&activate(&a, Activation::Gelu)?, &a.gelu_erf()?)? < 1e-5);
        assert_eq!(max_diff(&activate(&a, Activation::Relu)?, &a.relu()?)?, 0.0);
        Ok(())
    }

    #[test]
    fn upsampling_matches_candle() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &Device::Cpu)?;
        let ours = upsample_nearest(&x, (2, 3))?;
        assert_eq!(max_diff(&ours, &x.upsample_nearest2d(10, 21)?)?, 0.0);
        Ok(())
    }
}
