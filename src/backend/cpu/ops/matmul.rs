//! Matrix products: `matmul`, `linear` (`x · wᵀ + bias`, on `gemm`) and `linear_small_m`
//! (decoder steps: weight-stationary dot products, AVX when the CPU has it, bit-identical to the
//! portable path).
//!
//! GPU twin: `backend/gpu/kernels/matmul.rs` (`shaders/matmul.wgsl`). Test:
//! `tests/kernels_vs_cpu/matmul.rs`. The int8 GEMM is its own family, `backend/cpu/int8.rs`.

use std::ops::Range;

use super::{gemm_strided, parallelism, SendPtr, ROW_MAJOR, TRANSPOSED};

/// `out[m, n] = a[m, k] · b[k, n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    gemm_strided(
        m,
        n,
        k,
        out,
        ROW_MAJOR(n),
        a,
        ROW_MAJOR(k),
        b,
        ROW_MAJOR(n),
        parallelism(m, n, k),
    );
}

/// A fully connected layer: `out[m, n] = x[m, k] · wᵀ + bias`, with `w` as `[n, k]`.
///
/// Up to [`SMALL_M`] rows (decoder steps: one row per sequence) take `linear_small_m`, which
/// reads the weights once for all rows; more rows go through `gemm`, unless `rowwise` asks that
/// each row get exactly what a call of at most [`SMALL_M`] rows gives it (batched decoding),
/// which `linear_small_m` gives for any `m`.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    rowwise: bool,
    out: &mut [f32],
) {
    debug_assert_eq!(w.len(), n * k);
    if m <= SMALL_M || rowwise {
        linear_small_m(
            SmallM {
                x,
                m,
                k,
                w,
                n,
                bias,
            },
            out,
        );
        return;
    }
    gemm_strided(
        m,
        n,
        k,
        out,
        ROW_MAJOR(n),
        x,
        ROW_MAJOR(k),
        w,
        TRANSPOSED(k),
        parallelism(m, n, k),
    );
    if let Some(b) = bias {
        for row in out[..m * n].chunks_exact_mut(n) {
            for (o, b) in row.iter_mut().zip(b) {
                *o += b;
            }
        }
    }
}

/// Most rows of `x` for which `linear` takes `linear_small_m`.
pub const SMALL_M: usize = 8;

/// Output columns per task of [`linear_small_m`]: 256 weight rows of 384 floats are 384 KiB,
/// enough work to pay for a hand-off, and 200 tasks for the 51864-column logits.
const SMALL_M_BLOCK: usize = 256;

/// Below this many multiply-adds `linear_small_m` stays on one thread.
const SMALL_M_PARALLEL_MIN: usize = 1 << 20;

