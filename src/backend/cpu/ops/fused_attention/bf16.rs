//! The fused attention with bf16 products (AVX-512 BF16): `vdpbf16ps` multiplies two pairs of
//! bf16 per f32 lane and adds both products to the lane's f32 sum, so the score and value
//! kernels issue half the instructions of the f32 ones (on Zen 5 it runs at the rate of
//! `vfmadd231ps`: twice the multiply-adds per cycle). The online softmax stays f32; what is
//! rounded to bf16 (8 significant bits, nearest even) is each operand of a product: the queries
//! (scaled by 1/8 first, exact), keys, values and the softmax weights. Sums stay f32.
//!
//! With split operands ([`Task::split`], `Products::Bf16x3`) each operand `x` is also kept as
//! `hi = bf16(x)` and `lo = bf16(x − hi)`, 16 significant bits together, and each product
//! `a · b` runs as three, `a_hi·b_hi + a_lo·b_hi + a_hi·b_lo` (what XLA calls BF16_BF16_F32_X3):
//! what is lost is `a_lo·b_lo` and the rounding of the `lo` parts, about 2^-16 of each product,
//! against bf16's 2^-8. It is near-f32 attention for the AMX tiles (module `amx`), where three
//! `tdpbf16ps` still cost a fraction of f32 multiply-adds; here, at 1.5 instructions per f32
//! multiply-add, it is the AMX kernel's twin and its reference on a CPU without tiles.
//!
//! Layouts (`u32` = two bf16, the lower half first): keys per head as tiles of 32 keys ×
//! 32 dimension pairs, `[tile][pair][32]` (the f32 kernel's `[tile][t][32]` with neighbouring
//! dimensions paired); values per head as `[key pair][64 dimensions]`, each lane the same
//! dimension of two neighbouring keys (an odd last key paired with a zero row). The weights of
//! a row are bf16 in key order, which pairs neighbouring keys as the values do. Split operands
//! keep their `lo` parts in a second plane of the same layout right after the first.
//!
//! The tile sizes and the online-softmax bookkeeping are the f32 kernel's ([`super::online_step`],
//! `block_max` and `exp` of its AVX-512 module); the normalising sum adds the rounded weights
//! (`hi + lo` when split), so each output row is a weighted mean whose weights sum to 1 up to
//! f32 rounding.

use super::super::SendPtr;
use super::avx512::{block_max, exp, masked};
use super::{online_step, HEAD_DIM, KEY_BLOCK, KEY_TILE, TILE_ROWS};
use std::arch::x86_64::*;

pub(super) mod amx;
#[cfg(test)]
mod tests;

/// bf16 pairs in a row of [`HEAD_DIM`].
const PAIRS: usize = HEAD_DIM / 2;

/// Whether the CPU runs this module (AVX-512 allowed by `isa()`, and AVX-512 BF16).
pub(in super::super) fn available() -> bool {
    use crate::backend::cpu::isa::{isa, Isa};
    isa() >= Isa::Avx512 && is_x86_feature_detected!("avx512bf16")
}

/// `u32`s of one head's packed keys ([`pack_keys`]).
pub(super) fn keys_len(n_kv: usize) -> usize {
    n_kv.div_ceil(KEY_TILE) * KEY_TILE * PAIRS
}

/// `u32`s of one head's packed values ([`pack_values`]): key pairs to a whole number of
/// [`KEY_TILE`]s, which the AMX kernel reads 16 pairs at a time.
pub(super) fn values_len(n_kv: usize) -> usize {
    n_kv.div_ceil(KEY_TILE) * KEY_TILE / 2 * HEAD_DIM
}

/// 16 floats `x` rounded to bf16 (nearest even), each in the lower half of a 32-bit lane.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn bf16_bits(x: __m512) -> __m512i {
    let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
    _mm512_cvtepu16_epi32(h)
}

/// The f32 value of each lane's [`bf16_bits`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bits_to_f32(bits: __m512i) -> __m512 {
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits))
}

/// 16 floats `x` as [`bf16_bits`]: their `hi` parts, and with `split` their `lo` parts (else
/// zero).
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn bf16_lanes(x: *const f32, split: bool) -> [__m512i; 2] {
    let x = _mm512_loadu_ps(x);
    let hi = bf16_bits(x);
    let lo = if split {
        bf16_bits(_mm512_sub_ps(x, bits_to_f32(hi)))
    } else {
        _mm512_setzero_si512()
    };
    [hi, lo]
}

