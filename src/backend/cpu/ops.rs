//! The CPU reference ops. Each is the twin of a WGSL kernel in `shaders/` and is written to be
//! checked by eye; speed comes from the `gemm` crate for every matrix product, except the few-row
//! products of decoder steps (`linear_small_m`: the weights read once for all rows).
//!
//! Layout conventions (all row-major):
//! - activations are `[rows, cols]`, e.g. `[n_ctx, n_state]`;
//! - linear weights are PyTorch's `[out_features, in_features]`;
//! - conv1d weights are `[c_out, c_in, kernel]`.

use gemm::Parallelism;

/// Define `fn` twice, for the baseline instruction set and with AVX2, and pick at run time:
/// the loops of these element-wise ops vectorise 8 wide instead of 4. Rust never fuses a
/// multiply and an add on its own, so both versions compute the same bits.
macro_rules! with_avx2 {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($a: $t),*) $(-> $ret)? {
                    body($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

/// Below this many multiply-adds a matrix product runs on one thread: thread hand-off costs more
/// than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    }
}

/// A strided view of a matrix for `gemm`: element (i, j) is at `ptr[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct View {
    rs: isize,
    cs: isize,
}

const ROW_MAJOR: fn(usize) -> View = |cols| View {
    rs: cols as isize,
    cs: 1,
};
const TRANSPOSED: fn(usize) -> View = |cols| View {
    rs: 1,
    cs: cols as isize,
};