/// `linear` for a few rows (decoder steps): weight-stationary. Each weight row `w[j]` (`k`
/// contiguous floats) is read from memory once and dotted with every row of `x`, which sits in
/// L1; output columns are split into blocks over the thread pool. The weights are the whole cost
/// (the tied logits projection is 51864 × 384 floats, 80 MB, per step), so m rows cost about
/// what one does. `gemm` reads them once per row on one thread (its GEMV path, m = 1) or, for
/// m > 1, takes its general path, which is compute-bound at these shapes: on tiny.en, 5 rows of
/// the logits projection took 15 ms there and 6 ms here, single-threaded.
///
/// Every output is `dot(x[i], w[j]) + bias[j]` summed in the same order whatever `m`, the
/// thread count or the instruction set, so a sequence's logits do not depend on how many others
/// share its step. Any `m` is accepted (rows beyond [`SMALL_M`] are taken [`SMALL_M`] at a time
/// per weight block): batched decoding relies on this row independence.
fn linear_small_m(p: SmallM<'_>, out: &mut [f32]) {
    use rayon::prelude::*;
    let SmallM {
        x,
        m,
        k,
        w,
        n,
        bias,
    } = p;
    assert!(x.len() >= m * k && w.len() >= n * k && out.len() >= m * n);
    if let Some(b) = bias {
        assert!(b.len() >= n);
    }
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |block: usize| {
        let (j0, j1) = (block * SMALL_M_BLOCK, ((block + 1) * SMALL_M_BLOCK).min(n));
        // More than SMALL_M rows (decoder steps of several windows at once) go through in
        // groups of SMALL_M against the same weight block, which stays in cache meanwhile.
        for i0 in (0..m).step_by(SMALL_M) {
            let rows = SMALL_M.min(m - i0);
            // SAFETY: block `block` writes only columns j0..j1 of rows i0..i0 + rows of `out`
            // (in bounds: asserted above); blocks are disjoint, so no two tasks write one
            // element.
            let block = SmallM {
                x: &x[i0 * k..],
                m: rows,
                ..p
            };
            unsafe { small_m_block(&block, out_ptr.get().add(i0 * n), j0..j1) }
        }
    };
    let blocks = n.div_ceil(SMALL_M_BLOCK);
    if m * n * k >= SMALL_M_PARALLEL_MIN && rayon::current_num_threads() > 1 {
        (0..blocks).into_par_iter().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

/// The operands of one `linear_small_m` call: `x` `[m, k]`, `w` `[n, k]`, `bias` `[n]`.
#[derive(Clone, Copy)]
struct SmallM<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    w: &'a [f32],
    n: usize,
    bias: Option<&'a [f32]>,
}

impl SmallM<'_> {
    /// Columns `cols` of the product, one weight row at a time, each entry by `dot`.
    ///
    /// # Safety
    /// As [`small_m_block`].
    #[inline(always)]
    unsafe fn columns(
        &self,
        out: *mut f32,
        cols: Range<usize>,
        dot: impl Fn(&[f32], &[f32]) -> f32,
    ) {
        let SmallM {
            x,
            m,
            k,
            w,
            n,
            bias,
        } = *self;
        for j in cols {
            let wj = &w[j * k..(j + 1) * k];
            let b = bias.map_or(0.0, |b| b[j]);
            for i in 0..m {
                *out.add(i * n + j) = dot(&x[i * k..(i + 1) * k], wj) + b;
            }
        }
    }
}

/// Columns `cols` of `linear_small_m`, with AVX when the CPU has it (the same arithmetic in
/// the same order: see [`dot`]).
///
/// # Safety
/// `out` must be valid for writes at `i * n + j` for `i < m`, `j` in `cols`, and no other
/// thread may access those elements meanwhile.
unsafe fn small_m_block(p: &SmallM, out: *mut f32, cols: Range<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx") {
            return small_m_block_avx(p, out, cols);
        }
    }
    p.columns(out, cols, dot);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn small_m_block_avx(p: &SmallM, out: *mut f32, cols: Range<usize>) {
    let SmallM {
        x,
        m,
        k,
        w,
        n,
        bias,
    } = *p;
    let (j0, j1) = (cols.start, cols.end);
    // Two weight rows at a time: eight independent add chains instead of four.
    let mut j = j0;
    while m > 1 && j + 2 <= j1 {
        let (w0, w1) = (&w[j * k..(j + 1) * k], &w[(j + 1) * k..(j + 2) * k]);
        let (b0, b1) = bias.map_or((0.0, 0.0), |b| (b[j], b[j + 1]));
        for i in 0..m {
            let (d0, d1) = dot2_avx(&x[i * k..(i + 1) * k], w0, w1);
            *out.add(i * n + j) = d0 + b0;
            *out.add(i * n + j + 1) = d1 + b1;
        }
        j += 2;
    }
    p.columns(out, j..j1, |a, b| dot_avx(a, b));
}

