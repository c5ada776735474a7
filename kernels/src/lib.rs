//! vemo-kernels: CPU kernels for the image tower that candle 0.11 lacks or runs slowly.
//!
//! candle runs a grouped convolution as one convolution per group followed by a concatenation,
//! so a depthwise convolution over 1152 channels is 1152 tiny convolutions. [`depthwise_conv2d`]
//! computes it directly, with TensorFlow "same" padding, the folded batch-norm bias and the
//! ReLU6 clamp fused in. [`bias_clamp`] fuses a per-channel bias with an optional clamp after a
//! pointwise convolution. Both run on CPU tensors only (the caller keeps candle's ops for other
//! devices) and are built with optimisations even in the dev profile.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

/// Depthwise 2-D convolution: `x` (B, C, H, W), `weight` (C, 1, K, K), `bias` (C); stride `s`,
/// "same" padding (output ceil(H / s) x ceil(W / s), the extra padding row and column at the
/// bottom and right), then `min(max(y, lo), hi)` when `clamp` is given.
pub fn depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    clamp: Option<(f32, f32)>,
) -> Result<Tensor> {
    let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
    x.apply_op3_no_bwd(&weight, &bias, &Depthwise { stride, clamp })
}

/// `y = clamp(x + bias[c])` for `x` (B, C, N) and `bias` (C).
pub fn bias_clamp(x: &Tensor, bias: &Tensor, clamp: Option<(f32, f32)>) -> Result<Tensor> {
    let (x, bias) = (x.contiguous()?, bias.contiguous()?);
    x.apply_op2_no_bwd(&bias, &BiasClamp { clamp })
}

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        bail!("{what}: f32 expected")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("{what}: contiguous tensor expected")
    };
    Ok(&values[start..end])
}

fn apply_clamp(value: f32, clamp: Option<(f32, f32)>) -> f32 {
    match clamp {
        Some((lo, hi)) => value.max(lo).min(hi),
        None => value,
    }
}

struct Depthwise {
    stride: usize,
    clamp: Option<(f32, f32)>,
}

impl CustomOp3 for Depthwise {
    fn name(&self) -> &'static str {
        "vemo-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = l1.shape().dims4()?;
        let (wc, one, k, k2) = l2.shape().dims4()?;
        if wc != c || one != 1 || k != k2 || l3.shape().elem_count() != c || self.stride == 0 {
            bail!(
                "depthwise conv: input {:?}, weight {:?}, bias {:?}, stride {}",
                l1.shape(),
                l2.shape(),
                l3.shape(),
                self.stride
            );
        }
        let (input, weight, bias) = (
            f32_slice(s1, l1, "input")?,
            f32_slice(s2, l2, "weight")?,
            f32_slice(s3, l3, "bias")?,
        );
        let s = self.stride;
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let pad = |size: usize, out: usize| ((out - 1) * s + k).saturating_sub(size) / 2;
        let (top, left) = (pad(h, oh) as isize, pad(w, ow) as isize);
        let mut out = vec![0f32; b * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, y)| {
                let channel = plane % c;
                let x = &input[plane * h * w..(plane + 1) * h * w];
                let kernel = &weight[channel * k * k..(channel + 1) * k * k];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[channel];
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - top;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            let row = &x[iy as usize * w..(iy as usize + 1) * w];
                            let taps = &kernel[ky * k..(ky + 1) * k];
                            for (kx, tap) in taps.iter().enumerate() {
                                let ix = (ox * s + kx) as isize - left;
                                if ix >= 0 && ix < w as isize {
                                    acc += row[ix as usize] * tap;
                                }
                            }
                        }
                        y[oy * ow + ox] = apply_clamp(acc, self.clamp);
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

struct BiasClamp {
    clamp: Option<(f32, f32)>,
}

impl CustomOp2 for BiasClamp {
    fn name(&self) -> &'static str {
        "vemo-bias-clamp"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, n) = l1.shape().dims3()?;
        if l2.shape().elem_count() != c {
            bail!("bias_clamp: input {:?}, bias {:?}", l1.shape(), l2.shape());
        }
        let (input, bias) = (f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "bias")?);
        let mut out = input.to_vec();
        out.par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(row, y)| {
                let shift = bias[row % c];
                y.iter_mut()
                    .for_each(|v| *v = apply_clamp(*v + shift, self.clamp));
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    /// The same result through candle's own ops: explicit asymmetric padding, grouped conv.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, s: usize) -> Result<Tensor> {
        let (_, c, h, wd) = x.dims4()?;
        let k = w.dim(3)?;
        let pad = |size: usize| ((size.div_ceil(s) - 1) * s + k).saturating_sub(size);
        let (ph, pw) = (pad(h), pad(wd));
        let x = x
            .pad_with_zeros(2, ph / 2, ph - ph / 2)?
            .pad_with_zeros(3, pw / 2, pw - pw / 2)?;
        let y = x.conv2d(w, 0, s, 1, c)?;
        y.broadcast_add(&b.reshape((1, c, 1, 1))?)?
            .clamp(0f32, 6f32)
    }

    #[test]
    fn depthwise_matches_candle_grouped_convolution() -> Result<()> {
        let device = Device::Cpu;
        for (k, s, h, w) in [(3, 1, 7, 9), (3, 2, 8, 8), (5, 2, 9, 7), (5, 1, 6, 6)] {
            let x = Tensor::randn(0f32, 2.0, (2, 4, h, w), &device)?;
            let wt = Tensor::randn(0f32, 1.0, (4, 1, k, k), &device)?;
            let b = Tensor::randn(0f32, 1.0, 4, &device)?;
            let ours = depthwise_conv2d(&x, &wt, &b, s, Some((0.0, 6.0)))?;
            let theirs = reference(&x, &wt, &b, s)?;
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "k {k} s {s} {h}x{w}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn bias_clamp_adds_per_channel_and_clamps() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::new(&[[[1f32, -2.0], [5.0, 7.0]]], &device)?;
        let b = Tensor::new(&[0.5f32, 1.0], &device)?;
        let y = bias_clamp(&x, &b, Some((0.0, 6.0)))?;
        assert_eq!(
            y.i(0)?.to_vec2::<f32>()?,
            vec![vec![1.5, 0.0], vec![6.0, 6.0]]
        );
        let y = bias_clamp(&x, &b, None)?;
        assert_eq!(
            y.i(0)?.to_vec2::<f32>()?,
            vec![vec![1.5, -1.5], vec![6.0, 8.0]]
        );
        Ok(())
    }
}