/// The 64 floats of `row` times `scale` as 32 bf16 pairs into `out`, and with `lo` their `lo`
/// parts into it.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn pack_row(row: *const f32, scale: f32, out: *mut u32, lo: Option<*mut u32>) {
    let s = _mm512_set1_ps(scale);
    // `cvtne2ps(b, a)` puts a's 16 values first, then b's: the row's order.
    let pairs =
        |a: __m512, b: __m512| -> __m512i { std::mem::transmute(_mm512_cvtne2ps_pbh(b, a)) };
    for half in 0..2 {
        let x = |c: usize| _mm512_mul_ps(s, _mm512_loadu_ps(row.add(half * 32 + c * 16)));
        let (x0, x1) = (x(0), x(1));
        _mm512_storeu_si512(out.add(half * 16).cast(), pairs(x0, x1));
        if let Some(lo) = lo {
            let rest = |x: __m512| _mm512_sub_ps(x, bits_to_f32(bf16_bits(x)));
            _mm512_storeu_si512(lo.add(half * 16).cast(), pairs(rest(x0), rest(x1)));
        }
    }
}

/// Planes of packed operands: 2 with `lo` parts.
pub(super) fn planes(split: bool) -> usize {
    1 + usize::from(split)
}

/// Products per product of operands: `hi·hi` alone, or with `lo·hi` and `hi·lo` when split.
fn products(split: bool) -> usize {
    if split {
        3
    } else {
        1
    }
}

/// Zeroes `out[p * plane + from..(p + 1) * plane]` of each plane `p` (the padding after an
/// operand's rows), checking that `out` holds the planes.
fn zero_padding(out: &mut [u32], plane: usize, from: usize, split: bool) {
    assert!(out.len() >= planes(split) * plane);
    for p in 0..planes(split) {
        out[p * plane + from..(p + 1) * plane].fill(0);
    }
}

/// Head keys `k[off + j * rs..][..64]` (`j < n_kv`) into `out` ([`keys_len`] per plane):
/// `[tile][pair][32]`, zero past `n_kv`; with `split`, their `lo` parts in a second plane.
///
/// # Safety
/// [`available`]; `k` holds every row named.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pack_keys(
    k: &[f32],
    (off, rs): (usize, usize),
    n_kv: usize,
    split: bool,
    out: &mut [u32],
) {
    let plane = keys_len(n_kv);
    assert!(k.len() >= off + (n_kv - 1) * rs + HEAD_DIM);
    zero_padding(out, plane, (n_kv / KEY_TILE) * KEY_TILE * PAIRS, split);
    let mut pairs = [0u32; 2 * PAIRS];
    let base = pairs.as_mut_ptr();
    for j in 0..n_kv {
        pack_row(
            k.as_ptr().add(off + j * rs),
            1.0,
            base,
            split.then(|| base.add(PAIRS)),
        );
        for p in 0..planes(split) {
            let tile = p * plane + (j / KEY_TILE) * KEY_TILE * PAIRS + j % KEY_TILE;
            for i in 0..PAIRS {
                out[tile + i * KEY_TILE] = *base.add(p * PAIRS + i);
            }
        }
    }
}

/// Head values `v[off + j * rs..][..64]` (`j < n_kv`) into `out` ([`values_len`] per plane):
/// `[key pair][64]`, keys `2i` (lower half) and `2i + 1` of dimension `c` in lane `c`; zero
/// past `n_kv`; with `split`, their `lo` parts in a second plane.
///
/// # Safety
/// [`available`]; `v` holds every row named.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pack_values(
    v: &[f32],
    (off, rs): (usize, usize),
    n_kv: usize,
    split: bool,
    out: &mut [u32],
) {
    let plane = values_len(n_kv);
    assert!(v.len() >= off + (n_kv - 1) * rs + HEAD_DIM);
    zero_padding(out, plane, n_kv.div_ceil(2) * HEAD_DIM, split);
    let zero = [0.0f32; HEAD_DIM];
    for i in 0..n_kv.div_ceil(2) {
        let first = v.as_ptr().add(off + 2 * i * rs);
        let second = if 2 * i + 1 < n_kv {
            first.add(rs)
        } else {
            zero.as_ptr()
        };
        for c in 0..HEAD_DIM / 16 {
            let (a, b) = (
                bf16_lanes(first.add(c * 16), split),
                bf16_lanes(second.add(c * 16), split),
            );
            for p in 0..planes(split) {
                let both = _mm512_or_si512(a[p], _mm512_slli_epi32::<16>(b[p]));
                let dst = out.as_mut_ptr().add(p * plane + i * HEAD_DIM + c * 16);
                _mm512_storeu_si512(dst.cast(), both);
            }
        }
    }
}