/// `Σ a[i]·b[i]` (equal lengths) over 32 lanes: lane `l` sums the products at `32c + l`, in
/// four groups of 8 (one AVX register each, so four independent add chains); then the groups
/// are added `(g0 + g1) + (g2 + g3)`, the 8 lanes `((l0 + l4) + (l1 + l5)) + ((l2 + l6) +
/// (l3 + l7))`, and the tail (`len % 32` products) in order. [`dot_avx`] is this, vectorised.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 32;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let g: [f32; 8] = std::array::from_fn(|l| (acc[l] + acc[8 + l]) + (acc[16 + l] + acc[24 + l]));
    let mut s = ((g[0] + g[4]) + (g[1] + g[5])) + ((g[2] + g[6]) + (g[3] + g[7]));
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// `(dot(a, b0), dot(a, b1))` with AVX, both bit-identical to [`dot`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn dot2_avx(a: &[f32], b0: &[f32], b1: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let len = a.len().min(b0.len()).min(b1.len());
    let chunks = len / 32;
    let (pa, p0, p1) = (a.as_ptr(), b0.as_ptr(), b1.as_ptr());
    let mut acc0 = [_mm256_setzero_ps(); 4];
    let mut acc1 = [_mm256_setzero_ps(); 4];
    for c in 0..chunks {
        for r in 0..4 {
            let off = c * 32 + r * 8;
            // SAFETY: off + 8 <= chunks * 32 <= len.
            let x = _mm256_loadu_ps(pa.add(off));
            acc0[r] = _mm256_add_ps(acc0[r], _mm256_mul_ps(x, _mm256_loadu_ps(p0.add(off))));
            acc1[r] = _mm256_add_ps(acc1[r], _mm256_mul_ps(x, _mm256_loadu_ps(p1.add(off))));
        }
    }
    let tail = (chunks * 32, len);
    (fold_avx(acc0, a, b0, tail), fold_avx(acc1, a, b1, tail))
}

/// The end of an AVX dot product: its four 8-lane accumulators summed in [`dot`]'s order, then
/// `a[i] * b[i]` added for `i` in `from..len` (the tail the 32-wide chunks left).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn fold_avx(
    acc: [std::arch::x86_64::__m256; 4],
    a: &[f32],
    b: &[f32],
    (from, len): (usize, usize),
) -> f32 {
    use std::arch::x86_64::*;
    let g = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut l = [0.0f32; 8];
    _mm256_storeu_ps(l.as_mut_ptr(), g);
    let mut s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for i in from..len {
        s += a[i] * b[i];
    }
    s
}

/// [`dot`] with AVX: bit-identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn dot_avx(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let len = a.len().min(b.len());
    let chunks = len / 32;
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    for c in 0..chunks {
        for (r, acc) in acc.iter_mut().enumerate() {
            let off = c * 32 + r * 8;
            // SAFETY: off + 8 <= chunks * 32 <= len.
            let p = _mm256_mul_ps(_mm256_loadu_ps(pa.add(off)), _mm256_loadu_ps(pb.add(off)));
            *acc = _mm256_add_ps(*acc, p);
        }
    }
    fold_avx(acc, a, b, (chunks * 32, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::ops::test_data as data;

    #[test]
    fn dot_avx_is_bit_identical_to_dot() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx") {
            for len in [0, 1, 5, 31, 32, 33, 64, 384, 1543] {
                let (a, b, c) = (data(1, len), data(2, len), data(3, len));
                let d = dot(&a, &b);
                // SAFETY: AVX is present (checked above).
                let (d1, (d2, d3)) = unsafe { (dot_avx(&a, &b), dot2_avx(&a, &b, &c)) };
                assert_eq!(d.to_bits(), d1.to_bits(), "len {len}");
                assert_eq!(d.to_bits(), d2.to_bits(), "len {len}");
                assert_eq!(dot(&a, &c).to_bits(), d3.to_bits(), "len {len}");
            }
        }
    }

    #[test]
    fn linear_small_m_matches_f64_and_is_row_independent() {
        let (k, n) = (96, 2000);
        let w = data(4, n * k);
        let b = data(5, n);
        for m in 1..=SMALL_M {
            let x = data(6 + m as u32, m * k);
            let mut out = vec![0.0; m * n];
            linear(&x, m, k, &w, n, Some(&b), false, &mut out);
            for i in 0..m {
                let mut one = vec![0.0; n];
                linear(
                    &x[i * k..(i + 1) * k],
                    1,
                    k,
                    &w,
                    n,
                    Some(&b),
                    false,
                    &mut one,
                );
                for j in 0..n {
                    let want: f64 = b[j] as f64
                        + (0..k)
                            .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                            .sum::<f64>();
                    let got = out[i * n + j];
                    assert!((got as f64 - want).abs() < 1e-5, "m {m} [{i},{j}]");
                    // A row's result does not depend on the other rows of the call.
                    assert_eq!(got.to_bits(), one[j].to_bits(), "m {m} [{i},{j}]");
                }
            }
        }
    }
}
