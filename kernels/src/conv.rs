//! Convolutions as tiled matrix products with the bias and activation fused in, and the
//! element-wise kernels the ONNX graphs run between them, all parallel over both cores.
//!
//! [`conv2d`] cuts the output pixels into tiles, lays out each tile's input columns (im2col)
//! in a buffer that stays in cache, multiplies it with the weights through [`crate::tile`]'s
//! register-tile product (AVX-512 or AVX2 + FMA; `gemm` on other CPUs) and adds the bias and
//! applies the activation to the tile while it is hot: one pass over memory where candle's
//! path took im2col of the whole image, a matrix product, a bias add and an activation, each
//! writing a full feature map.
// `gemm` takes raw pointers, and the tiles write disjoint columns of one output through one.
#![allow(unsafe_code)]

use candle_core::{CpuStorage, Device, Result, Storage, Tensor, bail};
use rayon::prelude::*;

use crate::{conv_output_len, erf_approx, inside_columns, tile, with_scratch};

/// What follows a convolution (or stands alone): applied to each output element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// `x * Φ(x)` with the error function of [`crate::erf`] (ONNX's exact GELU).
    Gelu,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Sigmoid,
    Clamp {
        lo: f32,
        hi: f32,
    },
}

impl Activation {
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
            Activation::Gelu => 0.5 * v * (1.0 + erf_approx(v * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::HardSigmoid { alpha, beta } => (alpha * v + beta).clamp(0.0, 1.0),
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Activation::Clamp { lo, hi } => v.max(lo).min(hi),
        }
    }

    /// `values[i] = apply(values[i] + shift)`.
    #[inline]
    pub(crate) fn shift_apply(self, values: &mut [f32], shift: f32) {
        match self {
            Activation::Identity => values.iter_mut().for_each(|v| *v += shift),
            Activation::Relu => values.iter_mut().for_each(|v| *v = (*v + shift).max(0.0)),
            Activation::Gelu => gelu(values, shift),
            other => values.iter_mut().for_each(|v| *v = other.apply(*v + shift)),
        }
    }
}

/// `values[i] = gelu(values[i] + shift)`, on AVX-512 or AVX2 + FMA when the CPU has them
/// (chosen at run time: the binary still runs on any x86-64), else on SSE2.
fn gelu(values: &mut [f32], shift: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the feature `gelu_avx512` is compiled for.
        return unsafe { gelu_avx512(values, shift) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features `gelu_avx2` is compiled for.
        return unsafe { gelu_avx2(values, shift) };
    }
    gelu_portable(values, shift);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn gelu_avx512(values: &mut [f32], shift: f32) {
    gelu_portable(values, shift);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_avx2(values: &mut [f32], shift: f32) {
    gelu_portable(values, shift);
}

#[inline(always)]
fn gelu_portable(values: &mut [f32], shift: f32) {
    values.iter_mut().for_each(|v| {
        let x = *v + shift;
        *v = 0.5 * x * (1.0 + erf_approx(x * std::f32::consts::FRAC_1_SQRT_2));
    });
}

/// Runs `f` on the values of a contiguous f32 CPU tensor.
pub(crate) fn with_values<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
        bail!("{what}: an f32 CPU tensor expected");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what}: not contiguous")))?;
    Ok(f(&values[start..end]))
}

/// A pointer that tiles of one output write through, each to its own disjoint elements.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer `offset` elements on (a method, so that closures capture the `Shared`).
    ///
    /// # Safety
    /// `offset` must stay inside the allocation.
    unsafe fn at(&self, offset: usize) -> *mut f32 {
        // SAFETY: as the caller promises.
        unsafe { self.0.add(offset) }
    }
}

/// The most input-column values one tile lays out (1 MB of f32: within a core's L2).
const TILE_VALUES: usize = 1 << 18;
/// Pixels per tile of a 1x1 convolution on the register-tile product.
const DIRECT_TILE: usize = 256;