/// One task of a bf16 kernel: rows `i0..i0 + rows` of head `h` of the queries `q` (rows `d`
/// wide), against the head's packed `keys` and `values` ([`pack_keys`], [`pack_values`] of
/// `n_kv` keys, both planes when `split`), written to the same rows and columns of `out`.
pub(super) struct Task<'a> {
    pub q: &'a [f32],
    pub d: usize,
    pub h: usize,
    pub i0: usize,
    pub rows: usize,
    pub keys: &'a [u32],
    pub values: &'a [u32],
    pub n_kv: usize,
    pub causal_offset: Option<usize>,
    /// Split operands: three products each (the module comment).
    pub split: bool,
    /// Scores in f32 (`Products::Bf16Values`): `keys` holds the bits of the f32 kernel's
    /// transposed keys (`super::transpose_keys`), and `split` is false.
    pub f32_scores: bool,
    pub out: SendPtr,
}

/// The bf16 twin of the f32 kernels' `tile` (`task.rows <= 12`).
///
/// # Safety
/// [`available`]; `out` is valid for `(i0 + rows) * d` floats, and no one else writes rows
/// `i0..i0 + rows` of head `h`'s columns meanwhile.
#[target_feature(enable = "avx512f,avx512dq,avx512bf16,fma")]
pub(super) unsafe fn tile(task: &Task) {
    let (kt, vp, split) = (task.keys, task.values, task.split);
    let (keys_plane, values_plane) = (keys_len(task.n_kv), values_len(task.n_kv));
    debug_assert!(task.f32_scores || kt.len() >= planes(split) * keys_plane);
    debug_assert!(vp.len() >= planes(split) * values_plane);
    const QN: usize = TILE_ROWS * PAIRS;
    // bf16 queries for bf16 scores; f32 ones (below) for `f32_scores`.
    let qp: [u32; 2 * QN] = if task.f32_scores {
        [0; 2 * QN]
    } else {
        task.queries()
    };
    let visible = task.visible_keys::<TILE_ROWS>();
    let kv_end = visible.iter().copied().max().unwrap_or(0);
    let mut s = [0.0f32; TILE_ROWS * KEY_BLOCK];
    // The block's weights per row as bf16 (u16 pairs): KEY_BLOCK / 2 `u32` per row; the `lo`
    // parts after them.
    const WN: usize = TILE_ROWS * KEY_BLOCK / 2;
    let mut w = [0u32; 2 * WN];
    let mut o = [0.0f32; TILE_ROWS * HEAD_DIM];
    let mut softmax = Softmax::<TILE_ROWS>::new();
    let (q_hi, w_hi) = (qp.as_ptr(), w.as_ptr());
    let qs = task
        .f32_scores
        .then(|| super::scaled_queries(task.q, task.d, task.h, task.i0, task.rows));
    for j0 in (0..kv_end).step_by(KEY_BLOCK) {
        let cb = KEY_BLOCK.min(kv_end - j0);
        for t in 0..cb.div_ceil(KEY_TILE) {
            let s_t = s.as_mut_ptr().add(t * KEY_TILE);
            if let Some(qs) = &qs {
                let tile = (j0 / KEY_TILE + t) * KEY_TILE * HEAD_DIM;
                super::avx512::scores(qs.as_ptr(), kt.as_ptr().add(tile).cast(), s_t);
                continue;
            }
            let k_hi = kt.as_ptr().add((j0 / KEY_TILE + t) * KEY_TILE * PAIRS);
            let k_lo = k_hi.add(keys_plane);
            let terms = [(q_hi, k_hi), (q_hi.add(QN), k_hi), (q_hi, k_lo)];
            scores(&terms[..products(split)], s_t);
        }
        softmax.block(&s, &mut w, &visible, j0, cb, split);
        let alpha = &softmax.alpha;
        let v_hi = vp.as_ptr().add(j0 / 2 * HEAD_DIM);
        let v_lo = v_hi.add(values_plane);
        for g in 0..TILE_ROWS / 6 {
            let w_g = w_hi.add(g * 6 * KEY_BLOCK / 2);
            let terms = [(w_g, v_hi), (w_g.add(WN), v_hi), (w_g, v_lo)];
            values(
                &terms[..products(split)],
                cb.div_ceil(2),
                o.as_mut_ptr().add(g * 6 * HEAD_DIM),
                &alpha[g * 6..g * 6 + 6],
            );
        }
    }
    task.write(&o, &softmax.sum);
}