/// `dst[m, n] = lhs[m, k] · rhs[k, n]` (overwriting `dst`), with explicit strides.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_v: View,
    lhs: &[f32],
    lhs_v: View,
    rhs: &[f32],
    rhs_v: View,
    par: Parallelism,
) {
    // Bounds: the last element each operand touches must be inside its slice.
    let last = |v: View, r: usize, c: usize| {
        (r.saturating_sub(1) as isize * v.rs + c.saturating_sub(1) as isize * v.cs) as usize
    };
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() > last(dst_v, m, n), "gemm dst too small");
    if k > 0 {
        assert!(lhs.len() > last(lhs_v, m, k), "gemm lhs too small");
        assert!(rhs.len() > last(rhs_v, k, n), "gemm rhs too small");
    }
    // SAFETY: the asserts above keep every index gemm computes from (m, n, k, strides) inside
    // the slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_v.cs,
            dst_v.rs,
            false,
            lhs.as_ptr(),
            lhs_v.cs,
            lhs_v.rs,
            rhs.as_ptr(),
            rhs_v.cs,
            rhs_v.rs,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

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
/// Up to [`SMALL_M`] rows (decoder steps: one row per sequence) take [`linear_small_m`], which
/// reads the weights once for all rows; more rows go through `gemm`.
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    debug_assert_eq!(w.len(), n * k);
    if m <= SMALL_M {
        linear_small_m(x, m, k, w, n, bias, out);
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

/// Most rows of `x` for which `linear` takes [`linear_small_m`].
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
pub fn linear_small_m(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
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
            unsafe {
                small_m_block(
                    &x[i0 * k..],
                    rows,
                    k,
                    w,
                    n,
                    bias,
                    out_ptr.get().add(i0 * n),
                    j0,
                    j1,
                )
            }
        }
    };
    let blocks = n.div_ceil(SMALL_M_BLOCK);
    if m * n * k >= SMALL_M_PARALLEL_MIN && rayon::current_num_threads() > 1 {
        (0..blocks).into_par_iter().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

thread_local! {
    /// Per-thread scratch of `attention` (scores and one head's result).
    static ATTENTION_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A raw output pointer handed to the tasks of `linear_small_m`, which write disjoint elements.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: see `linear_small_m`: tasks write disjoint elements through it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Columns `j0..j1` of `linear_small_m`, with AVX when the CPU has it (the same arithmetic in
/// the same order: see [`dot`]).
///
/// # Safety
/// `out` must be valid for writes at `i * n + j` for `i < m`, `j0 <= j < j1`, and no other thread
/// may access those elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn small_m_block(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    j0: usize,
    j1: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx") {
            return small_m_block_avx(x, m, k, w, n, bias, out, j0, j1);
        }
    }
    for j in j0..j1 {
        let wj = &w[j * k..(j + 1) * k];
        let b = bias.map_or(0.0, |b| b[j]);
        for i in 0..m {
            *out.add(i * n + j) = dot(&x[i * k..(i + 1) * k], wj) + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[allow(clippy::too_many_arguments)]
unsafe fn small_m_block_avx(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    out: *mut f32,
    j0: usize,
    j1: usize,
) {
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
    for j in j..j1 {
        let wj = &w[j * k..(j + 1) * k];
        let b = bias.map_or(0.0, |b| b[j]);
        for i in 0..m {
            *out.add(i * n + j) = dot_avx(&x[i * k..(i + 1) * k], wj) + b;
        }
    }
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
    let fold = |acc: [__m256; 4], b: &[f32]| {
        let g = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut l = [0.0f32; 8];
        _mm256_storeu_ps(l.as_mut_ptr(), g);
        let mut s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for i in chunks * 32..len {
            s += a[i] * b[i];
        }
        s
    };
    (fold(acc0, b0), fold(acc1, b1))
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
    let g = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut l = [0.0f32; 8];
    _mm256_storeu_ps(l.as_mut_ptr(), g);
    let mut s = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
    for i in chunks * 32..len {
        s += a[i] * b[i];
    }
    s
}

with_avx2! {
/// Layer normalisation over each row of `x` (`cols` wide), eps as PyTorch's default 1e-5.
pub fn layer_norm(x: &[f32], cols: usize, gamma: &[f32], beta: &[f32], out: &mut [f32]) {
    const EPS: f32 = 1e-5;
    for (row, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = row.iter().sum::<f32>() / cols as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + EPS).sqrt();
        for i in 0..cols {
            o[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}
}

with_avx2! {
/// GELU in the erf form OpenAI's Whisper uses (`torch.nn.functional.gelu`, not the tanh form).
pub fn gelu(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}
}

/// `e^x` in f32, written so the compiler vectorises loops over it (`f32::exp` is a libm call per
/// element, which made softmax and GELU cost as much as the encoder's matrix products).
/// Cephes `expf`: x = n·ln2 + r with |r| ≤ ln2/2, a degree-6 polynomial for e^r, then 2^n via
/// the exponent bits. Relative error ≤ 2 ulp over the normal range; 0 below −87.3 (underflow),
/// so masked scores (−∞) give exactly 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer without a round instruction.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.3);
    let n = (xc * LOG2_E + ROUND) - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else {
        er * scale
    }
}

/// The error function, vectorisable: Abramowitz & Stegun 7.1.26, absolute error ≤ 1.5e-7 (the
/// size of f32 rounding near 1), so GELU's error is ≤ 0.75e-7·|x|.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

with_avx2! {
/// `a += b`, elementwise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}
}

with_avx2! {
/// Numerically stable softmax of each `cols`-wide row, in place.
pub fn softmax_rows(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let max = lanes_reduce(row, f32::NEG_INFINITY, f32::max);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / lanes_reduce(row, 0.0, |a, b| a + b);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}
}

with_avx2! {
/// `ln Σ exp(x)`, stable (the max is factored out); −∞ for an empty or all −∞ input. Vectorised:
/// it runs over the whole vocabulary at every decoding step.
pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = lanes_reduce(x, f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += exp(c[i] - max);
        }
    }
    let sum = acc.iter().sum::<f32>() + tail.iter().map(|&v| exp(v - max)).sum::<f32>();
    max + sum.ln()
}
}

/// Reduce `x` with `f` over 8 independent lanes, then across them: the same association a SIMD
/// reduction uses, which lets the compiler vectorise it (a single accumulator cannot be).
fn lanes_reduce(x: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = f(acc[i], c[i]);
        }
    }
    let mut r = acc.into_iter().fold(init, &f);
    for &v in tail {
        r = f(r, v);
    }
    r
}

/// Output length of a kernel-3, padding-1 convolution.
pub fn conv1d_out_len(t_in: usize, stride: usize) -> usize {
    (t_in + 2 - 3) / stride + 1
}

