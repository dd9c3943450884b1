//! Multi-head attention: `attention` (on `gemm` for many queries, hand-written few-query
//! kernels for decoder steps), keys and values as rows or head-major (`KvLayout`), and one
//! head's probabilities for word timestamps (`attention_weights`).
//!
//! GPU twins: `backend/gpu/kernels/attention.rs` (fused, `shaders/attention.wgsl`),
//! `backend/gpu/kernels/attn_mm.rs` (unfused, `shaders/attn_mm.wgsl`) and
//! `backend/gpu/kernels/attn_scores.rs` (`shaders/attn_scores.wgsl`). Test:
//! `tests/kernels_vs_cpu/attention.rs`.

use gemm::Parallelism;
use rayon::prelude::*;

use super::fused_attention::{fused_attention, Products};
use super::matmul::SMALL_M;
use super::softmax::softmax_rows;
use super::{gemm_strided, SendPtr, View, PARALLEL_MIN_FLOPS, ROW_MAJOR};
use crate::backend::cpu::isa::isa;

thread_local! {
    /// Per-thread scratch of `attention` (scores and one head's result).
    static ATTENTION_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The sizes of one multi-head attention: `n_q` queries over `n_kv` keys and values, rows `d`
/// wide, in `n_head` heads of `d / n_head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AttnShape {
    pub n_q: usize,
    pub n_kv: usize,
    pub d: usize,
    pub n_head: usize,
}

/// The operands of one unfused multi-head attention ([`attention`]'s arguments but `out`).
#[derive(Clone, Copy)]
struct AttnCall<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    layout: KvLayout,
    shape: AttnShape,
    causal_offset: Option<usize>,
}

impl<'a> AttnCall<'a> {
    /// (q, k, v, layout, causal_offset).
    #[allow(clippy::type_complexity)]
    fn operands(self) -> (&'a [f32], &'a [f32], &'a [f32], KvLayout, Option<usize>) {
        (self.q, self.k, self.v, self.layout, self.causal_offset)
    }

    /// (n_q, n_kv, d, n_head, head_dim, the score scale 1/√head_dim).
    fn sizes(self) -> (usize, usize, usize, usize, usize, f32) {
        let AttnShape {
            n_q,
            n_kv,
            d,
            n_head,
        } = self.shape;
        let hd = d / n_head;
        (n_q, n_kv, d, n_head, hd, 1.0 / (hd as f32).sqrt())
    }
}

/// Runs `f` on this thread's attention scratch split into `scores` (`n_scores` floats) and
/// `o` (`n_out`), grown when too small (so decoder steps allocate nothing).
fn with_scratch<R>(
    n_scores: usize,
    n_out: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    ATTENTION_SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < n_scores + n_out {
            buf.resize(n_scores + n_out, 0.0);
        }
        let (scores, o) = buf.split_at_mut(n_scores);
        f(scores, &mut o[..n_out])
    })
}

/// How keys and values are laid out for [`attention`].
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
    pub(super) fn head(self, h: usize, n_kv: usize, d: usize, hd: usize) -> (usize, usize) {
        match self {
            KvLayout::Rows => (h * hd, d),
            KvLayout::Heads => (h * n_kv * hd, hd),
        }
    }
}

/// `[n, n_head * head_dim]` rows -> `[n_head, n, head_dim]` ([`KvLayout::Heads`]).
pub fn to_head_major(x: &[f32], n: usize, d: usize, n_head: usize, out: &mut Vec<f32>) {
    out.resize(n * d, 0.0);
    write_head_major(x, n, d, n_head, out);
}

/// [`to_head_major`] into the first `n * d` values of `out`.
pub fn write_head_major(x: &[f32], n: usize, d: usize, n_head: usize, out: &mut [f32]) {
    let hd = d / n_head;
    let rows = x[..n * d].chunks_exact(d);
    for (h, head) in out[..n * d].chunks_exact_mut(n * hd).enumerate() {
        for (dst, row) in head.chunks_exact_mut(hd).zip(rows.clone()) {
            dst.copy_from_slice(&row[h * hd..(h + 1) * hd]);
        }
    }
}

