//! vemo-kernels: CPU kernels for the image tower and the ONNX graphs that candle 0.11 lacks
//! or runs slowly.
//!
//! candle runs a grouped convolution as one convolution per group followed by a concatenation,
//! so a depthwise convolution over 1152 channels is 1152 tiny convolutions. [`depthwise_conv2d`]
//! computes it directly, with TensorFlow "same" padding, the folded batch-norm bias and the
//! ReLU6 clamp fused in; [`depthwise_conv2d_padded`] takes ONNX's explicit padding and
//! per-axis strides. [`bias_clamp`] fuses a per-channel bias with an optional clamp after a
//! pointwise convolution. [`im2col`] lays out a convolution's inputs for one matrix product,
//! and [`erf`] is a parallel error function (candle's is scalar libm). All run on CPU tensors
//! only (the caller keeps candle's ops for other devices) and are built with optimisations even
//! in the dev profile.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

mod conv;
mod linear;
mod planes;
mod tile;
mod tile_avx2;
pub use conv::{Activation, conv_transpose_blocks, conv2d};
pub use linear::FastLinear;
pub use planes::{Binary, activate, binary_same_shape, max_pool2d, upsample_nearest};

/// Runs `f` on the first `len` values of this thread's scratch buffer `key`: grown (with
/// zeros) when short, never shrunk or cleared, so that a kernel called once per tile neither
/// allocates nor fills memory again. `f` must write every value it reads.
fn with_scratch<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with_borrow_mut(|buffer| {
        if buffer.len() < len {
            buffer.resize(len, 0.0);
        }
        f(&mut buffer[..len])
    })
}

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
    let (_, _, h, w) = x.dims4()?;
    let k = weight.dim(2)?;
    let total =
        |size: usize| ((size.div_ceil(stride.max(1)) - 1) * stride + k).saturating_sub(size);
    let (th, tw) = (total(h), total(w));
    let pads = [th / 2, tw / 2, th - th / 2, tw - tw / 2];
    let activation = match clamp {
        Some((lo, hi)) => Activation::Clamp { lo, hi },
        None => Activation::Identity,
    };
    depthwise(x, weight, Some(bias), (stride, stride), pads, activation)
}

/// Depthwise 2-D convolution as ONNX states it: `x` (B, C, H, W), `weight` (C, 1, KH, KW),
/// an optional `bias` (C), strides `(sh, sw)` and zero padding `[top, left, bottom, right]`,
/// then `activation`.
pub fn depthwise_conv2d_padded(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    strides: (usize, usize),
    pads: [usize; 4],
    activation: Activation,
) -> Result<Tensor> {
    depthwise(x, weight, bias, strides, pads, activation)
}

fn depthwise(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    strides: (usize, usize),
    pads: [usize; 4],
    activation: Activation,
) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(weight.dim(0)?, weight.dtype(), weight.device())?,
    };
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    x.apply_op3_no_bwd(
        &weight,
        &bias,
        &Depthwise {
            strides,
            pads,
            activation,
        },
    )
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

/// The outputs of a convolution window of `kernel` taps moved by `stride` over `size` inputs
/// with `pad` positions of padding in all (the caller checks `size + pad >= kernel`).
pub fn conv_output_len(size: usize, pad: usize, kernel: usize, stride: usize) -> usize {
    (size + pad - kernel) / stride + 1
}

/// For kernel column `kx`, the output columns `first..end` whose input column
/// `ox * stride + kx - left` lies inside a row of `width`, out of `outputs`.
fn inside_columns(
    kx: usize,
    left: usize,
    width: usize,
    stride: usize,
    outputs: usize,
) -> (usize, usize) {
    let first = left.saturating_sub(kx).div_ceil(stride);
    let end = (width + left)
        .saturating_sub(kx)
        .div_ceil(stride)
        .min(outputs);
    (first, end.max(first))
}

fn apply_clamp(value: f32, clamp: Option<(f32, f32)>) -> f32 {
    match clamp {
        Some((lo, hi)) => value.max(lo).min(hi),
        None => value,
    }
}