/// 1-D convolution, kernel 3, padding 1, as Whisper's encoder stem.
/// `input` is `[c_in, t_in]` (channels first, as the mel is); the result is written transposed,
/// `[t_out, c_out]`, because the transformer that follows wants time-major rows.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_k3(
    input: &[f32],
    c_in: usize,
    t_in: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    stride: usize,
    out: &mut [f32],
) {
    let t_out = conv1d_out_len(t_in, stride);
    // im2col, time-major: row t holds input[c, t*stride + j - 1] for every (c, j).
    let mut cols = vec![0.0f32; t_out * c_in * 3];
    for t in 0..t_out {
        let row = &mut cols[t * c_in * 3..(t + 1) * c_in * 3];
        for c in 0..c_in {
            for j in 0..3 {
                let src = (t * stride + j) as isize - 1;
                if src >= 0 && (src as usize) < t_in {
                    row[c * 3 + j] = input[c * t_in + src as usize];
                }
            }
        }
    }
    linear(&cols, t_out, c_in * 3, weight, c_out, Some(bias), out);
}

/// Multi-head scaled dot-product attention.
///
/// `q` is `[n_q, d]`, `k` and `v` are `[n_kv, d]` with `d = n_head * head_dim`; heads are
/// contiguous column blocks. With `causal_offset = Some(p)`, query `i` sits at absolute position
/// `p + i` and sees keys `0..=p + i` (the decoder's self-attention over its KV cache); `None`
/// lets every query see every key (encoder self-attention, cross-attention).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_kv: usize,
    d: usize,
    n_head: usize,
    causal_offset: Option<usize>,
    out: &mut [f32],
) {
    attention_in(
        q,
        k,
        v,
        KvLayout::Rows,
        n_q,
        n_kv,
        d,
        n_head,
        causal_offset,
        out,
    );
}

/// How keys and values are laid out for [`attention_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvLayout {
    /// `[n_kv, d]`, heads as column blocks: activations as the projections write them.
    Rows,
    /// `[n_head, n_kv, head_dim]`, each head's rows contiguous ([`to_head_major`]): the
    /// decoder's cross-attention keys and values, computed once per window and streamed at
    /// every step, read as one sequential block per head instead of a 256-byte slice of every
    /// 1536-byte row.
    Heads,
}

impl KvLayout {
    /// (offset of head `h`'s first row, distance between its rows).
    fn head(self, h: usize, n_kv: usize, d: usize, hd: usize) -> (usize, usize) {
        match self {
            KvLayout::Rows => (h * hd, d),
            KvLayout::Heads => (h * n_kv * hd, hd),
        }
    }
}

/// `[n, n_head * head_dim]` rows -> `[n_head, n, head_dim]` ([`KvLayout::Heads`]).
pub fn to_head_major(x: &[f32], n: usize, d: usize, n_head: usize, out: &mut Vec<f32>) {
    let hd = d / n_head;
    out.clear();
    out.reserve(n * d);
    for h in 0..n_head {
        for row in x[..n * d].chunks_exact(d) {
            out.extend_from_slice(&row[h * hd..(h + 1) * hd]);
        }
    }
}