/// Multi-head scaled dot-product attention.
///
/// `q` is `[n_q, d]`, `k` and `v` are `[n_kv, d]` laid out as `layout` says, with `d = n_head * head_dim`; heads are
/// contiguous column blocks. With `causal_offset = Some(p)`, query `i` sits at absolute position
/// `p + i` and sees keys `0..=p + i` (the decoder's self-attention over its KV cache); `None`
/// lets every query see every key (encoder self-attention, cross-attention).
///
/// `products` is the precision of the products where the fused kernel runs
/// ([`Products::Bf16`] needs AVX-512 BF16, 64-wide heads and at least 32 (`FUSED_MIN_QUERIES`)
/// queries); elsewhere, and always with [`Products::F32`] (the reference), they are f32.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    products: Products,
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
    let hd = d / n_head;
    assert!(out.len() >= n_q * d, "attention out too small");
    assert!(
        k.len() >= n_kv * d && v.len() >= n_kv * d,
        "attention keys/values too small"
    );
    let shape = AttnShape {
        n_q,
        n_kv,
        d,
        n_head,
    };
    let call = AttnCall {
        q,
        k,
        v,
        layout,
        shape,
        causal_offset,
    };
    if n_q <= SMALL_M {
        attention_few_queries(call, out);
        return;
    }
    let head = |h| layout.head(h, n_kv, d, hd);
    if n_q >= FUSED_MIN_QUERIES
        && fused_attention(isa(), products, q, k, v, head, shape, causal_offset, out)
    {
        return;
    }
    attention_blocked(call, out);
}

/// [`attention`] for many queries without the fused kernel: per (head, block of queries),
/// the block's scores on `gemm`, a softmax, and the product with the values on `gemm`.
fn attention_blocked(call: AttnCall, out: &mut [f32]) {
    let (q, k, v, layout, causal_offset) = call.operands();
    let (n_q, n_kv, d, n_head, hd, scale) = call.sizes();
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
        with_scratch(rows * n_kv, rows * hd, |scores, o| {
            let q_h = &q[i0 * d + h * hd..];
            let (off, rs) = layout.head(h, n_kv, d, hd);
            let (k_h, v_h) = (&k[off..], &v[off..]);
            head_scores_gemm(scores, q_h, k_h, (rows, n_kv, hd), d, rs);
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
            // SAFETY: rows i0..i1 <= n_q, columns h*hd..(h+1)*hd of `out` (asserted in bounds
            // above); each task writes only its own rows of its head's columns.
            unsafe { write_head_rows(out_ptr, o, (i0, rows), d, h * hd, hd) };
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
fn attention_few_queries(call: AttnCall, out: &mut [f32]) {
    let (q, k, v, layout, causal_offset) = call.operands();
    let (n_q, n_kv, d, n_head, hd, scale) = call.sizes();
    assert!(k.len() >= n_kv * d && v.len() >= n_kv * d && q.len() >= n_q * d);
    // Query i sees keys 0..first_visible + i (capped at n_kv).
    let first_visible = causal_offset.map_or(n_kv, |p| p + 1);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |h: usize| {
        with_scratch(n_q * n_kv, n_q * hd, |scores, o| {
            let col = h * hd;
            let (off, rs) = layout.head(h, n_kv, d, hd);
            let (k_h, v_h) = (&k[off..], &v[off..]);
            let head = HeadQueries {
                q: &q[col..],
                n_q,
                d,
                k: k_h,
                rs,
                hd,
                scale,
                n_kv,
                first_visible,
            };
            head_scores(head, scores);
            for i in 0..n_q {
                let vis = (first_visible + i).min(n_kv);
                softmax_rows(&mut scores[i * n_kv..i * n_kv + vis], vis);
            }
            head_weighted_sum(scores, n_q, v_h, rs, hd, n_kv, first_visible, o);
            // SAFETY: rows 0..n_q, columns col..col+hd of `out` (len >= n_q * d asserted by
            // the caller); each task writes only its own head's columns.
            unsafe { write_head_rows(out_ptr, o, (0, n_q), d, col, hd) };
        })
    };
    if n_q * n_kv * d >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        (0..n_head).into_par_iter().for_each(run);
    } else {
        (0..n_head).for_each(run);
    }
}

/// One head's `scores [rows, n_kv] = q_h · k_hᵀ` on `gemm`, single-threaded: `hd`-wide query
/// rows `d` apart, key rows `rs` apart.
fn head_scores_gemm(
    scores: &mut [f32],
    q_h: &[f32],
    k_h: &[f32],
    (rows, n_kv, hd): (usize, usize, usize),
    d: usize,
    rs: usize,
) {
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
}

/// Copies one head's result `o` (`rows` rows of `hd`) into rows `i0..i0 + rows`, columns
/// `col..col + hd` of `out` (rows `d` wide).
///
/// # Safety
/// Those elements of `out` must be in bounds, and no other task may write them meanwhile.
unsafe fn write_head_rows(
    out: SendPtr,
    o: &[f32],
    (i0, rows): (usize, usize),
    d: usize,
    col: usize,
    hd: usize,
) {
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(o[r * hd..].as_ptr(), out.get().add((i0 + r) * d + col), hd);
    }
}

/// The queries of one head in [`attention_few_queries`] and the keys they see: query `i` is
/// `q[i * d..][..hd]` (`n_q` of them), key `j` is `k[j * rs..][..hd]`, and query `i` sees keys
/// `j < min(first_visible + i, n_kv)`; scores are scaled by `scale`.
#[derive(Clone, Copy)]
struct HeadQueries<'a> {
    q: &'a [f32],
    n_q: usize,
    d: usize,
    k: &'a [f32],
    rs: usize,
    hd: usize,
    scale: f32,
    n_kv: usize,
    first_visible: usize,
}

