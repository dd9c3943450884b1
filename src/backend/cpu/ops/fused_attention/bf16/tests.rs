//! The bf16 kernels (AVX-512 BF16, and the AMX kernel on the tile emulator and, where used, on
//! the CPU's tiles) against f64 attention, on the fused kernels' odd shapes, keys and values
//! as rows and head-major.

use super::super::{bf16_amx_available, fused_attention, fused_bf16, Bf16Kernel, Products};
use crate::backend::cpu::amx::{assert_tiles_ran_if_required, Feature};
use crate::backend::cpu::isa::Isa;
use crate::backend::cpu::ops::attention::tests::{both_layouts, rows_f64, FUSED_SHAPES};
use crate::backend::cpu::ops::attention::AttnShape;
use crate::backend::cpu::ops::test_data as data;

/// Sizes of every case: two heads of 64.
const D: usize = 128;
const N_HEAD: usize = 2;

/// Every bf16 kernel's output for `products` (the dispatched one, then each kernel forced:
/// AVX-512 BF16, the AMX kernel on the emulator, and on the CPU's tiles where they are used),
/// named, for queries `q`, keys and values `k`, `v` as rows; `None` where the CPU has no AVX-512
/// BF16 (the request then runs the f32 kernels, tested elsewhere).
fn bf16_outputs(
    products: Products,
    (q, k, v): (&[f32], &[f32], &[f32]),
    (n_q, n_kv, causal): (usize, usize, Option<usize>),
) -> Option<Vec<(String, Vec<f32>)>> {
    if products.on_this_cpu() != products {
        return None;
    }
    let shape = AttnShape {
        n_q,
        n_kv,
        d: D,
        n_head: N_HEAD,
    };
    let on_cpu_tiles = bf16_amx_available();
    assert_tiles_ran_if_required(Feature::Bf16, on_cpu_tiles);
    // The AMX kernel has bf16 scores only.
    let mut kernels = vec![Bf16Kernel::Avx512];
    if products != Products::Bf16Values {
        kernels.push(Bf16Kernel::AmxEmulated);
    }
    if on_cpu_tiles && products != Products::Bf16Values {
        kernels.push(Bf16Kernel::Amx);
    }
    let mut results = Vec::new();
    for &(name, layout, ref k, ref v) in &both_layouts(k, v, n_kv, D, N_HEAD) {
        let head = |h| layout.head(h, n_kv, D, D / N_HEAD);
        let mut out = vec![f32::NAN; n_q * D];
        let ran = fused_attention(
            Isa::Avx512,
            products,
            q,
            k,
            v,
            head,
            shape,
            causal,
            &mut out,
        );
        assert!(ran, "the fused kernel declined");
        results.push((format!("dispatched {name}"), out));
        for &kernel in &kernels {
            let mut out = vec![f32::NAN; n_q * D];
            fused_bf16(
                kernel, products, q, k, v, &head, shape, causal, true, &mut out,
            );
            results.push((format!("{kernel:?} {name}"), out));
        }
    }
    Some(results)
}

/// Each of `x` rounded to bf16 (nearest even) and back.
fn bf16_round(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect()
}