/// [`attention`] with keys and values in `layout` (queries and output are always rows).
#[allow(clippy::too_many_arguments)]
pub fn attention_in(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    layout: KvLayout,
    n_q: usize,
    n_kv: usize,
    d: usize,
    n_head: usize,
    causal_offset: Option<usize>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    let hd = d / n_head;
    let scale = 1.0 / (hd as f32).sqrt();
    assert!(out.len() >= n_q * d, "attention out too small");
    assert!(
        k.len() >= n_kv * d && v.len() >= n_kv * d,
        "attention keys/values too small"
    );
    if n_q <= SMALL_M {
        attention_few_queries(q, k, v, layout, n_q, n_kv, d, n_head, causal_offset, out);
        return;
    }
    let out_ptr = SendPtr(out.as_mut_ptr());
    // One task per (head, block of queries): its [rows, n_kv] score block and [rows, head_dim]
    // result live in the running thread's scratch (grown once, so decoder steps allocate
    // nothing), and the result is written into the head's own columns of `out`. Blocks of
    // ATTENTION_QUERY_BLOCK queries keep an encoder head's scores (64 x 1500 floats, 384 KiB)
    // in L2 between the two products, where a whole 1500 x 1500 block (9 MB) would not be.
    let block = ATTENTION_QUERY_BLOCK.min(n_q.max(1));
    let n_blocks = n_q.div_ceil(block);
    let run_task = |task: usize| {
        let (h, b) = (task / n_blocks, task % n_blocks);
        let (i0, i1) = (b * block, ((b + 1) * block).min(n_q));
        let rows = i1 - i0;
        ATTENTION_SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < rows * (n_kv + hd) {
                buf.resize(rows * (n_kv + hd), 0.0);
            }
            let (scores, o) = buf.split_at_mut(rows * n_kv);
            let scores = &mut scores[..rows * n_kv];
            let q_h = &q[i0 * d + h * hd..];
            let (off, rs) = layout.head(h, n_kv, d, hd);
            let (k_h, v_h) = (&k[off..], &v[off..]);
            // scores = q_h · k_hᵀ
            gemm_strided(
                rows,
                n_kv,
                hd,
                scores,
                ROW_MAJOR(n_kv),
                q_h,
                View {
                    rs: d as isize,
                    cs: 1,
                },
                k_h,
                View {
                    rs: 1,
                    cs: rs as isize,
                },
                Parallelism::None,
            );
            for (r, row) in scores.chunks_exact_mut(n_kv).enumerate() {
                for s in row.iter_mut() {
                    *s *= scale;
                }
                if let Some(p) = causal_offset {
                    for s in row.iter_mut().skip(p + i0 + r + 1) {
                        *s = f32::NEG_INFINITY;
                    }
                }
            }
            softmax_rows(scores, n_kv);
            let o = &mut o[..rows * hd];
            gemm_strided(
                rows,
                hd,
                n_kv,
                o,
                ROW_MAJOR(hd),
                scores,
                ROW_MAJOR(n_kv),
                v_h,
                View {
                    rs: rs as isize,
                    cs: 1,
                },
                Parallelism::None,
            );
            for r in 0..rows {
                // SAFETY: row i0 + r < n_q, columns h*hd..(h+1)*hd of `out` (asserted in
                // bounds above); each task writes only its own rows of its head's columns.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        o[r * hd..].as_ptr(),
                        out_ptr.get().add((i0 + r) * d + h * hd),
                        hd,
                    );
                }
            }
        })
    };
    if n_q * n_kv * hd >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        (0..n_head * n_blocks).into_par_iter().for_each(run_task);
    } else {
        (0..n_head * n_blocks).for_each(run_task);
    }
}

/// [`attention`] for a few queries (decoder steps: one row per sequence), without `gemm`, whose
/// per-call set-up cost more than the work at these sizes. One task per head: for each key row,
/// the head's 64-wide slice is read once and dotted with every query (beam search's sequences
/// share the cross-attention keys, so they are read once, not once per sequence), then a
/// softmax per query, then the value rows weighted and summed the same way. Query `i` sees
/// `visible(i)` keys (all, or the causal prefix); masked keys are skipped (weight exactly 0).
#[allow(clippy::too_many_arguments)]
fn attention_few_queries(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    layout: KvLayout,
    n_q: usize,
    n_kv: usize,
    d: usize,
    n_head: usize,
    causal_offset: Option<usize>,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    let hd = d / n_head;
    let scale = 1.0 / (hd as f32).sqrt();
    assert!(k.len() >= n_kv * d && v.len() >= n_kv * d && q.len() >= n_q * d);
    // Query i sees keys 0..first_visible + i (capped at n_kv).
    let first_visible = causal_offset.map_or(n_kv, |p| p + 1);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |h: usize| {
        ATTENTION_SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < n_q * (n_kv + hd) {
                buf.resize(n_q * (n_kv + hd), 0.0);
            }
            let (scores, o) = buf.split_at_mut(n_q * n_kv);
            let o = &mut o[..n_q * hd];
            let col = h * hd;
            let (off, rs) = layout.head(h, n_kv, d, hd);
            let (k_h, v_h) = (&k[off..], &v[off..]);
            head_scores(
                q,
                n_q,
                d,
                col,
                k_h,
                rs,
                hd,
                scale,
                n_kv,
                first_visible,
                scores,
            );
            for i in 0..n_q {
                let vis = (first_visible + i).min(n_kv);
                softmax_rows(&mut scores[i * n_kv..i * n_kv + vis], vis);
            }
            head_weighted_sum(scores, n_q, v_h, rs, hd, n_kv, first_visible, o);
            for i in 0..n_q {
                // SAFETY: row i < n_q, columns col..col+hd of `out` (len >= n_q * d asserted by
                // the caller); each task writes only its own head's columns.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        o[i * hd..].as_ptr(),
                        out_ptr.get().add(i * d + col),
                        hd,
                    )
                };
            }
        })
    };
    if n_q * n_kv * d >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        (0..n_head).into_par_iter().for_each(run);
    } else {
        (0..n_head).for_each(run);
    }
}