impl Task<'_> {
    /// The task's queries, scaled by 1/√64 = 1/8 (exact), as bf16 pairs (`[N / PAIRS][PAIRS]`),
    /// then their `lo` parts when split (else zero): `N` is twice a tile's pairs. Rows past
    /// `rows` zero.
    ///
    /// # Safety
    /// [`available`].
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn queries<const N: usize>(&self) -> [u32; N] {
        let Task {
            q,
            d,
            h,
            i0,
            rows,
            split,
            ..
        } = *self;
        assert!(2 * rows * PAIRS <= N && q.len() >= (i0 + rows) * d);
        let mut qp = [0u32; N];
        let base = qp.as_mut_ptr();
        for r in 0..rows {
            let src = q.as_ptr().add((i0 + r) * d + h * HEAD_DIM);
            let lo = split.then(|| base.add(N / 2 + r * PAIRS));
            pack_row(src, 1.0 / (HEAD_DIM as f32).sqrt(), base.add(r * PAIRS), lo);
        }
        qp
    }

    /// Keys each of the task's rows sees (`super::visible_keys`), for a tile of `ROWS` rows.
    pub(super) fn visible_keys<const ROWS: usize>(&self) -> [usize; ROWS] {
        super::visible_keys::<ROWS>(self.rows, self.i0, self.n_kv, self.causal_offset)
    }

    /// Writes the task's rows of `o` (`[_, 64]`), each divided by its softmax `sum`.
    ///
    /// # Safety
    /// As the kernels' `tile`.
    pub(super) unsafe fn write(&self, o: &[f32], sum: &[f32]) {
        super::write_tile(o, sum, self.rows, self.out, (self.i0, self.d, self.h));
    }
}

/// The online softmax of a tile of `ROWS` queries over its key blocks: running max and sum
/// per row, and the factor that rescales each row's output for the latest block.
pub(super) struct Softmax<const ROWS: usize> {
    max: [f32; ROWS],
    pub(super) sum: [f32; ROWS],
    pub(super) alpha: [f32; ROWS],
}

impl<const ROWS: usize> Softmax<ROWS> {
    pub(super) fn new() -> Self {
        Softmax {
            max: [f32::NEG_INFINITY; ROWS],
            sum: [0.0; ROWS],
            alpha: [0.0; ROWS],
        }
    }

    /// One block of `cb` keys from key `j0`: `s` holds its scores (`[ROWS][KEY_BLOCK]`), of
    /// which row r sees keys below `visible[r]`; writes the weights to `w` as bf16 in key order
    /// (`[ROWS][KEY_BLOCK / 2]` pairs, zero past the visible keys), with `split` their `lo`
    /// parts after them, and updates the sums, maxima and `alpha`.
    ///
    /// # Safety
    /// [`available`].
    #[target_feature(enable = "avx512f,avx512dq,avx512bf16,fma")]
    pub(super) unsafe fn block(
        &mut self,
        s: &[f32],
        w: &mut [u32],
        visible: &[usize; ROWS],
        j0: usize,
        cb: usize,
        split: bool,
    ) {
        let plane = ROWS * KEY_BLOCK / 2;
        assert!(s.len() >= ROWS * KEY_BLOCK && w.len() >= planes(split) * plane);
        let valid = visible.map(|seen| seen.saturating_sub(j0).min(cb));
        let row = |r: usize| s.as_ptr().add(r * KEY_BLOCK);
        let mut shift = [0.0f32; ROWS];
        for r in 0..ROWS {
            let (new_max, row_shift, a) = online_step(self.max[r], block_max(row(r), valid[r]));
            (self.max[r], self.alpha[r], shift[r]) = (new_max, a, row_shift);
        }
        // Two rows at a time: their exponentials are independent chains the core overlaps.
        let w = w.as_mut_ptr();
        let mut r = 0;
        while r < ROWS {
            let n = (ROWS - r).min(2);
            let weights = |i: usize| w.add((r + i.min(n - 1)) * KEY_BLOCK / 2);
            let rows = [row(r), row(r + n - 1)];
            let lo = split.then(|| [weights(0).add(plane), weights(1).add(plane)]);
            let sums = exp_weights(
                rows,
                [valid[r], valid[r + n - 1]],
                [shift[r], shift[r + n - 1]],
                [weights(0), weights(1)],
                lo,
            );
            for (i, row_sum) in sums.into_iter().take(n).enumerate() {
                self.sum[r + i] = self.sum[r + i] * self.alpha[r + i] + row_sum;
            }
            r += n;
        }
    }
}