struct Depthwise {
    strides: (usize, usize),
    /// Zero padding `[top, left, bottom, right]`.
    pads: [usize; 4],
    activation: Activation,
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
        let (wc, one, kh, kw) = l2.shape().dims4()?;
        let ((sh, sw), [top, left, bottom, right]) = (self.strides, self.pads);
        if wc != c
            || one != 1
            || l3.shape().elem_count() != c
            || sh == 0
            || sw == 0
            || h + top + bottom < kh
            || w + left + right < kw
        {
            bail!(
                "depthwise conv: input {:?}, weight {:?}, bias {:?}, strides {:?}, pads {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape(),
                self.strides,
                self.pads
            );
        }
        let (input, weight, bias) = (
            f32_slice(s1, l1, "input")?,
            f32_slice(s2, l2, "weight")?,
            f32_slice(s3, l3, "bias")?,
        );
        let oh = conv_output_len(h, top + bottom, kh, sh);
        let ow = conv_output_len(w, left + right, kw, sw);
        let columns: Vec<(usize, usize)> = (0..kw)
            .map(|kx| inside_columns(kx, left, w, sw, ow))
            .collect();
        let mut out = vec![0f32; b * c * oh * ow];
        let geometry = PlaneGeometry {
            h,
            w,
            kh,
            kw,
            sh,
            sw,
            top,
            left,
            bottom,
            right,
            ow,
            columns: &columns,
            activation: self.activation,
        };
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, y)| {
                let channel = plane % c;
                let x = &input[plane * h * w..(plane + 1) * h * w];
                let kernel = &weight[channel * kh * kw..(channel + 1) * kh * kw];
                depthwise_plane(&geometry, x, kernel, bias[channel], y);
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, oh, ow))))
    }
}

/// What every plane of one depthwise convolution shares.
struct PlaneGeometry<'a> {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    top: usize,
    left: usize,
    bottom: usize,
    right: usize,
    ow: usize,
    /// For each kernel column, the output columns it reaches inside the row.
    columns: &'a [(usize, usize)],
    activation: Activation,
}

