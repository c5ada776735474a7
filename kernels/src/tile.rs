//! The matrix product of a convolution, `out (O x N) = weights (O x K) * columns (K x N)`, and
//! the depthwise plane, on AVX-512 or (in [`crate::tile_avx2`]) AVX2 + FMA, whichever the CPU
//! has (chosen at run time; on neither the `gemm` crate and plain loops run them).
//!
//! On AVX-512 the columns are read in place: a tile of 12 output channels by 32 pixels keeps
//! its 24 accumulators in registers, and each step over K loads 32 contiguous pixels of one
//! column row and broadcasts 12 weights from a block of the weights packed so that those 12
//! are adjacent; the columns of 32 pixels (K x 128 bytes) stay in L1/L2 while every block of
//! output channels passes over them. The AVX2 kernel packs the columns first (see there):
//! on Zen 3 the in-place rows, a page apart, left it TLB-bound.
// Intrinsics and raw pointers: every pointer below is checked against its slice's length.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels per register tile.
pub(crate) const ROWS: usize = 12;
/// Pixels per register tile (two vectors of 16).
pub(crate) const PIXELS: usize = 32;

/// Whether this CPU runs [`product`] (on AVX-512 or AVX2 + FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx512() || crate::tile_avx2::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The weights (O x K, row-major) packed for [`product`]: for each block of [`ROWS`] output
/// channels, K groups of [`ROWS`] weights (zeros past the last channel).
pub(crate) fn pack_weights(weights: &[f32], o: usize, k: usize) -> Vec<f32> {
    let blocks = o.div_ceil(ROWS);
    let mut packed = vec![0f32; blocks * k * ROWS];
    for (row, w) in weights.chunks(k).take(o).enumerate() {
        let (block, r) = (row / ROWS, row % ROWS);
        for (kk, &v) in w.iter().enumerate() {
            packed[(block * k + kk) * ROWS + r] = v;
        }
    }
    packed
}

/// `out[r][p] = sum_k weights[r][k] * columns[k][p]` for the `o` output rows and pixels
/// `0..n`: `columns` has row stride `ldc`, `out` row stride `ldo`; `packed` is
/// [`pack_weights`] of the (o x k) weights. Panics if an input slice is too short (callers
/// size them from the same shapes) or when [`available`] is false.
///
/// # Safety
/// `out` must be valid for writes at `r * ldo + p` for every `r < o`, `p < n`, and no other
/// thread may access those elements during the call.
pub(crate) unsafe fn product(
    packed: &[f32],
    (o, k, n): (usize, usize, usize),
    columns: &[f32],
    ldc: usize,
    out: *mut f32,
    ldo: usize,
) {
    if o == 0 || n == 0 {
        return;
    }
    assert!(available(), "neither AVX-512 nor AVX2 + FMA is available");
    assert!(packed.len() >= o.div_ceil(ROWS) * k * ROWS);
    assert!(k == 0 || columns.len() >= (k - 1) * ldc + n);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the kernel's features (asserted, chosen here); the asserts above
    // bound the reads, the caller the writes.
    unsafe {
        match has_avx512() {
            true => product_avx512(packed, (o, k, n), columns, ldc, out, ldo),
            false => crate::tile_avx2::product(packed, (o, k, n), columns, ldc, out, ldo),
        }
    }
}

/// Columns (K x N, row-major) laid out once for many products ([`product_on`]), as a linear
/// layer's weights are: on AVX2 in that kernel's panels, so that no product packs them again
/// (packing a layer's weights on every call took a tenth of the caption encoder's time); on
/// AVX-512 as given, read in place.
pub(crate) struct Columns {
    values: Vec<f32>,
    k: usize,
    n: usize,
    panels: bool,
}

impl Columns {
    /// `columns`: k rows of n. Panics if it holds fewer values.
    pub(crate) fn new(columns: Vec<f32>, k: usize, n: usize) -> Self {
        assert!(columns.len() >= k * n);
        #[cfg(target_arch = "x86_64")]
        if !has_avx512() && crate::tile_avx2::available() {
            let panel = crate::tile_avx2::PANEL;
            let mut panels = vec![0f32; n.div_ceil(panel) * panel * k];
            // SAFETY: the CPU has AVX2 and FMA (checked above); the sizes are asserted inside.
            unsafe { crate::tile_avx2::pack_panels(&columns, n, (k, 0, n), &mut panels) };
            return Self {
                values: panels,
                k,
                n,
                panels: true,
            };
        }
        Self {
            values: columns,
            k,
            n,
            panels: false,
        }
    }
}

