//! The AVX2 + FMA kernels of the fused attention: 6 rows × 16 keys of scores and 3 rows × 32
//! dimensions of weighted values at a time in 16 registers of 8 lanes (the parent module).

use super::super::SendPtr;
use super::{HEAD_DIM, KEY_BLOCK, KEY_TILE, TILE_ROWS};
use std::arch::x86_64::*;

tile_driver!("avx2,fma");

/// `s[r, 0..32] = qs[r] · keys` as the AVX-512 `scores`, in blocks of 6 rows × 16 keys
/// (12 accumulators of the 16 registers).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn scores(qs: *const f32, keys: *const f32, s: *mut f32) {
    for g in 0..TILE_ROWS / 6 {
        for half in 0..KEY_TILE / 16 {
            let mut acc = [[_mm256_setzero_ps(); 2]; 6];
            for t in 0..HEAD_DIM {
                let k0 = _mm256_loadu_ps(keys.add(t * KEY_TILE + half * 16));
                let k1 = _mm256_loadu_ps(keys.add(t * KEY_TILE + half * 16 + 8));
                for (r, a) in acc.iter_mut().enumerate() {
                    let qb = _mm256_set1_ps(*qs.add((g * 6 + r) * HEAD_DIM + t));
                    a[0] = _mm256_fmadd_ps(qb, k0, a[0]);
                    a[1] = _mm256_fmadd_ps(qb, k1, a[1]);
                }
            }
            for (r, a) in acc.iter().enumerate() {
                let row = s.add((g * 6 + r) * KEY_BLOCK + half * 16);
                _mm256_storeu_ps(row, a[0]);
                _mm256_storeu_ps(row.add(8), a[1]);
            }
        }
    }
}

/// Lanes `8c..8c + 8` of `row`, −∞ from index `valid` on.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masked(row: *const f32, c: usize, valid: usize) -> __m256 {
    let live = valid.saturating_sub(c * 8).min(8) as i32;
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(live), lane);
    _mm256_blendv_ps(
        _mm256_set1_ps(f32::NEG_INFINITY),
        _mm256_loadu_ps(row.add(c * 8)),
        _mm256_castsi256_ps(mask),
    )
}

/// The 8 lanes of `x` combined with `f` (a horizontal max or sum).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn reduce(x: __m256, f: impl Fn(__m128, __m128) -> __m128) -> f32 {
    let x = f(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let x = f(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(f(x, _mm_shuffle_ps::<1>(x, x)))
}

/// The AVX-512 `block_max`, 8 lanes at a time.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn block_max(row: *const f32, valid: usize) -> f32 {
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for c in 0..KEY_BLOCK / 8 {
        m = _mm256_max_ps(m, masked(row, c, valid));
    }
    reduce(m, |a, b| _mm_max_ps(a, b))
}

/// The AVX-512 `exp_block`, 8 lanes at a time.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_block(row: *mut f32, valid: usize, shift: f32) -> f32 {
    let (shift_v, mut total) = (_mm256_set1_ps(shift), _mm256_setzero_ps());
    for c in 0..KEY_BLOCK / 8 {
        let p = exp(_mm256_sub_ps(masked(row, c, valid), shift_v));
        total = _mm256_add_ps(total, p);
        _mm256_storeu_ps(row.add(c * 8), p);
    }
    reduce(total, |a, b| _mm_add_ps(a, b))
}

/// `o[r] = o[r] · alpha[r] + Σ_j p[r, j] · v[j]` for the [`TILE_ROWS`] rows, in blocks of
/// 3 rows × 32 dimensions (12 accumulators, 3 broadcast weights, 1 value vector).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn values(p: *const f32, v: *const f32, rs: usize, n: usize, o: *mut f32, a: &[f32]) {
    for g in 0..TILE_ROWS / 3 {
        for half in 0..HEAD_DIM / 32 {
            let o = o.add(g * 3 * HEAD_DIM + half * 32);
            let (p, v) = (p.add(g * 3 * KEY_BLOCK), v.add(half * 32));
            let mut acc: [[__m256; 4]; 3] = std::array::from_fn(|r| {
                let scale = _mm256_set1_ps(a[g * 3 + r]);
                std::array::from_fn(|c| {
                    _mm256_mul_ps(scale, _mm256_loadu_ps(o.add(r * HEAD_DIM + c * 8)))
                })
            });
            for j in 0..n {
                let vr = v.add(j * rs);
                let pb: [__m256; 3] =
                    std::array::from_fn(|r| _mm256_set1_ps(*p.add(r * KEY_BLOCK + j)));
                for c in 0..4 {
                    let vv = _mm256_loadu_ps(vr.add(c * 8));
                    for (a, &pr) in acc.iter_mut().zip(&pb) {
                        a[c] = _mm256_fmadd_ps(pr, vv, a[c]);
                    }
                }
            }
            // Accumulator i is row i / 4, dimensions 8 (i % 4)..
            for (i, &x) in acc.iter().flatten().enumerate() {
                _mm256_storeu_ps(o.add((i / 4) * HEAD_DIM + (i % 4) * 8), x);
            }
        }
    }
}

/// `e^x` lane-wise: the AVX-512 `exp`'s polynomial, 2^n built in the exponent bits (n is
/// within −126..=127 after the clamp, so always a normal number); 0 below −87.3.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp(x: __m256) -> __m256 {
    let live = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(-87.3));
    let xc = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.3)),
        _mm256_set1_ps(88.3),
    );
    let (n, er) = exp_core! { xc; _mm256_set1_ps, _mm256_mul_ps, _mm256_add_ps,
    _mm256_fmadd_ps, _mm256_fnmadd_ps, round_nearest };
    let two_n = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_and_ps(_mm256_mul_ps(er, _mm256_castsi256_ps(two_n)), live)
}

/// Each lane rounded to the nearest integer (ties to even).
#[target_feature(enable = "avx")]
#[inline]
unsafe fn round_nearest(x: __m256) -> __m256 {
    _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x)
}