/// One output plane `y` of a depthwise convolution of plane `x` with `kernel`: compiled for
/// AVX-512 or AVX2 + FMA when the CPU has them (chosen at run time), else for SSE2.
#[allow(unsafe_code)]
fn depthwise_plane(g: &PlaneGeometry, x: &[f32], kernel: &[f32], bias: f32, y: &mut [f32]) {
    if g.sh == 1 && g.sw == 1 && tile::available() {
        let pads = [g.top, g.left, g.bottom, g.right];
        tile::depthwise_plane(x, (g.h, g.w), kernel, (g.kh, g.kw), pads, bias, y);
        if g.activation != Activation::Identity {
            g.activation.shift_apply(y, 0.0);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature `depthwise_plane_avx512` is compiled for.
        return unsafe { depthwise_plane_avx512(g, x, kernel, bias, y) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features `depthwise_plane_avx2` is compiled for.
        return unsafe { depthwise_plane_avx2(g, x, kernel, bias, y) };
    }
    depthwise_plane_portable::<false>(g, x, kernel, bias, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn depthwise_plane_avx512(g: &PlaneGeometry, x: &[f32], kernel: &[f32], bias: f32, y: &mut [f32]) {
    depthwise_plane_portable::<true>(g, x, kernel, bias, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn depthwise_plane_avx2(g: &PlaneGeometry, x: &[f32], kernel: &[f32], bias: f32, y: &mut [f32]) {
    depthwise_plane_portable::<true>(g, x, kernel, bias, y);
}

/// The plane's loops; `FMA`: multiply-adds fused (only where the CPU has FMA: elsewhere
/// `mul_add` is a slow library call).
#[inline(always)]
fn depthwise_plane_portable<const FMA: bool>(
    g: &PlaneGeometry,
    x: &[f32],
    kernel: &[f32],
    bias: f32,
    y: &mut [f32],
) {
    let (h, w, kh, kw, sh, sw, top, left) = (g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.top, g.left);
    for (oy, out_row) in y.chunks_mut(g.ow).enumerate() {
        out_row.fill(bias);
        for ky in 0..kh {
            let iy = (oy * sh + ky) as isize - top as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let row = &x[iy as usize * w..(iy as usize + 1) * w];
            for (kx, &(first, end)) in g.columns.iter().enumerate() {
                if first == end {
                    continue;
                }
                let tap = kernel[ky * kw + kx];
                // The input column of output `first`; then every `sw`-th.
                let start = first * sw + kx - left;
                let out = &mut out_row[first..end];
                if sw == 1 {
                    let inputs = &row[start..start + out.len()];
                    for (y, &v) in out.iter_mut().zip(inputs) {
                        *y = multiply_add::<FMA>(v, tap, *y);
                    }
                } else {
                    for (y, &v) in out.iter_mut().zip(row[start..].iter().step_by(sw)) {
                        *y = multiply_add::<FMA>(v, tap, *y);
                    }
                }
            }
        }
        if g.activation != Activation::Identity {
            g.activation.shift_apply(out_row, 0.0);
        }
    }
}

#[inline(always)]
fn multiply_add<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { c + a * b }
}

/// The columns of a 2-D convolution ("im2col"): for `x` (B, C, H, W), a `kh x kw` kernel,
/// strides `(sh, sw)` and zero padding `[top, left, bottom, right]`, the tensor
/// (B, C * kh * kw, OH * OW) whose row `(c, ky, kx)` holds the input pixel each output position
/// sees through that tap. A convolution is then one matrix product with the (O, C * kh * kw)
/// weights; the rows are filled in parallel.
pub fn im2col(
    x: &Tensor,
    kernel: (usize, usize),
    strides: (usize, usize),
    pads: [usize; 4],
) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Im2Col {
        kernel,
        strides,
        pads,
    })
}

struct Im2Col {
    kernel: (usize, usize),
    strides: (usize, usize),
    pads: [usize; 4],
}

impl candle_core::CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "vemo-im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        let ((kh, kw), (sh, sw), [top, left, bottom, right]) =
            (self.kernel, self.strides, self.pads);
        if sh == 0 || sw == 0 || h + top + bottom < kh || w + left + right < kw {
            bail!("im2col: input {:?}, {:?}", layout.shape(), self.kernel);
        }
        let input = f32_slice(storage, layout, "input")?;
        let oh = conv_output_len(h, top + bottom, kh, sh);
        let ow = conv_output_len(w, left + right, kw, sw);
        let mut out = vec![0f32; b * c * kh * kw * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(row, dst)| {
                let (plane, tap) = (row / (kh * kw), row % (kh * kw));
                let (ky, kx) = (tap / kw, tap % kw);
                let x = &input[plane * h * w..(plane + 1) * h * w];
                let (first, end) = inside_columns(kx, left, w, sw, ow);
                for (oy, dst_row) in dst.chunks_mut(ow).enumerate() {
                    let iy = (oy * sh + ky) as isize - top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    if first == end {
                        continue;
                    }
                    let src = &x[iy as usize * w + first * sw + kx - left..(iy as usize + 1) * w];
                    let dst = &mut dst_row[first..end];
                    if sw == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        for (y, &v) in dst.iter_mut().zip(src.iter().step_by(sw)) {
                            *y = v;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c * kh * kw, oh * ow))))
    }
}

/// The error function of every element of an f32 CPU tensor, in parallel: Abramowitz and
/// Stegun's 7.1.26 (|error| < 1.5e-7, below f32's resolution near 1), for the GELUs of ONNX
/// graphs, where libm's scalar `erff` took a tenth of a PP-OCR detector's time.
pub fn erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Erf)
}

struct Erf;