/// The largest distance of `got` from `want`.
fn max_error(got: &[f32], want: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

/// The bf16 kernels against f64 attention of the same operands rounded to bf16 (queries after
/// their 1/8, exact): what remains is the rounding of each softmax weight to bf16 (8
/// significant bits: a relative 2^-8 at most) and of their f32 sums. A weighted mean of values
/// within ±max|v| whose weights each move by 2^-8 (and are normalised by their rounded sum)
/// moves by at most 2 · 2^-8 · max|v|; 1e-5 more covers the f32 sums. Queries scaled up 16x so
/// the softmax is sharp (scores up to ±8) and the running max moves between key blocks.
#[test]
fn bf16_fused_attention_matches_f64_of_rounded_operands() {
    for &(n_q, n_kv, causal) in FUSED_SHAPES {
        let q: Vec<f32> = data(31, n_q * D).iter().map(|x| x * 16.0).collect();
        let (k, v) = (data(32, n_kv * D), data(33, n_kv * D));
        let q_rounded: Vec<f32> = bf16_round(&q.iter().map(|x| x / 8.0).collect::<Vec<_>>())
            .iter()
            .map(|x| x * 8.0)
            .collect();
        let (k_rounded, v_rounded) = (bf16_round(&k), bf16_round(&v));
        let want = rows_f64(
            [&q_rounded, &k_rounded, &v_rounded],
            (n_q, n_kv, D, N_HEAD),
            causal,
        );
        let v_max = v.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let tolerance = 2.0 * v_max / 256.0 + 1e-5;
        let Some(results) = bf16_outputs(Products::Bf16, (&q, &k, &v), (n_q, n_kv, causal)) else {
            return;
        };
        for (kernel, out) in &results {
            let error = max_error(out, &want);
            assert!(
                error < tolerance,
                "bf16 {kernel} {n_q}x{n_kv} {causal:?}: off by {error} (tolerance {tolerance})"
            );
        }
    }
}

/// The split kernels (`Products::Bf16x3`) against f64 attention of the operands as given.
///
/// The bound: an operand `a` is `hi + lo + r` with `|a − hi| ≤ 2^-8 |a|` (bf16 to nearest) and
/// `|r| ≤ 2^-8 |a − hi| ≤ 2^-16 |a|`, so a product's three terms miss `a·b` by `lo_a·lo_b` and
/// the `r` terms, under 3.1 · 2^-16 ≤ 2^-14 of `|a||b|` (bf16 products are exact in f32). A
/// score then moves by at most `E = 2^-14 Σ_t |q_t / 8| |k_t|`, each weight (split too, and
/// summed as `hi + lo`) by a factor within `e^(±(E + 2^-16))`, each normalised weight by one
/// within `e^(±2(E + 2^-16))`, and weights × values lose 2^-14 more: the output moves by at most
/// `(e^(2E + 2^-15) − 1 + 2^-14) · max|v|`, plus 1e-5 for the f32 sums. `E` is taken at its
/// largest over query and key rows of each case.
///
/// That bound is a worst case; the point of splitting is that the error is far below bf16's, so
/// each kernel must also be within 1/64 of the plain bf16 kernels' error on the same case, as
/// far apart as the two per-product bounds (2^-14 against 2^-8; measured on Zen 5: 1/330 to
/// 1/900). Dropping one of the three products, or reading a `lo` plane one tile off, fails.
#[test]
fn bf16x3_fused_attention_matches_f64_near_f32() {
    let hd = D / N_HEAD;
    for &(n_q, n_kv, causal) in FUSED_SHAPES {
        let q: Vec<f32> = data(41, n_q * D).iter().map(|x| x * 16.0).collect();
        let (k, v) = (data(42, n_kv * D), data(43, n_kv * D));
        let want = rows_f64([&q, &k, &v], (n_q, n_kv, D, N_HEAD), causal);
        let v_max = v.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let mut sum_max = 0.0f64;
        for (i, j, h) in
            (0..n_q).flat_map(|i| (0..n_kv).flat_map(move |j| (0..2).map(move |h| (i, j, h))))
        {
            let sum: f64 = (0..hd)
                .map(|t| {
                    (q[i * D + h * hd + t] / 8.0).abs() as f64 * k[j * D + h * hd + t].abs() as f64
                })
                .sum();
            sum_max = sum_max.max(sum);
        }
        let e = sum_max / 16384.0;
        let tolerance = ((2.0 * e + 1.0 / 32768.0).exp_m1() + 1.0 / 16384.0) * v_max + 1e-5;
        let case = (n_q, n_kv, causal);
        let Some(split) = bf16_outputs(Products::Bf16x3, (&q, &k, &v), case) else {
            return;
        };
        let plain = bf16_outputs(Products::Bf16, (&q, &k, &v), case).unwrap();
        for ((kernel, out), (_, plain)) in split.iter().zip(&plain) {
            let (error, plain_error) = (max_error(out, &want), max_error(plain, &want));
            assert!(
                error < tolerance && error <= plain_error / 64.0,
                "bf16x3 {kernel} {n_q}x{n_kv} {causal:?}: off by {error} (tolerance \
                 {tolerance}, plain bf16 off by {plain_error})"
            );
        }
    }
}

/// `Products::Bf16Values` against f64 attention of the queries and keys as given and the values
/// rounded to bf16: the scores are f32 (the f32 kernel's, within 1e-5 of f64 in its own test),
/// so what remains is the rounding of each softmax weight to bf16, bounded as in
/// `bf16_fused_attention_matches_f64_of_rounded_operands` by `2 · 2^-8 · max|v|`; 1e-4 more
/// covers the f32 scores (which the softmax exponentiates: a score off by 1e-6 of its ±8 moves
/// a weight by ~1e-5 of itself) and sums. It must also be nearer to f32 attention than plain
/// bf16 is on every case of more than one key (one key's output is its value, rounded by
/// both): the scores are where plain bf16 loses most. Rounding the queries or keys to bf16 as
/// well fails that.
#[test]
fn bf16_values_fused_attention_keeps_f32_scores() {
    for &(n_q, n_kv, causal) in FUSED_SHAPES {
        let q: Vec<f32> = data(51, n_q * D).iter().map(|x| x * 16.0).collect();
        let (k, v) = (data(52, n_kv * D), data(53, n_kv * D));
        let shape = (n_q, n_kv, D, N_HEAD);
        let want = rows_f64([&q, &k, &bf16_round(&v)], shape, causal);
        let exact = rows_f64([&q, &k, &v], shape, causal);
        let v_max = v.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let tolerance = 2.0 * v_max / 256.0 + 1e-4;
        let case = (n_q, n_kv, causal);
        let Some(results) = bf16_outputs(Products::Bf16Values, (&q, &k, &v), case) else {
            return;
        };
        let plain = bf16_outputs(Products::Bf16, (&q, &k, &v), case).unwrap();
        for ((kernel, out), (_, plain)) in results.iter().zip(&plain) {
            let error = max_error(out, &want);
            let (to_f32, plain_to_f32) = (max_error(out, &exact), max_error(plain, &exact));
            assert!(
                error < tolerance && (to_f32 < plain_to_f32 || n_kv == 1),
                "bf16 values {kernel} {n_q}x{n_kv} {causal:?}: off by {error} (tolerance \
                 {tolerance}); from f32 attention {to_f32}, plain bf16 {plain_to_f32}"
            );
        }
    }
}