with_avx2! {
    /// `scores[i, j] = (q[i, col..col + hd] · k[j·rs..j·rs + hd]) · scale` for query `i < n_q`
    /// and its visible keys `j < min(first_visible + i, n_kv)` (rows of `q` are `d` wide, of
    /// `scores` `n_kv`). Each key slice is loaded once for all queries; each dot product sums
    /// in 16 lanes, then across them in a fixed order.
    #[allow(clippy::too_many_arguments)]
    fn head_scores(
        q: &[f32],
        n_q: usize,
        d: usize,
        col: usize,
        k: &[f32],
        rs: usize,
        hd: usize,
        scale: f32,
        n_kv: usize,
        first_visible: usize,
        scores: &mut [f32],
    ) {
        let last = (first_visible + n_q - 1).min(n_kv);
        for j in 0..last {
            let kr = &k[j * rs..j * rs + hd];
            // Queries that see key j: those with first_visible + i > j.
            for i in j.saturating_sub(first_visible.saturating_sub(1))..n_q {
                if first_visible + i <= j {
                    continue;
                }
                let qi = &q[i * d + col..i * d + col + hd];
                let mut acc = [0.0f32; 16];
                let (cq, ck) = (qi.chunks_exact(16), kr.chunks_exact(16));
                let (tq, tk) = (cq.remainder(), ck.remainder());
                for (a, b) in cq.zip(ck) {
                    for l in 0..16 {
                        acc[l] += a[l] * b[l];
                    }
                }
                let mut sum = acc.iter().sum::<f32>();
                for (a, b) in tq.iter().zip(tk) {
                    sum += a * b;
                }
                scores[i * n_kv + j] = sum * scale;
            }
        }
    }
}

with_avx2! {
    /// `o[i] = Σ_j p[i, j] · v[j·rs..j·rs + hd]` over query `i`'s visible keys (see
    /// [`head_scores`]); each value slice is loaded once for all queries. `o` is `[n_q, hd]`.
    #[allow(clippy::too_many_arguments)]
    fn head_weighted_sum(
        p: &[f32],
        n_q: usize,
        v: &[f32],
        rs: usize,
        hd: usize,
        n_kv: usize,
        first_visible: usize,
        o: &mut [f32],
    ) {
        o.fill(0.0);
        let last = (first_visible + n_q - 1).min(n_kv);
        for j in 0..last {
            let vr = &v[j * rs..j * rs + hd];
            for i in 0..n_q {
                if first_visible + i <= j {
                    continue;
                }
                let pij = p[i * n_kv + j];
                for (acc, &x) in o[i * hd..(i + 1) * hd].iter_mut().zip(vr) {
                    *acc += pij * x;
                }
            }
        }
    }
}

/// Queries per task of [`attention`] (see there).
const ATTENTION_QUERY_BLOCK: usize = 64;

/// The attention probabilities of one head: `softmax(q_h · k_hᵀ / √head_dim)` for the head whose
/// columns start at `col` (`head_dim` wide), no mask. `out` is `[n_q, n_kv]`. Word timestamps
/// read these from the alignment heads.
#[allow(clippy::too_many_arguments)]
pub fn attention_weights(
    q: &[f32],
    k: &[f32],
    n_q: usize,
    n_kv: usize,
    d: usize,
    col: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    attention_weights_in(q, k, KvLayout::Rows, n_q, n_kv, d, col, head_dim, out);
}