/// As [`product`], on the columns `c0..c0 + len` of `columns` (`c0` a multiple of [`PIXELS`]).
///
/// # Safety
/// As [`product`], for `o` rows and `len` pixels of `out`.
pub(crate) unsafe fn product_on(
    packed: &[f32],
    o: usize,
    columns: &Columns,
    (c0, len): (usize, usize),
    out: *mut f32,
    ldo: usize,
) {
    let (k, n) = (columns.k, columns.n);
    assert!(c0.is_multiple_of(PIXELS) && c0 + len <= n);
    #[cfg(target_arch = "x86_64")]
    if columns.panels {
        let panels =
            &columns.values[(c0 / crate::tile_avx2::PANEL) * k * crate::tile_avx2::PANEL..];
        // SAFETY: panels exist only where AVX2 and FMA do ([`Columns::new`]); the panels
        // from `c0` hold `len` pixels of k rows; the caller promises the output.
        unsafe {
            crate::tile_avx2::on_panels(
                packed,
                (o, k, len),
                panels,
                out,
                ldo,
                crate::tile_avx2::DEPTH,
            )
        };
        return;
    }
    // SAFETY: as the caller promises.
    unsafe { product(packed, (o, k, len), &columns.values[c0..], n, out, ldo) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_avx512(
    packed: &[f32],
    (o, k, n): (usize, usize, usize),
    columns: &[f32],
    ldc: usize,
    out: *mut f32,
    ldo: usize,
) {
    for p0 in (0..n).step_by(PIXELS) {
        let width = PIXELS.min(n - p0);
        let lanes = |from: usize| -> __mmask16 {
            let count = width.saturating_sub(from).min(16);
            ((1u32 << count) - 1) as __mmask16
        };
        let (m0, m1) = (lanes(0), lanes(16));
        for block in 0..o.div_ceil(ROWS) {
            let rows = ROWS.min(o - block * ROWS);
            let w = packed[block * k * ROWS..].as_ptr();
            let x = columns[p0..].as_ptr();
            // SAFETY: `product`'s asserts bound the column rows (k of them, `ldc` apart, 32
            // wide at most, masked at the end) and the packed block; its caller the output.
            unsafe {
                let dst = out.add(block * ROWS * ldo + p0);
                tile(w, k, x, ldc, dst, ldo, rows, (m0, m1));
            }
        }
    }
}

/// One 12 x 32 tile: `rows` output rows written (masked to the pixels in `masks`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    w: *const f32,
    k: usize,
    x: *const f32,
    ldc: usize,
    dst: *mut f32,
    ldo: usize,
    rows: usize,
    (m0, m1): (__mmask16, __mmask16),
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    for kk in 0..k {
        // SAFETY: within the bounds `product` checked.
        unsafe {
            let xr = x.add(kk * ldc);
            let x0 = _mm512_maskz_loadu_ps(m0, xr);
            let x1 = _mm512_maskz_loadu_ps(m1, xr.add(16));
            let wr = w.add(kk * ROWS);
            for (r, a) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*wr.add(r));
                a[0] = _mm512_fmadd_ps(wv, x0, a[0]);
                a[1] = _mm512_fmadd_ps(wv, x1, a[1]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate().take(rows) {
        // SAFETY: output row `r` of this tile, masked to its pixels.
        unsafe {
            let d = dst.add(r * ldo);
            _mm512_mask_storeu_ps(d, m0, a[0]);
            _mm512_mask_storeu_ps(d.add(16), m1, a[1]);
        }
    }
}

/// Output pixels per step of [`depthwise_plane`]: eight vectors, enough independent
/// multiply-adds to hide their latency.
const DEPTHWISE_PIXELS: usize = 128;
// The padded rows are sized for this step; the AVX2 kernel's step must divide it.
#[cfg(target_arch = "x86_64")]
const _: () = assert!(DEPTHWISE_PIXELS.is_multiple_of(crate::tile_avx2::DEPTHWISE_PIXELS));

/// One plane of a depthwise convolution with stride 1: `x` (h x w) with zero padding
/// `[top, left, bottom, right]`, a `kh x kw` `kernel`, plus `bias`, into `out` (oh x ow).
/// The plane is first copied into a zero-padded buffer, so that every tap is one unaligned
/// load per 16 pixels with no edge cases. Panics when [`available`] is false or `out` is not
/// (oh x ow).
pub(crate) fn depthwise_plane(
    x: &[f32],
    (h, w): (usize, usize),
    kernel: &[f32],
    (kh, kw): (usize, usize),
    [top, left, bottom, right]: [usize; 4],
    bias: f32,
    out: &mut [f32],
) {
    let (oh, ow) = (h + top + bottom + 1 - kh, w + left + right + 1 - kw);
    assert!(available(), "neither AVX-512 nor AVX2 + FMA is available");
    assert!(x.len() == h * w && kernel.len() == kh * kw && out.len() == oh * ow);
    // Row stride of the padded plane: every load of a step stays inside its row.
    let stride = ow.div_ceil(DEPTHWISE_PIXELS) * DEPTHWISE_PIXELS + kw;
    let rows = h + top + bottom;
    let mut padded = vec![0f32; rows * stride];
    for (y, src) in x.chunks(w).enumerate() {
        let at = (y + top) * stride + left;
        padded[at..at + w].copy_from_slice(src);
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the kernel's features (asserted, chosen here); every load reads row
    // `oy + ky < rows` of `padded` at columns below `stride` (a multiple of both kernels'
    // steps, plus `kw`), and every store is masked to `out`'s row.
    unsafe {
        match has_avx512() {
            true => depthwise_avx512(&padded, stride, kernel, (kh, kw), bias, out, (oh, ow)),
            false => {
                crate::tile_avx2::depthwise(&padded, stride, kernel, (kh, kw), bias, out, (oh, ow))
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn depthwise_avx512(
    padded: &[f32],
    stride: usize,
    kernel: &[f32],
    (kh, kw): (usize, usize),
    bias: f32,
    out: &mut [f32],
    (oh, ow): (usize, usize),
) {
    const VECTORS: usize = DEPTHWISE_PIXELS / 16;
    for oy in 0..oh {
        for x0 in (0..ow).step_by(DEPTHWISE_PIXELS) {
            let mut acc = [_mm512_set1_ps(bias); VECTORS];
            for ky in 0..kh {
                let row = padded[(oy + ky) * stride + x0..].as_ptr();
                for kx in 0..kw {
                    let tap = _mm512_set1_ps(kernel[ky * kw + kx]);
                    for (v, a) in acc.iter_mut().enumerate() {
                        // SAFETY: x0 + 16 v + kx + 16 <= stride: inside the padded row.
                        let input = unsafe { _mm512_loadu_ps(row.add(16 * v + kx)) };
                        *a = _mm512_fmadd_ps(input, tap, *a);
                    }
                }
            }
            let dst = out[oy * ow + x0..].as_mut_ptr();
            for (v, a) in acc.iter().enumerate() {
                let count = ow.saturating_sub(x0 + 16 * v).min(16);
                if count == 0 {
                    break;
                }
                let mask = ((1u32 << count) - 1) as __mmask16;
                // SAFETY: masked to the `count` pixels left in this output row.
                unsafe { _mm512_mask_storeu_ps(dst.add(16 * v), mask, *a) };
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks a product kernel (called as [`product`]) against a plain triple loop on shapes
    /// with partial tiles of rows and pixels.
    pub(crate) fn check_product(
        run: impl Fn(&[f32], (usize, usize, usize), &[f32], usize, *mut f32, usize),
    ) {
        for (o, k, n) in [
            (1, 1, 1),
            (12, 7, 8),
            (12, 7, 32),
            (25, 33, 77),
            (5, 48, 100),
            (24, 3, 15),
            // Past the AVX2 kernel's packed blocks (64 pixels), a partial panel last.
            (13, 20, 300),
            (7, 5, 129),
            (6, 9, 70),
            // Deeper than the AVX2 kernel's pass over K (256): the passes add up.
            (14, 600, 37),
        ] {
            let (ldc, ldo) = (n + 3, n + 5);
            let weights: Vec<f32> = (0..o * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            let columns: Vec<f32> = (0..k * ldc).map(|i| ((i * 5) % 11) as f32 * 0.5).collect();
            let mut out = vec![f32::NAN; (o - 1) * ldo + n];
            let packed = pack_weights(&weights, o, k);
            run(&packed, (o, k, n), &columns, ldc, out.as_mut_ptr(), ldo);
            for r in 0..o {
                for p in 0..n {
                    let want: f32 = (0..k)
                        .map(|i| weights[r * k + i] * columns[i * ldc + p])
                        .sum();
                    let got = out[r * ldo + p];
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{o}x{k}x{n}"
                    );
                }
            }
        }
    }

    #[test]
    fn product_matches_a_plain_triple_loop() {
        // The kernel this CPU dispatches to; `tile_avx2`'s test checks the AVX2 one directly.
        if !available() {
            return;
        }
        // SAFETY: `check_product` passes `out` holding o rows of `ldo`.
        check_product(|packed, shape, columns, ldc, out, ldo| unsafe {
            product(packed, shape, columns, ldc, out, ldo)
        });
    }
}