/// `s[r, 0..32] = Σ_terms q[r] · keys` for the 12 query rows (`q` as `[12][32]` pairs) and one
/// packed key tile (`[32][32]` pairs) of each (queries, keys) term; rows of `s` are
/// [`KEY_BLOCK`] apart.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn scores(terms: &[(*const u32, *const u32)], s: *mut f32) {
    let mut acc = [[_mm512_setzero_ps(); 2]; TILE_ROWS];
    for &(qp, keys) in terms {
        for p in 0..PAIRS {
            let k0: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(keys.add(p * KEY_TILE).cast()));
            let k1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(keys.add(p * KEY_TILE + 16).cast()));
            for (r, a) in acc.iter_mut().enumerate() {
                let qb: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*qp.add(r * PAIRS + p) as i32));
                a[0] = _mm512_dpbf16_ps(a[0], qb, k0);
                a[1] = _mm512_dpbf16_ps(a[1], qb, k1);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(s.add(r * KEY_BLOCK), a[0]);
        _mm512_storeu_ps(s.add(r * KEY_BLOCK + 16), a[1]);
    }
}

/// For each of 2 rows (the same row twice to do one): writes `exp(s - shift)` of the first
/// `valid` scores of `row` (0 after) to `weights` as bf16 ([`KEY_BLOCK`] of them), and with `lo`
/// the `lo` parts to it, and returns the sum of the rounded weights (`hi + lo` when split),
/// each row's added in key order.
#[target_feature(enable = "avx512f,avx512dq,avx512bf16,fma")]
#[inline]
unsafe fn exp_weights(
    row: [*const f32; 2],
    valid: [usize; 2],
    shift: [f32; 2],
    weights: [*mut u32; 2],
    lo: Option<[*mut u32; 2]>,
) -> [f32; 2] {
    let shift_v = shift.map(|x| _mm512_set1_ps(x));
    let mut total = [_mm512_setzero_ps(); 2];
    // The 16 weights `x` as bf16 into `dst`, and back as f32.
    let store = |x: __m512, dst: *mut u32| {
        let bits: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
        _mm256_storeu_si256(dst.cast(), bits);
        bits_to_f32(_mm512_cvtepu16_epi32(bits))
    };
    for c in 0..KEY_BLOCK / 16 {
        for i in 0..2 {
            let e = exp(_mm512_sub_ps(masked(row[i], c, valid[i]), shift_v[i]));
            let hi = store(e, weights[i].add(c * 8));
            total[i] = _mm512_add_ps(total[i], hi);
            if let Some(lo) = lo {
                total[i] = _mm512_add_ps(total[i], store(_mm512_sub_ps(e, hi), lo[i].add(c * 8)));
            }
        }
    }
    total.map(|t| _mm512_reduce_add_ps(t))
}

/// `o[r] = o[r] · alpha[r] + Σ_terms Σ_j w[r, j] · v[j]` for 6 rows (`w` rows [`KEY_BLOCK`] / 2
/// pairs apart, `o` rows 64 wide) over `n_pairs` key pairs of each (weights, values) term: 24
/// accumulators in registers.
#[target_feature(enable = "avx512f,avx512bf16")]
// Not inlined: inlined twice into `tile`, one copy kept 3 of its 24 accumulators on the stack
// (a load and a store around each of their products; 17.2 → 16.8 ms per layer of tiny).
#[inline(never)]
unsafe fn values(terms: &[(*const u32, *const u32)], n_pairs: usize, o: *mut f32, alpha: &[f32]) {
    let mut acc: [[__m512; 4]; 6] = std::array::from_fn(|r| {
        let a = _mm512_set1_ps(alpha[r]);
        std::array::from_fn(|c| _mm512_mul_ps(a, _mm512_loadu_ps(o.add(r * HEAD_DIM + c * 16))))
    });
    for &(w, vp) in terms {
        for p in 0..n_pairs {
            let vr = vp.add(p * HEAD_DIM);
            let vv: [__m512bh; 4] = std::array::from_fn(|c| {
                std::mem::transmute(_mm512_loadu_si512(vr.add(c * 16).cast()))
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let wb: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*w.add(r * KEY_BLOCK / 2 + p) as i32));
                for c in 0..4 {
                    a[c] = _mm512_dpbf16_ps(a[c], wb, vv[c]);
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (c, &x) in a.iter().enumerate() {
            _mm512_storeu_ps(o.add(r * HEAD_DIM + c * 16), x);
        }
    }
}