/// [`attention_weights`] with keys in `layout`.
#[allow(clippy::too_many_arguments)]
pub fn attention_weights_in(
    q: &[f32],
    k: &[f32],
    layout: KvLayout,
    n_q: usize,
    n_kv: usize,
    d: usize,
    col: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let (off, rs) = layout.head(col / head_dim, n_kv, d, head_dim);
    gemm_strided(
        n_q,
        n_kv,
        head_dim,
        out,
        ROW_MAJOR(n_kv),
        &q[col..],
        View {
            rs: d as isize,
            cs: 1,
        },
        &k[off..],
        View {
            rs: 1,
            cs: rs as isize,
        },
        Parallelism::None,
    );
    let scale = 1.0 / (head_dim as f32).sqrt();
    for v in out[..n_q * n_kv].iter_mut() {
        *v *= scale;
    }
    softmax_rows(&mut out[..n_q * n_kv], n_kv);
}

/// Index of the largest value (the first one on ties), as the GPU argmax kernel returns.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Token embedding plus learned position embedding: `out[i] = tokens[ids[i]] + positions[pos0 + i]`.
pub fn embed(
    table: &[f32],
    positions: &[f32],
    d: usize,
    ids: &[u32],
    pos0: usize,
    out: &mut [f32],
) {
    for (i, &id) in ids.iter().enumerate() {
        let t = &table[id as usize * d..(id as usize + 1) * d];
        let p = &positions[(pos0 + i) * d..(pos0 + i + 1) * d];
        for j in 0..d {
            out[i * d + j] = t[j] + p[j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seed: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
                (h >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect()
    }

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
            linear(&x, m, k, &w, n, Some(&b), &mut out);
            for i in 0..m {
                let mut one = vec![0.0; n];
                linear_small_m(&x[i * k..(i + 1) * k], 1, k, &w, n, Some(&b), &mut one);
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

    /// Naive f64 attention: the reference for both paths of [`attention`].
    #[allow(clippy::too_many_arguments)]
    fn attention_f64(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_q: usize,
        n_kv: usize,
        d: usize,
        n_head: usize,
        causal: Option<usize>,
    ) -> Vec<f64> {
        let hd = d / n_head;
        let mut out = vec![0.0; n_q * d];
        for i in 0..n_q {
            let vis = causal.map_or(n_kv, |p| (p + i + 1).min(n_kv));
            for h in 0..n_head {
                let s: Vec<f64> = (0..vis)
                    .map(|j| {
                        (0..hd)
                            .map(|t| q[i * d + h * hd + t] as f64 * k[j * d + h * hd + t] as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for t in 0..hd {
                    out[i * d + h * hd + t] = (0..vis)
                        .map(|j| e[j] / z * v[j * d + h * hd + t] as f64)
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn attention_few_and_many_queries_match_f64() {
        let (d, n_head) = (96, 3);
        for &(n_q, n_kv, causal) in &[
            (1, 1500, None),
            (5, 1500, None),
            (3, 7, Some(4)),
            (8, 20, Some(12)),
            (1, 1, Some(0)),
            (9, 70, None),
            (70, 70, Some(0)),
        ] {
            let (q, k, v) = (data(11, n_q * d), data(12, n_kv * d), data(13, n_kv * d));
            let mut out = vec![f32::NAN; n_q * d];
            attention(&q, &k, &v, n_q, n_kv, d, n_head, causal, &mut out);
            let want = attention_f64(&q, &k, &v, n_q, n_kv, d, n_head, causal);
            for (idx, (&g, &w)) in out.iter().zip(&want).enumerate() {
                // f32 sums over at most 1500 terms of size <= 0.5: well inside 1e-5.
                assert!(
                    (g as f64 - w).abs() < 1e-5,
                    "{n_q}x{n_kv} {causal:?} [{idx}]: {g} vs {w}"
                );
            }
        }
    }
}