thread_local! {
    /// Each thread's input columns (im2col) of one tile, kept between calls: a fresh zeroed
    /// megabyte per tile was a few percent of the PP-OCR detector's time.
    static COLUMNS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// 2-D convolution with one group: `x` (B, C, H, W), `weight` (O, C, KH, KW), an optional
/// `bias` (O), strides `(sh, sw)`, zero padding `[top, left, bottom, right]`, then
/// `activation`. CPU f32 tensors only.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    strides: (usize, usize),
    pads: [usize; 4],
    activation: Activation,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (o, wc, kh, kw) = weight.dims4()?;
    let ((sh, sw), [top, left, bottom, right]) = (strides, pads);
    if wc != c || sh == 0 || sw == 0 || h + top + bottom < kh || w + left + right < kw {
        bail!(
            "conv2d: input {:?}, weight {:?}, strides {strides:?}, pads {pads:?}",
            x.dims(),
            weight.dims()
        );
    }
    let bias = match bias {
        Some(t) if t.elem_count() == o => with_values(t, "bias", <[f32]>::to_vec)?,
        Some(t) => bail!("conv2d: bias {:?} for {o} outputs", t.dims()),
        None => vec![0.0; o],
    };
    let (oh, ow) = (
        conv_output_len(h, top + bottom, kh, sh),
        conv_output_len(w, left + right, kw, sw),
    );
    let (k, pixels) = (c * kh * kw, oh * ow);
    let direct = kh == 1 && kw == 1 && strides == (1, 1) && pads == [0; 4];
    let packed = match tile::available() {
        true => Some(with_values(weight, "weight", |w| {
            tile::pack_weights(w, o, k)
        })?),
        false => None,
    };
    if direct && packed.is_none() {
        let mut out = vec![0f32; b * o * pixels];
        pointwise(x, weight, &bias, (c, o, pixels), activation, &mut out)?;
        return Tensor::from_vec(out, (b, o, oh, ow), &Device::Cpu);
    }
    // Left uninitialised: the tiles below write every element.
    let mut out: Vec<f32> = Vec::with_capacity(b * o * pixels);
    // A 1x1 convolution reads its input in place: tiles only spread the work.
    let tile = match direct {
        true => DIRECT_TILE.min(pixels),
        false => (TILE_VALUES / k).clamp(64, 8192).min(pixels),
    };
    let tiles = pixels.div_ceil(tile);
    let dst = Shared(out.as_mut_ptr());
    with_values(weight, "weight", |weights| {
        with_values(x, "input", |input| {
            (0..b * tiles).into_par_iter().for_each(|job| {
                let (item, p0) = (job / tiles, (job % tiles) * tile);
                let len = tile.min(pixels - p0);
                let plane = &input[item * c * h * w..(item + 1) * c * h * w];
                // The tile's output from the columns (k x len) at row stride `ldc`.
                let multiply = |cols: &[f32], ldc: usize| {
                    // SAFETY: (o x len) of the output from here, at row stride `pixels`, are
                    // in bounds and written by this tile alone; the weights are (o x k).
                    unsafe {
                        let tile_out = dst.at(item * o * pixels + p0);
                        match &packed {
                            Some(packed) => {
                                tile::product(packed, (o, k, len), cols, ldc, tile_out, pixels)
                            }
                            None => gemm_tile(weights, (o, k, len), cols, ldc, tile_out, pixels),
                        }
                        for (channel, &shift) in bias.iter().enumerate() {
                            let row =
                                std::slice::from_raw_parts_mut(tile_out.add(channel * pixels), len);
                            activation.shift_apply(row, shift);
                        }
                    }
                };
                match direct {
                    true => multiply(&plane[p0..], pixels),
                    // `fill_columns` writes every value of the tile's columns.
                    false => with_scratch(&COLUMNS, k * len, |cols| {
                        fill_columns(cols, plane, (c, h, w), (kh, kw), strides, pads, ow, p0);
                        multiply(cols, len)
                    }),
                }
            })
        })
    })??;
    // SAFETY: the tiles cover every item, output row and pixel, and each wrote its elements.
    unsafe { out.set_len(b * o * pixels) };
    Tensor::from_vec(out, (b, o, oh, ow), &Device::Cpu)
}

