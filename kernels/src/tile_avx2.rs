//! The AVX2 + FMA twins of [`crate::tile`]'s AVX-512 kernels, for CPUs without AVX-512 (Zen 2
//! and 3, most Intel client cores): the same packed weights (blocks of 12 output channels), a
//! register tile of 6 channels (half a block) by 16 pixels (12 ymm accumulators, two column
//! loads and six broadcasts per step over K) on columns packed 64 pixels at a time, and the
//! depthwise step at 64 pixels.
// Intrinsics and raw pointers: the callers in `tile` check every bound first.
#![allow(unsafe_code)]
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use crate::tile::ROWS;

/// Pixels per register tile: two vectors of 8.
const PIXELS: usize = 16;
/// Output channels per register tile: half a packed block.
const HALF: usize = ROWS / 2;

/// Whether this CPU runs these kernels.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// A mask of the first `count` (at most 8) of 8 lanes, for masked loads and stores.
#[target_feature(enable = "avx2")]
fn lanes(count: usize) -> __m256i {
    let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(count.min(8) as i32), index)
}

/// Pixels packed at a time: four panels of [`PIXELS`], each contiguous over K (K x 256 bytes,
/// in L1/L2 while every tile of output channels passes over it; 128 and 256 measured no faster).
const BLOCK: usize = 64;

thread_local! {
    /// Each thread's packed panels, kept between calls (up to K x [`BLOCK`] values).
    static PANELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// As `tile::product`, on AVX2 + FMA. The columns are first packed, [`BLOCK`] pixels at a
/// time, into panels of 16 pixels contiguous over K (zeros past the last pixel): read in
/// place, every step over K of every tile touched another page (the rows are `ldc` apart),
/// and the TLB misses halved the kernel's speed.
///
/// # Safety
/// The CPU has AVX2 and FMA; `packed` holds the blocks of `o` rows of `k`; `columns` holds `k`
/// rows of `n` at stride `ldc`; `out` is valid for writes at `r * ldo + p`, `r < o`, `p < n`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn product(
    packed: &[f32],
    (o, k, n): (usize, usize, usize),
    columns: &[f32],
    ldc: usize,
    out: *mut f32,
    ldo: usize,
) {
    // `pack_panels` writes every value the tiles read.
    crate::with_scratch(&PANELS, k * BLOCK, |panels| {
        for b0 in (0..n).step_by(BLOCK) {
            let width = BLOCK.min(n - b0);
            pack_panels(columns, ldc, (k, b0, width), panels);
            // SAFETY: as this function's contract; the panels hold `width` pixels of k rows.
            unsafe { on_panels(packed, (o, k, width), panels, out.add(b0), ldo, k) };
        }
    })
}

/// Pixels per panel of [`pack_panels`] and [`on_panels`].
pub(crate) const PANEL: usize = PIXELS;

/// As [`product`], on columns already packed into panels (`panels` holds `n.div_ceil(16)`
/// panels of k x 16 values, zeros past the last pixel), in passes of `depth` steps over K
/// that add up in `out`: the tiles of output rows over each panel.
///
/// # Safety
/// The CPU has AVX2 and FMA; `packed` holds the blocks of `o` rows of `k`; `out` is valid for
/// writes at `r * ldo + p`, `r < o`, `p < n`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn on_panels(
    packed: &[f32],
    (o, k, n): (usize, usize, usize),
    panels: &[f32],
    out: *mut f32,
    ldo: usize,
    depth: usize,
) {
    assert!(panels.len() >= n.div_ceil(PIXELS) * k * PIXELS);
    assert!(packed.len() >= o.div_ceil(ROWS) * k * ROWS);
    for k0 in (0..k).step_by(depth.max(1)) {
        let depth = depth.min(k - k0);
        for row0 in (0..o).step_by(HALF) {
            let (block, half) = (row0 / ROWS, (row0 % ROWS) / HALF);
            let w = packed[(block * k + k0) * ROWS + half * HALF..].as_ptr();
            for p0 in (0..n).step_by(PIXELS) {
                let x = panels[((p0 / PIXELS) * k + k0) * PIXELS..].as_ptr();
                // SAFETY: the panel holds k x 16 values, the block k x 12 (asserted); the
                // caller promises the output, written by the first step over K.
                unsafe {
                    let dst = out.add(row0 * ldo + p0);
                    let rows = HALF.min(o - row0);
                    tile(w, depth, x, dst, ldo, (rows, n - p0), k0 > 0);
                }
            }
        }
    }
}