impl HeadQueries<'_> {
    /// Keys seen by at least one query.
    fn keys_seen(&self) -> usize {
        (self.first_visible + self.n_q - 1).min(self.n_kv)
    }
}

/// `scores[i, j] = (query i · key j) · scale` for every query of `head` and the keys it sees
/// (rows of `scores` are `n_kv` long). 64-wide heads on AVX-512 take [`head_scores_avx512`];
/// the rest [`head_scores_lanes`].
fn head_scores(head: HeadQueries, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if head.hd == 64 && isa() >= crate::backend::cpu::isa::Isa::Avx512 {
        let (last, h) = (head.keys_seen(), &head);
        assert!(h.q.len() >= (h.n_q - 1) * h.d + 64 && scores.len() >= h.n_q * h.n_kv);
        assert!(last == 0 || h.k.len() >= (last - 1) * h.rs + 64);
        // SAFETY: the CPU has AVX-512 (isa()); the asserts bound every row read and written.
        unsafe { head_scores_avx512(head, scores) };
        return;
    }
    head_scores_lanes(head, scores)
}

/// [`head_scores`] for 64-wide heads with AVX-512: per key, its four vectors are loaded once;
/// per visible query, a product and three fused multiply-adds, then a sum across the 16 lanes
/// as a tree (lane l + lane l + 8, then + 4, + 2, + 1): eight instructions where the portable
/// loop's lane-by-lane sum compiles to some thirty.
///
/// # Safety
/// The CPU has AVX-512 F; `head.q`, `head.k` and `scores` hold every row [`head_scores`] names.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn head_scores_avx512(head: HeadQueries, scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let last = head.keys_seen();
    let HeadQueries {
        n_q,
        d,
        rs,
        scale,
        n_kv,
        first_visible,
        ..
    } = head;
    let (q, k, scores) = (head.q.as_ptr(), head.k.as_ptr(), scores.as_mut_ptr());
    for j in 0..last {
        let kr = k.add(j * rs);
        let kv: [__m512; 4] = std::array::from_fn(|c| _mm512_loadu_ps(kr.add(c * 16)));
        // Queries that see key j: those with first_visible + i > j.
        for i in (j + 1).saturating_sub(first_visible)..n_q {
            let qi = q.add(i * d);
            let mut acc = _mm512_mul_ps(_mm512_loadu_ps(qi), kv[0]);
            for (c, &kc) in kv.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(qi.add(c * 16)), kc, acc);
            }
            let x8 = _mm256_add_ps(
                _mm512_castps512_ps256(acc),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
            );
            let x4 = _mm_add_ps(_mm256_castps256_ps128(x8), _mm256_extractf128_ps::<1>(x8));
            let x2 = _mm_add_ps(x4, _mm_movehl_ps(x4, x4));
            let x1 = _mm_add_ss(x2, _mm_movehdup_ps(x2));
            *scores.add(i * n_kv + j) = _mm_cvtss_f32(x1) * scale;
        }
    }
}