/// `out (o x n, row stride ldo) = weights (o x k) * columns (k x n, row stride ldc)` by the
/// `gemm` crate on this thread.
///
/// # Safety
/// As [`tile::product`]: `out` valid for the (o x n) elements and written by this call alone.
unsafe fn gemm_tile(
    weights: &[f32],
    (o, k, n): (usize, usize, usize),
    columns: &[f32],
    ldc: usize,
    out: *mut f32,
    ldo: usize,
) {
    assert!(weights.len() >= o * k && (k == 0 || columns.len() >= (k - 1) * ldc + n));
    // SAFETY: the reads are bounded by the assert, the writes by the caller.
    unsafe {
        gemm::gemm(
            o,
            n,
            k,
            out,
            1,
            ldo as isize,
            false,
            weights.as_ptr(),
            1,
            k as isize,
            columns.as_ptr(),
            1,
            ldc as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// A 1x1 convolution: per item one matrix product (O, C) x (C, H * W) that `gemm` spreads
/// over the threads itself (faster than tiles here: no columns to lay out), then the bias
/// and activation over the output rows in parallel.
fn pointwise(
    x: &Tensor,
    weight: &Tensor,
    bias: &[f32],
    (c, o, pixels): (usize, usize, usize),
    activation: Activation,
    out: &mut [f32],
) -> Result<()> {
    with_values(weight, "weight", |weights| {
        with_values(x, "input", |input| {
            for (item, dst) in out.chunks_mut(o * pixels).enumerate() {
                let plane = &input[item * c * pixels..(item + 1) * c * pixels];
                // SAFETY: `dst` is (o x pixels), `weights` (o x c), `plane` (c x pixels), all
                // row-major and in bounds.
                unsafe {
                    gemm::gemm(
                        o,
                        pixels,
                        c,
                        dst.as_mut_ptr(),
                        1,
                        pixels as isize,
                        false,
                        weights.as_ptr(),
                        1,
                        c as isize,
                        plane.as_ptr(),
                        1,
                        pixels as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(rayon::current_num_threads()),
                    );
                }
            }
        })
    })??;
    out.par_chunks_mut(pixels)
        .enumerate()
        .for_each(|(row, y)| activation.shift_apply(y, bias[row % o]));
    Ok(())
}

/// Lays out the input columns of output pixels `p0..p0 + len` (row-major in a row of `ow`):
/// row `(c, ky, kx)` of `cols` holds, for each of those pixels, the input value that tap sees
/// (0 in the padding).
#[allow(clippy::too_many_arguments)]
fn fill_columns(
    cols: &mut [f32],
    plane: &[f32],
    (c, h, w): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    [top, left, _, _]: [usize; 4],
    ow: usize,
    p0: usize,
) {
    let len = cols.len() / (c * kh * kw);
    for (row, dst) in cols.chunks_mut(len).enumerate() {
        let (channel, tap) = (row / (kh * kw), row % (kh * kw));
        let (ky, kx) = (tap / kw, tap % kw);
        let x = &plane[channel * h * w..(channel + 1) * h * w];
        let (first, end) = inside_columns(kx, left, w, sw, ow);
        let mut p = p0;
        while p < p0 + len {
            let (oy, ox0) = (p / ow, p % ow);
            let ox1 = ow.min(ox0 + p0 + len - p);
            let out = &mut dst[p - p0..p - p0 + (ox1 - ox0)];
            p += ox1 - ox0;
            let iy = (oy * sh + ky) as isize - top as isize;
            let (a, b) = (first.clamp(ox0, ox1), end.clamp(ox0, ox1));
            if iy < 0 || iy >= h as isize || a == b {
                out.fill(0.0);
                continue;
            }
            out[..a - ox0].fill(0.0);
            out[b - ox0..].fill(0.0);
            let src = &x[iy as usize * w..(iy as usize + 1) * w];
            let inside = &mut out[a - ox0..b - ox0];
            let start = a * sw + kx - left;
            let n = inside.len();
            match sw {
                1 => inside.copy_from_slice(&src[start..start + n]),
                // Written out so that the strided loads vectorise.
                2 => {
                    let src = &src[start..start + 2 * n - 1];
                    for (i, v) in inside.iter_mut().enumerate() {
                        *v = src[2 * i];
                    }
                }
                _ => {
                    for (v, &s) in inside.iter_mut().zip(src[start..].iter().step_by(sw)) {
                        *v = s;
                    }
                }
            }
        }
    }
}

/// `ConvTranspose` whose kernel equals its stride (no two taps overlap), unpadded:
/// `x` (B, C, H, W), `weight` (C, O, KH, KW), optional `bias` (O), then `activation`. One
/// matrix product gives every tap of every pixel; a parallel pass paints each output plane.
pub fn conv_transpose_blocks(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    activation: Activation,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (wc, o, kh, kw) = weight.dims4()?;
    if wc != c {
        bail!(
            "conv_transpose: input {:?}, weight {:?}",
            x.dims(),
            weight.dims()
        );
    }
    let bias = match bias {
        Some(t) => with_values(t, "bias", <[f32]>::to_vec)?,
        None => vec![0.0; o],
    };
    let taps = o * kh * kw;
    // (B, O * KH * KW, H, W) = weight^T (O*KH*KW, C) x x (C, H * W), per item: a 1x1
    // convolution on the register tile.
    let wt = weight.reshape((c, taps))?.t()?.contiguous()?;
    let product = conv2d(
        x,
        &wt.reshape((taps, c, 1, 1))?,
        None,
        (1, 1),
        [0; 4],
        Activation::Identity,
    )?;
    let (oh, ow) = (h * kh, w * kw);
    let mut out = vec![0f32; b * o * oh * ow];
    with_values(&product, "product", |product| {
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, dst)| {
                let (item, channel) = (plane / o, plane % o);
                let tap_row = |ky: usize, kx: usize| {
                    let row = (item * taps + (channel * kh + ky) * kw + kx) * h * w;
                    &product[row..row + h * w]
                };
                for (oy, line) in dst.chunks_mut(ow).enumerate() {
                    let (y, ky) = (oy / kh, oy % kh);
                    for kx in 0..kw {
                        let src = &tap_row(ky, kx)[y * w..(y + 1) * w];
                        for (cell, &v) in line.chunks_exact_mut(kw).zip(src) {
                            cell[kx] = v;
                        }
                    }
                    activation.shift_apply(line, bias[channel]);
                }
            })
    })?;
    Tensor::from_vec(out, (b, o, oh, ow), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn conv2d_matches_candle_with_bias_and_activation() -> Result<()> {
        let device = Device::Cpu;
        let cases = [
            ((3, 3), (2, 2), [1, 1, 1, 1], (9, 8), 5),
            ((2, 2), (1, 1), [0, 0, 1, 1], (5, 7), 3),
            ((3, 3), (1, 1), [1, 1, 1, 1], (40, 70), 16),
            ((1, 1), (1, 1), [0, 0, 0, 0], (33, 65), 8),
            ((1, 1), (2, 2), [0, 0, 0, 0], (6, 9), 4),
        ];
        for ((kh, kw), (sh, sw), pads, (h, w), c) in cases {
            let x = Tensor::randn(0f32, 1.0, (2, c, h, w), &device)?;
            let wt = Tensor::randn(0f32, 0.3, (6, c, kh, kw), &device)?;
            let bias = Tensor::randn(0f32, 1.0, 6, &device)?;
            let [t, l, b, r] = pads;
            let padded = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
            let linear = padded
                .conv2d(&wt, 0, sh, 1, 1)?
                .broadcast_add(&bias.reshape((1, 6, 1, 1))?)?;
            for act in [Activation::Identity, Activation::Relu, Activation::Gelu] {
                let ours = conv2d(&x, &wt, Some(&bias), (sh, sw), pads, act)?;
                let theirs = match act {
                    Activation::Relu => linear.relu()?,
                    Activation::Gelu => linear.gelu_erf()?,
                    _ => linear.clone(),
                };
                assert_eq!(ours.dims(), theirs.dims());
                let diff = max_diff(&ours, &theirs)?;
                assert!(diff < 1e-4, "{kh}x{kw} s {sh} {act:?}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn block_transposed_convolution_matches_candle() -> Result<()> {
        let device = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 7, 9), &device)?;
        let wt = Tensor::randn(0f32, 1.0, (5, 3, 2, 2), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 3, &device)?;
        let ours = conv_transpose_blocks(&x, &wt, Some(&bias), Activation::Relu)?;
        let theirs = x
            .conv_transpose2d(&wt, 0, 0, 2, 1)?
            .broadcast_add(&bias.reshape((1, 3, 1, 1))?)?
            .relu()?;
        assert!(max_diff(&ours, &theirs)? < 1e-4);
        Ok(())
    }
}