impl candle_core::CustomOp1 for Erf {
    fn name(&self) -> &'static str {
        "vemo-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = f32_slice(storage, layout, "input")?;
        let mut out = input.to_vec();
        out.par_chunks_mut(4096)
            .for_each(|chunk| chunk.iter_mut().for_each(|v| *v = erf_approx(*v)));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Abramowitz and Stegun 7.1.26 without branches or libm, so that loops over it vectorise
/// (SSE2 is enough): `exp` from [`exp_neg`], the sign copied back.
#[inline(always)]
fn erf_approx(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / (1.0 + P * a);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    (1.0 - poly * exp_neg(-a * a)).copysign(x)
}

/// `e^x` for `x <= 0` (relative error under 4e-6, most of it from rounding `x / ln 2`;
/// `e^-87` below -87): `2^n * 2^f` with `n` the nearest integer to `x / ln 2` (rounded by the
/// 1.5 * 2^23 trick, which needs no SSE4.1) and `2^f`, `|f| <= 1/2`, from its Taylor series
/// to the 6th power.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let t = x * std::f32::consts::LOG2_E;
    // `t + ROUND` holds round(t) in its low mantissa bits: n without a float-to-int cast.
    let shifted = t + ROUND;
    let n = shifted - ROUND;
    let u = (t - n) * std::f32::consts::LN_2;
    let p = 1.0
        + u * (1.0
            + u * 0.5
                * (1.0
                    + u * (1.0 / 3.0)
                        * (1.0 + u * 0.25 * (1.0 + u * 0.2 * (1.0 + u * (1.0 / 6.0))))));
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
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
    fn padded_depthwise_matches_candle_grouped_convolution() -> Result<()> {
        let device = Device::Cpu;
        let cases = [
            ((3, 3), (2, 1), [1, 1, 1, 1], (8, 9)),
            ((1, 7), (1, 1), [0, 3, 0, 3], (5, 12)),
            ((7, 7), (1, 1), [3, 3, 3, 3], (9, 6)),
            ((3, 3), (2, 2), [1, 1, 1, 1], (7, 7)),
        ];
        for ((kh, kw), (sh, sw), pads, (h, w)) in cases {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &device)?;
            let wt = Tensor::randn(0f32, 1.0, (3, 1, kh, kw), &device)?;
            let ours =
                depthwise_conv2d_padded(&x, &wt, None, (sh, sw), pads, Activation::Identity)?;
            let [t, l, b, r] = pads;
            let padded = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
            // candle's conv2d has one stride for both axes: stride 1, then subsample.
            let full = padded.conv2d(&wt, 0, 1, 1, 3)?;
            let (fh, fw) = (full.dim(2)?, full.dim(3)?);
            let rows: Vec<u32> = (0..fh).step_by(sh).map(|v| v as u32).collect();
            let cols: Vec<u32> = (0..fw).step_by(sw).map(|v| v as u32).collect();
            let theirs = full
                .index_select(&Tensor::new(rows.as_slice(), &device)?, 2)?
                .index_select(&Tensor::new(cols.as_slice(), &device)?, 3)?;
            assert_eq!(ours.dims(), theirs.dims(), "{kh}x{kw} s {sh},{sw}");
            let diff = (ours - theirs)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "{kh}x{kw} s {sh},{sw}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn im2col_times_weights_is_candles_convolution() -> Result<()> {
        let device = Device::Cpu;
        for ((kh, kw), s, pads, (h, w)) in [
            ((3, 3), 2, [1, 1, 1, 1], (9, 8)),
            ((2, 2), 1, [0, 0, 1, 1], (5, 7)),
            ((3, 3), 1, [1, 1, 1, 1], (6, 6)),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &device)?;
            let wt = Tensor::randn(0f32, 1.0, (4, 3, kh, kw), &device)?;
            let cols = im2col(&x, (kh, kw), (s, s), pads)?;
            let ours = wt.reshape((4, 3 * kh * kw))?.broadcast_matmul(&cols)?;
            let [t, l, b, r] = pads;
            let padded = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
            let theirs = padded.conv2d(&wt, 0, s, 1, 1)?;
            let theirs = theirs.reshape((2, 4, theirs.dim(2)? * theirs.dim(3)?))?;
            let diff = (ours - theirs)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "{kh}x{kw} s {s}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn erf_matches_candles_within_f32_noise() -> Result<()> {
        let x = Tensor::randn(0f32, 2.0, 10_000, &Device::Cpu)?;
        let diff = (erf(&x)? - x.erf()?)?.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn exp_neg_is_exp_within_f32_noise() {
        for i in 0..=20_000 {
            let x = -(i as f32) * 0.0045;
            let (ours, exact) = (exp_neg(x), x.exp());
            assert!(
                (ours - exact).abs() <= 4e-6 * exact.max(1e-30),
                "{x}: {ours} {exact}"
            );
        }
        assert!((exp_neg(-200.0) / (-87f32).exp() - 1.0).abs() < 4e-6);
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