simd_dispatch! {
    /// [`head_scores`] for any head width: each key slice is loaded once for all queries; each
    /// dot product sums in 16 lanes, then across them in a fixed order.
    [head_scores_lanes_on] fn head_scores_lanes(head: HeadQueries<'_>, scores: &mut [f32]) {
        let last = head.keys_seen();
        let HeadQueries { q, n_q, d, k, rs, hd, scale, n_kv, first_visible } = head;
        for j in 0..last {
            let kr = &k[j * rs..j * rs + hd];
            // Queries that see key j: those with first_visible + i > j.
            for i in j.saturating_sub(first_visible.saturating_sub(1))..n_q {
                if first_visible + i <= j {
                    continue;
                }
                let qi = &q[i * d..i * d + hd];
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

simd_dispatch! {
    /// `o[i] = Σ_j p[i, j] · v[j·rs..j·rs + hd]` over query `i`'s visible keys (see
    /// [`head_scores`]); each value slice is loaded once for all queries. `o` is `[n_q, hd]`.
    /// 64-wide heads (every Whisper size) sum [`WEIGHTED_SUM_GROUP`] queries at a time in
    /// registers, each in the same order (key by key) as the general loop does in `o`.
    #[allow(clippy::too_many_arguments)]
    [head_weighted_sum_on] fn head_weighted_sum(
        p: &[f32],
        n_q: usize,
        v: &[f32],
        rs: usize,
        hd: usize,
        n_kv: usize,
        first_visible: usize,
        o: &mut [f32],
    ) {
        if hd == 64 {
            for i0 in (0..n_q).step_by(WEIGHTED_SUM_GROUP) {
                let group = (n_q - i0).min(WEIGHTED_SUM_GROUP);
                let mut acc = [[0.0f32; 64]; WEIGHTED_SUM_GROUP];
                let last = (first_visible + i0 + group - 1).min(n_kv);
                for j in 0..last {
                    let vr: &[f32; 64] = v[j * rs..j * rs + 64].try_into().unwrap();
                    for (r, acc) in acc.iter_mut().enumerate() {
                        if r < group && first_visible + i0 + r > j {
                            let pij = p[(i0 + r) * n_kv + j];
                            for (a, &x) in acc.iter_mut().zip(vr) {
                                *a += pij * x;
                            }
                        }
                    }
                }
                for (r, acc) in acc.iter().take(group).enumerate() {
                    o[(i0 + r) * 64..(i0 + r + 1) * 64].copy_from_slice(acc);
                }
            }
            return;
        }
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

/// Queries whose weighted sums [`head_weighted_sum`] keeps in registers at once (4 × 64
/// floats: 16 of AVX-512's 32 vector registers).
const WEIGHTED_SUM_GROUP: usize = 4;

/// Queries per task of [`attention`] (see there).
const ATTENTION_QUERY_BLOCK: usize = 64;

/// From this many queries [`attention`] takes the fused kernel (where the CPU has it): it
/// first transposes every head's keys, which costs about what 30 queries' products do.
const FUSED_MIN_QUERIES: usize = 32;

/// The attention probabilities of one head: `softmax(q_h · k_hᵀ / √head_dim)` for the head whose
/// columns start at `col` (`head_dim` wide), no mask, keys in `layout`. `out` is `[n_q, n_kv]`. Word timestamps
/// read these from the alignment heads.
#[allow(clippy::too_many_arguments)]
pub fn attention_weights(
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
    head_scores_gemm(out, &q[col..], &k[off..], (n_q, n_kv, head_dim), d, rs);
    let scale = 1.0 / (head_dim as f32).sqrt();
    for v in out[..n_q * n_kv].iter_mut() {
        *v *= scale;
    }
    softmax_rows(&mut out[..n_q * n_kv], n_kv);
}

#[cfg(test)]
pub(in crate::backend::cpu::ops) mod tests {
    use super::*;
    use crate::backend::cpu::isa::Isa;
    use crate::backend::cpu::ops::test_data as data;

    /// Naive f64 attention of `call` (keys and values as rows): the reference for both paths
    /// of [`attention`].
    fn attention_f64(call: AttnCall<'_>) -> Vec<f64> {
        assert_eq!(call.layout, KvLayout::Rows);
        let (q, k, v, _, causal) = call.operands();
        let (n_q, n_kv, d, n_head, hd, _) = call.sizes();
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

    /// [`attention_f64`] of [`rows_call`]'s call (for the bf16 kernels' tests: x86-64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(in crate::backend::cpu::ops) fn rows_f64(
        qkv: [&[f32]; 3],
        sizes: (usize, usize, usize, usize),
        causal_offset: Option<usize>,
    ) -> Vec<f64> {
        attention_f64(rows_call(qkv, sizes, causal_offset))
    }

    /// The call of `attention` on `[q, k, v]` (keys and values as rows) of sizes
    /// `(n_q, n_kv, d, n_head)`.
    fn rows_call<'a>(
        [q, k, v]: [&'a [f32]; 3],
        (n_q, n_kv, d, n_head): (usize, usize, usize, usize),
        causal_offset: Option<usize>,
    ) -> AttnCall<'a> {
        let shape = AttnShape {
            n_q,
            n_kv,
            d,
            n_head,
        };
        let layout = KvLayout::Rows;
        AttnCall {
            q,
            k,
            v,
            layout,
            shape,
            causal_offset,
        }
    }

    /// `k` and `v` (`[n_kv, d]` rows) in each [`KvLayout`], with its name.
    pub(in crate::backend::cpu::ops) fn both_layouts(
        k: &[f32],
        v: &[f32],
        n_kv: usize,
        d: usize,
        n_head: usize,
    ) -> [(&'static str, KvLayout, Vec<f32>, Vec<f32>); 2] {
        let (mut k_heads, mut v_heads) = (Vec::new(), Vec::new());
        to_head_major(k, n_kv, d, n_head, &mut k_heads);
        to_head_major(v, n_kv, d, n_head, &mut v_heads);
        [
            ("rows", KvLayout::Rows, k.to_vec(), v.to_vec()),
            ("heads", KvLayout::Heads, k_heads, v_heads),
        ]
    }

    /// Asserts that `got` (an f32 attention output) is within 1e-5 of the f64 reference `want`:
    /// sums of at most 1500 terms of size <= 0.5 in f32 are well inside it.
    fn assert_near(what: &str, got: &[f32], want: &[f64]) {
        for (idx, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() < 1e-5, "{what} [{idx}]: {g} vs {w}");
        }
    }

    /// (queries, keys, causal offset) of the fused kernels' tests: key counts around and off the
    /// 32-key tiles, 128-key blocks and 12-query tiles, odd ones (the bf16 kernel pairs keys),
    /// causal rows that see no key of a tile's last block, a single key.
    pub(in crate::backend::cpu::ops) const FUSED_SHAPES: &[(usize, usize, Option<usize>)] = &[
        (33, 1500, None),
        (37, 37, Some(0)),
        (45, 131, Some(85)),
        (100, 129, None),
        (13, 1, None),
        (300, 257, None),
    ];

    /// The fused kernels (AVX2 and AVX-512, 64-wide heads, each forced where the CPU has it) and
    /// the blocked `gemm` path on odd shapes, against f64, keys as rows and head-major.
    #[test]
    fn fused_and_blocked_attention_match_f64_on_odd_shapes() {
        let (d, n_head) = (128, 2);
        for &(n_q, n_kv, causal) in FUSED_SHAPES {
            let (q, k, v) = (data(21, n_q * d), data(22, n_kv * d), data(23, n_kv * d));
            let mut blocked = vec![f32::NAN; n_q * d];
            let call = rows_call([&q, &k, &v], (n_q, n_kv, d, n_head), causal);
            let (shape, want) = (call.shape, attention_f64(call));
            attention_blocked(call, &mut blocked);
            let layouts = both_layouts(&k, &v, n_kv, d, n_head);
            let mut results = vec![("blocked".to_string(), blocked)];
            let mut expected = 1;
            for simd in [Isa::Avx2, Isa::Avx512] {
                for &(name, layout, ref k, ref v) in &layouts {
                    let mut out = vec![f32::NAN; n_q * d];
                    let hd = d / n_head;
                    let head = |h| layout.head(h, n_kv, d, hd);
                    if fused_attention(simd, Products::F32, &q, k, v, head, shape, causal, &mut out)
                    {
                        results.push((format!("fused {simd:?} {name}"), out));
                    }
                    // The kernel of each instruction set the CPU has must have run.
                    expected += usize::from(isa() >= simd);
                }
            }
            assert_eq!(results.len(), expected);
            for (name, got) in &results {
                assert_near(&format!("{name} {n_q}x{n_kv} {causal:?}"), got, &want);
            }
        }
    }

    #[test]
    fn attention_few_and_many_queries_match_f64() {
        // 32-wide heads take the general few-query loops; 64-wide ones the AVX-512 scores
        // kernel (where the CPU has it) and the grouped weighted sum (groups of 4: 5 and 7
        // queries leave partial groups, causal rows see different key counts within a group).
        for (d, n_head) in [(96, 3), (128, 2)] {
            for &(n_q, n_kv, causal) in &[
                (1, 1500, None),
                (5, 1500, None),
                (3, 7, Some(4)),
                (8, 20, Some(12)),
                (7, 13, Some(2)),
                (1, 1, Some(0)),
                (9, 70, None),
                (70, 70, Some(0)),
            ] {
                few_and_many_queries_case(d, n_head, n_q, n_kv, causal);
            }
        }
    }

    /// One case of [`attention_few_and_many_queries_match_f64`], keys and values as rows and
    /// head-major.
    fn few_and_many_queries_case(
        d: usize,
        n_head: usize,
        n_q: usize,
        n_kv: usize,
        causal: Option<usize>,
    ) {
        let (q, k, v) = (data(11, n_q * d), data(12, n_kv * d), data(13, n_kv * d));
        let want = attention_f64(rows_call([&q, &k, &v], (n_q, n_kv, d, n_head), causal));
        let layouts = both_layouts(&k, &v, n_kv, d, n_head);
        for &(name, layout, ref k, ref v) in &layouts {
            let mut out = vec![f32::NAN; n_q * d];
            attention(
                Products::F32,
                &q,
                k,
                v,
                layout,
                n_q,
                n_kv,
                d,
                n_head,
                causal,
                &mut out,
            );
            let what = format!("{name} {n_q}x{n_kv} {causal:?} d {d}");
            assert_near(&what, &out, &want);
        }
    }
}