/// Steps over K per pass of [`on_panels`] for columns packed once ([`crate::tile::Columns`]):
/// a 6-row tile's weights and its panels' part stay in L1/L2 (whole, a linear layer of 1536
/// inputs ran at 78 GFLOP/s on two threads, 95 in passes of 256). The convolutions' products
/// run in one pass: passes measured no faster there.
pub(crate) const DEPTH: usize = 256;

/// Copies pixels `b0..b0 + width` of the `k` column rows into `panels`: panel `j` holds
/// pixels `16 j..16 j + 16` of every row, contiguous, zeros past `width`. (Vector loads:
/// `copy_from_slice` of 64 bytes is a call to `memmove`, a tenth of the detector's time.)
#[target_feature(enable = "avx2,fma")]
pub(crate) fn pack_panels(
    columns: &[f32],
    ldc: usize,
    (k, b0, width): (usize, usize, usize),
    panels: &mut [f32],
) {
    assert!(k == 0 || columns.len() >= (k - 1) * ldc + b0 + width);
    assert!(panels.len() >= k * width.div_ceil(PIXELS) * PIXELS);
    let (full, tail) = (width / PIXELS, width % PIXELS);
    let (m0, m1) = (lanes(tail), lanes(tail.saturating_sub(8)));
    for j in 0..width.div_ceil(PIXELS) {
        let src = columns[b0 + j * PIXELS..].as_ptr();
        let dst = panels[j * k * PIXELS..].as_mut_ptr();
        for kk in 0..k {
            // SAFETY: row `kk` of the columns holds the panel's pixels from `b0 + 16 j`
            // (asserted above, masked past `width`); the panel holds `k` x 16.
            unsafe {
                let (s, d) = (src.add(kk * ldc), dst.add(kk * PIXELS));
                let (x0, x1) = match j < full {
                    true => (_mm256_loadu_ps(s), _mm256_loadu_ps(s.add(8))),
                    false => (_mm256_maskload_ps(s, m0), _mm256_maskload_ps(s.add(8), m1)),
                };
                _mm256_storeu_ps(d, x0);
                _mm256_storeu_ps(d.add(8), x1);
            }
        }
    }
}

/// One 6 x 16 tile on a packed panel (`k` steps of 16 pixels): `rows` output rows written,
/// `width` pixels of each (masked when under 16), added to what they hold with `accumulate`.
/// The six weights of each step over K are adjacent, the steps [`ROWS`] apart.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(
    w: *const f32,
    k: usize,
    x: *const f32,
    dst: *mut f32,
    ldo: usize,
    (rows, width): (usize, usize),
    accumulate: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; HALF];
    for kk in 0..k {
        // SAFETY: the panel holds k x 16 values; the packed block k x [`ROWS`].
        unsafe {
            let xr = x.add(kk * PIXELS);
            let (x0, x1) = (_mm256_loadu_ps(xr), _mm256_loadu_ps(xr.add(8)));
            let wr = w.add(kk * ROWS);
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&*wr.add(r));
                a[0] = _mm256_fmadd_ps(wv, x0, a[0]);
                a[1] = _mm256_fmadd_ps(wv, x1, a[1]);
            }
        }
    }
    // Plain stores where the tile is whole: AMD's masked stores are microcoded.
    let (m0, m1) = (lanes(width), lanes(width.saturating_sub(8)));
    for (r, a) in acc.iter().enumerate().take(rows) {
        // SAFETY: output row `r` of this tile, masked to its pixels unless all 16 are in.
        unsafe {
            let d = dst.add(r * ldo);
            let (mut a0, mut a1) = (a[0], a[1]);
            match width >= PIXELS {
                true => {
                    if accumulate {
                        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(d));
                        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(d.add(8)));
                    }
                    _mm256_storeu_ps(d, a0);
                    _mm256_storeu_ps(d.add(8), a1);
                }
                false => {
                    if accumulate {
                        a0 = _mm256_add_ps(a0, _mm256_maskload_ps(d, m0));
                        a1 = _mm256_add_ps(a1, _mm256_maskload_ps(d.add(8), m1));
                    }
                    _mm256_maskstore_ps(d, m0, a0);
                    _mm256_maskstore_ps(d.add(8), m1, a1);
                }
            }
        }
    }
}

/// Output pixels per step of [`depthwise`] (divides `tile`'s step, asserted there, so the
/// padded rows fit).
pub(crate) const DEPTHWISE_PIXELS: usize = 64;

/// As `tile::depthwise_plane` past its padding, on AVX2 + FMA.
///
/// # Safety
/// The CPU has AVX2 and FMA; `padded` holds `oh + kh - 1` rows of `stride`, with
/// `stride >= ceil(ow / 64) * 64 + kw`; `out` is (oh x ow).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn depthwise(
    padded: &[f32],
    stride: usize,
    kernel: &[f32],
    (kh, kw): (usize, usize),
    bias: f32,
    out: &mut [f32],
    (oh, ow): (usize, usize),
) {
    const VECTORS: usize = DEPTHWISE_PIXELS / 8;
    for oy in 0..oh {
        for x0 in (0..ow).step_by(DEPTHWISE_PIXELS) {
            let mut acc = [_mm256_set1_ps(bias); VECTORS];
            for ky in 0..kh {
                let row = padded[(oy + ky) * stride + x0..].as_ptr();
                for kx in 0..kw {
                    let tap = _mm256_set1_ps(kernel[ky * kw + kx]);
                    for (v, a) in acc.iter_mut().enumerate() {
                        // SAFETY: x0 + 8 v + kx + 8 <= stride: inside the padded row.
                        let input = unsafe { _mm256_loadu_ps(row.add(8 * v + kx)) };
                        *a = _mm256_fmadd_ps(input, tap, *a);
                    }
                }
            }
            let dst = out[oy * ow + x0..].as_mut_ptr();
            for (v, a) in acc.iter().enumerate() {
                let count = ow.saturating_sub(x0 + 8 * v);
                if count == 0 {
                    break;
                }
                // SAFETY: masked to the pixels left in this output row (all 8: a plain store).
                unsafe {
                    match count >= 8 {
                        true => _mm256_storeu_ps(dst.add(8 * v), *a),
                        false => _mm256_maskstore_ps(dst.add(8 * v), lanes(count), *a),
                    }
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::tests::check_product;

    #[test]
    fn product_matches_a_plain_triple_loop() {
        if !available() {
            return;
        }
        // SAFETY: AVX2 + FMA are available; `check_product` passes `out` holding o rows of
        // `ldo` and the packed weights and columns of the shape.
        check_product(|packed, shape, columns, ldc, out, ldo| unsafe {
            product(packed, shape, columns, ldc, out, ldo)
        });
    }

    #[test]
    fn depthwise_matches_a_plain_loop() {
        if !available() {
            return;
        }
        for (oh, ow, kh, kw) in [
            (3usize, 5usize, 3usize, 3usize),
            (2, 70, 5, 5),
            (1, 64, 1, 3),
        ] {
            let stride = ow.div_ceil(128) * 128 + kw;
            let rows = oh + kh - 1;
            let padded: Vec<f32> = (0..rows * stride)
                .map(|i| ((i * 3) % 7) as f32 - 3.0)
                .collect();
            let kernel: Vec<f32> = (0..kh * kw).map(|i| (i % 5) as f32 * 0.25).collect();
            let mut out = vec![f32::NAN; oh * ow];
            // SAFETY: AVX2 + FMA are available; `padded` and `out` have the sizes required.
            unsafe { depthwise(&padded, stride, &kernel, (kh, kw), 0.5, &mut out, (oh, ow)) };
            for y in 0..oh {
                for x in 0..ow {
                    let mut want = 0.5f32;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            want += padded[(y + ky) * stride + x + kx] * kernel[ky * kw + kx];
                        }
                    }
                    assert!(
                        (out[y * ow + x] - want).abs() < 1e-4,
                        "{oh}x{ow} k{kh}x{kw}"
                    );
                }
            }
        }
    }
}
