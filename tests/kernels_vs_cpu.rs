//! Every WGSL kernel against its CPU twin in `backend::cpu::ops` (or a twin written here where
//! ops has none: masked softmax), on random seeded data and shapes that are not multiples of any
//! tile. Runs on whatever adapter exists (lavapipe in CI). With no adapter, each test prints
//! "skipped: no GPU adapter" and passes, unless DATTAVANI_REQUIRE_GPU=1 (CI), where it fails.
//!
//! Tolerances. f32 sums of K products accumulated in different orders (GPU: vec4 lanes then K/4
//! partial sums; CPU: gemm's blocked order) differ by at most γ_K·Σ|x_k w_k| ≈ K·ε·Σ|x_k w_k|
//! (ε = 1.19e-7). With data uniform in [-1, 1), Σ|x_k w_k| ≈ K/4, so the worst case is
//! ≈ K²ε/4 (4.4e-3 at K = 385); rounding errors are random-signed, so real differences are
//! ≈ √K·ε·Σ|x w| (≈ 1e-5). We allow 3·K·ε·√K·(1 + |ref|)/4-ish, written as `k_tol(K)` below:
//! far above the observed error, far below the O(0.1) error of any indexing bug (a missing or
//! duplicated product changes a result by |x_k w_k| ≈ 0.25 on average).

#[path = "common/models.rs"]
mod models;

use dattavani_asr::testing::backend::cpu::ops;
use dattavani_asr::testing::backend::gpu::{
    pack_i8, AdapterSelector, GpuContext, KernelConfig, Kernels, MatmulVariant, WeightType,
};
use dattavani_asr::testing::error::Error;
use dattavani_asr::testing::model::quant::QuantizedMatrix;

#[path = "common/gpu.rs"]
mod gpu_adapter;
#[path = "common/npy.rs"]
mod npy;
use gpu_adapter::gpu;

fn kernels(ctx: &GpuContext) -> Kernels {
    Kernels::new(ctx, KernelConfig::for_adapter(ctx)).expect("kernels compile")
}

/// Deterministic uniform [-1, 1) numbers (64-bit LCG, Knuth's constants).
struct Lcg(u64);
impl Lcg {
    fn f(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as u32
    }
}

/// Largest |a - b| / (1 + |b|).
fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0, f32::max)
}

fn k_tol(k: usize) -> f32 {
    let k = k as f32;
    (3.0 * k * f32::EPSILON * k.sqrt() / 4.0).max(1e-5)
}

#[allow(clippy::too_many_arguments)]
fn check_linear(
    ctx: &GpuContext,
    kern: &Kernels,
    rng: &mut Lcg,
    m: usize,
    k: usize,
    n: usize,
    bias: bool,
    gelu: bool,
) {
    let x = rng.vec(m * k);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let bias = bias.then_some(&b[..]);
    let got = kern.run_linear(ctx, &x, m, k, &w, n, bias, gelu).unwrap();
    let mut want = vec![0.0; m * n];
    ops::linear(&x, m, k, &w, n, bias, &mut want);
    if gelu {
        ops::gelu(&mut want);
    }
    let e = max_err(&got, &want);
    // GELU adds its erf approximation error (≤ 0.75e-7·|x|) to the product's.
    assert!(
        e <= k_tol(k),
        "linear m={m} k={k} n={n} bias={} gelu={gelu} ({:?}): err {e} > {}",
        bias.is_some(),
        kern.config.matmul,
        k_tol(k)
    );
}

/// f16 weights (packed pairs): against the CPU with the same f16-rounded weights, the f32
/// tolerance (the arithmetic is f32 on both sides); against the original f32 weights, the
/// rounding of each weight (relative 2^-11) adds at most 2^-11·Σ|x_k w_k|: with |x|, |w| < 1
/// that worst case is 2^-11·K/4 on average data (0.05 at K = 385), but the rounding errors are
/// independent and zero-mean, so the typical error is 2^-11·√(Σ (x_k w_k)²) ≈ 2^-11·√(K/9)
/// ≈ 3e-3 at K = 385; 4·2^-11·√K bounds it with margin (0.04 at K = 385) and still catches
/// indexing bugs (a wrong or missing weight moves a result by ~0.25).
fn check_linear_f16(ctx: &GpuContext, kern: &Kernels, rng: &mut Lcg, m: usize, k: usize, n: usize) {
    let x = rng.vec(m * k);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let got = kern
        .run_linear_typed(ctx, &x, m, k, &w, WeightType::F16, n, Some(&b), n % 2 == 1)
        .unwrap();
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    for (weights, tol, what) in [
        (&w16, k_tol(k), "f16-rounded weights"),
        (&w, 4.0 * (k as f32).sqrt() / 2048.0, "f32 weights"),
    ] {
        let mut want = vec![0.0; m * n];
        ops::linear(&x, m, k, weights, n, Some(&b), &mut want);
        if n % 2 == 1 {
            ops::gelu(&mut want);
        }
        let e = max_err(&got, &want);
        assert!(
            e <= tol,
            "f16 linear m={m} k={k} n={n} vs {what} ({:?}): err {e} > {tol}",
            kern.config.matmul
        );
    }
}

#[test]
fn linear_f16_weights_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(13);
    for variant in [MatmulVariant::Register, MatmulVariant::Tiled] {
        for gemv_max_rows in [0, 4] {
            let kern = Kernels::new(
                &ctx,
                KernelConfig {
                    matmul: variant,
                    gemv_max_rows,
                    ..KernelConfig::for_adapter(&ctx)
                },
            )
            .unwrap();
            for &(m, k, n) in &[(1, 384, 65), (7, 385, 384), (65, 384, 7), (300, 1536, 384)] {
                check_linear_f16(&ctx, &kern, &mut rng, m, k, n);
            }
        }
    }
    // Row ranges of a weight larger than one binding (f16 rows are half as many bytes).
    let kern = Kernels::new(
        &ctx,
        KernelConfig {
            max_binding_override: Some(64 * 384 * 2),
            ..KernelConfig::for_adapter(&ctx)
        },
    )
    .unwrap();
    check_linear_f16(&ctx, &kern, &mut rng, 3, 384, 200);
}

/// Row-scaled int8 weights (`QuantizedMatrix`, four per u32, a scale per row applied after the
/// K-sum). Against the CPU on the dequantized matrix (`q · scale` in f32): the same products up
/// to where the scale is multiplied in (per product on the CPU, once per sum on the GPU: one
/// extra rounding of relative ε/2 per product) and the summation order, so the f32 tolerance
/// `k_tol` holds. Against the original f32 weights, as a check of the quantization itself: each
/// weight moves by at most scale/2 = absmax/254 (≈ 1/254 here), uniformly and independently, so
/// with x uniform in [-1, 1) the error of a result has σ = √K·(1/√3)·(1/(254·√3)) = √K/762
/// (0.026 at K = 385); √K/127 is 6σ over the ~10⁵ outputs checked. That bound is loose next to
/// an indexing bug's O(0.25) only for large K, which is why the dequantized comparison is the
/// one that pins the kernel down.
#[allow(clippy::too_many_arguments)]
fn check_linear_int8(
    ctx: &GpuContext,
    kern: &Kernels,
    rng: &mut Lcg,
    m: usize,
    k: usize,
    n: usize,
    bias: bool,
    gelu: bool,
) {
    let x = rng.vec(m * k);
    // Rows of different magnitudes (1, 1/2, 1/3, 1/4: still within [-1, 1)), so that a scale
    // applied to the wrong output column shows.
    let mut w = rng.vec(n * k);
    for (r, row) in w.chunks_exact_mut(k).enumerate() {
        row.iter_mut().for_each(|v| *v /= (1 + r % 4) as f32);
    }
    let b = rng.vec(n);
    let bias = bias.then_some(&b[..]);
    let got = kern
        .run_linear_typed(ctx, &x, m, k, &w, WeightType::Int8, n, bias, gelu)
        .unwrap();
    let dequantized = QuantizedMatrix::quantize(&w, n, k).dequantize();
    for (weights, tol, what) in [
        (&dequantized, k_tol(k), "dequantized weights"),
        (&w, (k as f32).sqrt() / 127.0, "f32 weights"),
    ] {
        let mut want = vec![0.0; m * n];
        ops::linear(&x, m, k, weights, n, bias, &mut want);
        if gelu {
            ops::gelu(&mut want);
        }
        let e = max_err(&got, &want);
        assert!(
            e <= tol,
            "int8 linear m={m} k={k} n={n} bias={} gelu={gelu} vs {what} ({:?}, gemv up to {} rows): \
             err {e} > {tol}",
            bias.is_some(),
            kern.config.matmul,
            kern.config.gemv_max_rows,
        );
    }
}

#[test]
fn linear_int8_weights_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(21);
    // Register (CPU-type adapters' default) and tiled (real GPUs') matmuls, each with and
    // without the GEMV for few rows, on the odd shapes of `linear_suite`.
    for variant in [MatmulVariant::Register, MatmulVariant::Tiled] {
        for gemv_max_rows in [0, 4] {
            let kern = Kernels::new(
                &ctx,
                KernelConfig {
                    matmul: variant,
                    gemv_max_rows,
                    ..KernelConfig::for_adapter(&ctx)
                },
            )
            .unwrap();
            for &m in &[1, 7, 63, 65, 300] {
                for &k in &[384, 385] {
                    for &n in &[1, 7, 65, 384] {
                        let (bias, gelu) = ((m + n) % 2 == 1, n == 65);
                        check_linear_int8(&ctx, &kern, &mut rng, m, k, n, bias, gelu);
                    }
                }
            }
            check_linear_int8(&ctx, &kern, &mut rng, 300, 1536, 384, true, false);
            // fc2
        }
    }
    // The real-GPU defaults (32 lanes per GEMV output) and the logits projection's shape.
    let kern = Kernels::new(&ctx, KernelConfig::gpu()).unwrap();
    check_linear_int8(&ctx, &kern, &mut rng, 1, 384, 51864, false, false);
    check_linear_int8(&ctx, &kern, &mut rng, 3, 385, 70, true, true);
    check_linear_int8(&ctx, &kernels(&ctx), &mut rng, 1, 384, 51864, false, false);
    // With naga's bounds checks (the int8 unpack under them).
    let kern = Kernels::new(
        &ctx,
        KernelConfig {
            trusted: false,
            ..KernelConfig::for_adapter(&ctx)
        },
    )
    .unwrap();
    check_linear_int8(&ctx, &kern, &mut rng, 65, 385, 65, true, true);
    // Row ranges: 64 rows of 384 int8 per binding, so N = 300 is 5 ranges whose weights and
    // scales are bound at byte offsets.
    for base in [KernelConfig::for_adapter(&ctx), KernelConfig::gpu()] {
        let kern = Kernels::new(
            &ctx,
            KernelConfig {
                max_binding_override: Some(64 * 384),
                ..base
            },
        )
        .unwrap();
        check_linear_int8(&ctx, &kern, &mut rng, 1, 384, 300, true, false);
        check_linear_int8(&ctx, &kern, &mut rng, 65, 384, 300, true, true);
    }
}

#[test]
fn pack_i8_puts_element_0_in_the_low_byte() {
    assert_eq!(pack_i8(&[1, -1, 127, -127]), vec![0x81_7f_ff_01]);
    assert_eq!(pack_i8(&[-128, 0, 0, 0, 5]), vec![0x80, 5]);
}

fn linear_suite(ctx: &GpuContext, kern: &Kernels) {
    let mut rng = Lcg(1);
    for &m in &[1, 7, 63, 65, 300] {
        for &k in &[384, 385] {
            for &n in &[1, 7, 65, 384] {
                check_linear(ctx, kern, &mut rng, m, k, n, (m + n) % 2 == 1, n == 65);
            }
        }
    }
    check_linear(ctx, kern, &mut rng, 1500, 384, 96, true, true);
    check_linear(ctx, kern, &mut rng, 2, 8, 3, true, false); // tiny K: one K tile, partly empty
}

#[test]
fn linear_register_variant_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let cfg = KernelConfig {
        matmul: MatmulVariant::Register,
        ..KernelConfig::for_adapter(&ctx)
    };
    linear_suite(&ctx, &Kernels::new(&ctx, cfg).unwrap());
}

#[test]
fn linear_tiled_variant_and_wide_gemv_match_cpu() {
    let Some(ctx) = gpu() else { return };
    // The real-GPU defaults (shared-memory tiles, 32 lanes per GEMV output), run here too.
    let cfg = KernelConfig {
        trusted: true,
        ..KernelConfig::gpu()
    };
    linear_suite(&ctx, &Kernels::new(&ctx, cfg).unwrap());
}

#[test]
fn linear_with_bounds_checked_shaders_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = Kernels::new(
        &ctx,
        KernelConfig {
            trusted: false,
            ..KernelConfig::for_adapter(&ctx)
        },
    )
    .unwrap();
    let mut rng = Lcg(2);
    check_linear(&ctx, &kern, &mut rng, 65, 385, 65, true, true);
    check_linear(&ctx, &kern, &mut rng, 1, 384, 384, true, false);
}

#[test]
fn linear_split_over_row_ranges_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // Pretend a binding holds 64 rows of 384 floats: N = 300 becomes 5 row ranges, each bound at
    // a byte offset, as whisper-small's 159 MB embedding is on lavapipe's 128 MiB bindings.
    for base in [KernelConfig::for_adapter(&ctx), KernelConfig::gpu()] {
        let cfg = KernelConfig {
            max_binding_override: Some(64 * 384 * 4),
            ..base
        };
        let kern = Kernels::new(&ctx, cfg).unwrap();
        let mut rng = Lcg(3);
        check_linear(&ctx, &kern, &mut rng, 1, 384, 300, true, false);
        check_linear(&ctx, &kern, &mut rng, 65, 384, 300, true, true);
    }
}

#[test]
fn gemv_logits_projection_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // the GEMV kernel itself (CPU adapters default to the register matmul for every row count),
    // one thread and 32 threads per output
    for (lanes, rows) in [(1, 64), (32, 8)] {
        let cfg = KernelConfig {
            gemv_max_rows: 4,
            gemv_lanes: lanes,
            gemv_rows: rows,
            ..KernelConfig::for_adapter(&ctx)
        };
        let kern = Kernels::new(&ctx, cfg).unwrap();
        let mut rng = Lcg(4);
        check_linear(&ctx, &kern, &mut rng, 1, 384, 51864, false, false);
        check_linear(&ctx, &kern, &mut rng, 3, 385, 70, true, true);
    }
    // and the default path for one row
    check_linear(
        &ctx,
        &kernels(&ctx),
        &mut Lcg(5),
        1,
        384,
        51864,
        false,
        false,
    );
}

#[test]
fn conv1d_k3_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(5);
    for &(c_in, t_in, c_out) in &[(80, 301, 65), (7, 1, 3), (13, 64, 384), (384, 63, 7)] {
        for stride in [1, 2] {
            let gelu = stride == 2;
            let x = rng.vec(c_in * t_in);
            let w = rng.vec(c_out * c_in * 3);
            let b = rng.vec(c_out);
            let got = kern
                .run_conv1d_k3(&ctx, &x, c_in, t_in, &w, &b, c_out, stride, gelu)
                .unwrap();
            let t_out = ops::conv1d_out_len(t_in, stride);
            let mut want = vec![0.0; t_out * c_out];
            ops::conv1d_k3(&x, c_in, t_in, &w, &b, c_out, stride, &mut want);
            if gelu {
                ops::gelu(&mut want);
            }
            // a linear layer with K = 3·c_in
            let e = max_err(&got, &want);
            assert!(
                e <= k_tol(3 * c_in),
                "conv1d c_in={c_in} t_in={t_in} c_out={c_out} stride={stride}: err {e}"
            );
        }
    }
}

#[test]
fn layer_norm_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(6);
    for &(rows, cols) in &[(1, 384), (7, 385), (1500, 384), (3, 1), (2, 1000)] {
        let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 3.0 + 0.5).collect();
        let g = rng.vec(cols);
        let b = rng.vec(cols);
        let got = kern.run_layer_norm(&ctx, &x, rows, cols, &g, &b).unwrap();
        let mut want = vec![0.0; rows * cols];
        ops::layer_norm(&x, cols, &g, &b, &mut want);
        // mean and variance are sums of `cols` terms in a different order (tree vs. sequential):
        // relative error ~ cols·ε of a value that is O(1) after normalisation.
        let tol = (cols as f32 * f32::EPSILON * 4.0).max(1e-5);
        let e = max_err(&got, &want);
        assert!(e <= tol, "layer_norm {rows}x{cols}: err {e} > {tol}");
    }
}

#[test]
fn gelu_matches_erf_form() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(7);
    let mut x: Vec<f32> = rng.vec(100_003).iter().map(|v| v * 10.0).collect();
    x.extend_from_slice(&[0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0, 5.0, -5.0]);
    let got = kern.run_gelu(&ctx, &x).unwrap();
    let mut want = x.clone();
    ops::gelu(&mut want);
    // Abramowitz–Stegun 7.1.26: |erf error| ≤ 1.5e-7, so |gelu error| ≤ 0.75e-7·|x|, plus a few
    // ulps of the f32 evaluation: 1e-6·(1 + |x|) bounds both.
    for (i, ((g, w), xv)) in got.iter().zip(&want).zip(&x).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * (1.0 + xv.abs()),
            "gelu x[{i}] = {xv}: gpu {g} cpu {w}"
        );
    }
}

#[test]
fn residual_add_is_exact() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(8);
    let a = rng.vec(1500 * 384 + 3);
    let b = rng.vec(a.len());
    let got = kern.run_add(&ctx, &a, &b).unwrap();
    let mut want = a.clone();
    ops::add_assign(&mut want, &b);
    assert_eq!(got, want); // one f32 addition each: bit-identical
}

/// The CPU twin of the masked softmax: masked entries are -inf before `ops::softmax_rows`.
fn softmax_masked_cpu(x: &[f32], rows: usize, cols: usize, causal: Option<usize>) -> Vec<f32> {
    let mut y = x.to_vec();
    if let Some(p) = causal {
        for (i, row) in y.chunks_exact_mut(cols).enumerate() {
            for v in row.iter_mut().skip(p + i + 1) {
                *v = f32::NEG_INFINITY;
            }
        }
    }
    ops::softmax_rows(&mut y[..rows * cols], cols);
    y
}

#[test]
fn softmax_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(9);
    for &(rows, cols) in &[(7, 1), (7, 65), (3, 1500), (65, 448)] {
        for causal in [None, Some(0), Some(3)] {
            let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 8.0).collect();
            let got = kern.run_softmax(&ctx, &x, rows, cols, causal).unwrap();
            let want = softmax_masked_cpu(&x, rows, cols, causal);
            // probabilities ≤ 1; exp and the sum of `cols` terms in another order: cols·ε relative.
            let tol = (cols as f32 * f32::EPSILON * 2.0).max(1e-6);
            let e = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                e <= tol,
                "softmax {rows}x{cols} causal {causal:?}: err {e} > {tol}"
            );
        }
    }
}

fn check_attention(
    ctx: &GpuContext,
    kern: &Kernels,
    rng: &mut Lcg,
    n_q: usize,
    n_kv: usize,
    n_head: usize,
    causal: Option<usize>,
) {
    check_attention_variant(ctx, kern, rng, n_q, n_kv, n_head, causal, false)
}

#[allow(clippy::too_many_arguments)]
fn check_attention_variant(
    ctx: &GpuContext,
    kern: &Kernels,
    rng: &mut Lcg,
    n_q: usize,
    n_kv: usize,
    n_head: usize,
    causal: Option<usize>,
    unfused: bool,
) {
    let d = n_head * 64;
    let q = rng.vec(n_q * d);
    let k = rng.vec(n_kv * d);
    let v = rng.vec(n_kv * d);
    let got = if unfused {
        kern.run_attention_unfused(ctx, &q, &k, &v, n_q, n_kv, d, n_head)
    } else {
        kern.run_attention(ctx, &q, &k, &v, n_q, n_kv, d, n_head, causal)
    }
    .unwrap();
    let mut want = vec![0.0; n_q * d];
    ops::attention(&q, &k, &v, n_q, n_kv, d, n_head, causal, &mut want);
    // Scores: 64-term dot products (≈ 64·ε·16 ≈ 1e-4 worst case, ~1e-6 typical) then exp and
    // sums over n_kv; outputs are convex combinations of |v| ≤ 1, so absolute error ≈ score
    // error + n_kv·ε. 2e-5 + n_kv·ε covers both with margin.
    let tol = 2e-5 + n_kv as f32 * f32::EPSILON;
    let e = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        e <= tol,
        "attention n_q={n_q} n_kv={n_kv} heads={n_head} causal {causal:?} unfused {unfused}: err {e} > {tol}"
    );
}

#[test]
fn attention_unfused_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // The lavapipe default (chunks of 256 query rows) and 64-row chunks, so that several chunks
    // and a partial last one run; the same tolerance as the fused kernel (same f32 sums).
    for chunk in [256, 64] {
        let config = KernelConfig {
            attn_chunk: chunk,
            ..KernelConfig::for_adapter(&ctx)
        };
        let kern = Kernels::new(&ctx, config).expect("kernels compile");
        let mut rng = Lcg(12);
        for (n_q, n_kv, n_head) in [(300, 300, 6), (65, 1500, 6), (7, 20, 2), (1, 8, 1)] {
            check_attention_variant(&ctx, &kern, &mut rng, n_q, n_kv, n_head, None, true);
        }
    }
}

#[test]
fn attention_encoder_shapes_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(10);
    check_attention(&ctx, &kern, &mut rng, 300, 300, 6, None);
    check_attention(&ctx, &kern, &mut rng, 65, 1500, 6, None); // cross-attention shape
    check_attention(&ctx, &kern, &mut rng, 7, 20, 2, Some(13)); // several prompt tokens, cache
    check_attention(&ctx, &kern, &mut rng, 63, 63, 1, Some(0)); // causal prefix
}

#[test]
fn attention_decoder_shapes_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(11);
    check_attention(&ctx, &kern, &mut rng, 1, 37, 6, Some(36)); // self-attention, one new token
    check_attention(&ctx, &kern, &mut rng, 1, 1500, 6, None); // cross-attention, one token
    check_attention(&ctx, &kern, &mut rng, 3, 3, 6, Some(0)); // initial prompt
    check_attention(&ctx, &kern, &mut rng, 1, 1, 6, Some(0));
}

#[test]
fn embed_matches_cpu_including_split_table() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(12);
    let (vocab, d, n_ctx) = (1000, 384, 448);
    let table = rng.vec(vocab * d);
    let pos = rng.vec(n_ctx * d);
    let mut ids: Vec<u32> = (0..9).map(|_| rng.below(vocab as u32)).collect();
    ids.extend_from_slice(&[0, 999, 64, 63]);
    for over in [None, Some(64 * 384 * 4)] {
        let kern = Kernels::new(
            &ctx,
            KernelConfig {
                max_binding_override: over,
                ..KernelConfig::for_adapter(&ctx)
            },
        )
        .unwrap();
        let got = kern.run_embed(&ctx, &table, &pos, d, &ids, 5).unwrap();
        let mut want = vec![0.0; ids.len() * d];
        ops::embed(&table, &pos, d, &ids, 5, &mut want);
        assert_eq!(got, want, "embed (binding override {over:?})"); // one addition each: exact
    }
}

/// The int8 table (the model's token embedding under `--dtype int8`): each element is
/// `q · scale + pos`, as the CPU computes it from the dequantized table, except that the device
/// may fuse the multiply and add (one rounding instead of two): at most ε·(|q·scale| + |pos|)
/// apart, bounded by 2ε·(1 + |ref|) with values below 2. Also split into row ranges (64 rows of
/// 96 quads per binding: table and scales bound at offsets).
#[test]
fn embed_int8_table_matches_cpu_including_split_table() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Lcg(22);
    let (vocab, d, n_ctx) = (1000, 384, 448);
    let mut table = rng.vec(vocab * d);
    for (r, row) in table.chunks_exact_mut(d).enumerate() {
        row.iter_mut().for_each(|v| *v /= (1 + r % 4) as f32);
    }
    let pos = rng.vec(n_ctx * d);
    let dequantized = QuantizedMatrix::quantize(&table, vocab, d).dequantize();
    let mut ids: Vec<u32> = (0..9).map(|_| rng.below(vocab as u32)).collect();
    ids.extend_from_slice(&[0, 999, 64, 63]);
    for over in [None, Some(64 * 384)] {
        let kern = Kernels::new(
            &ctx,
            KernelConfig {
                max_binding_override: over,
                ..KernelConfig::for_adapter(&ctx)
            },
        )
        .unwrap();
        let got = kern
            .run_embed_typed(&ctx, &table, WeightType::Int8, &pos, d, &ids, 5)
            .unwrap();
        let mut want = vec![0.0; ids.len() * d];
        ops::embed(&dequantized, &pos, d, &ids, 5, &mut want);
        let e = max_err(&got, &want);
        assert!(
            e <= 2.0 * f32::EPSILON,
            "int8 embed (binding override {over:?}): {e}"
        );
    }
}

#[test]
fn argmax_matches_cpu_first_on_ties() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    let mut rng = Lcg(13);
    let n = 51864;
    let mut rows = [
        rng.vec(n),
        rng.vec(n),
        vec![0.5; n],
        rng.vec(n),
        vec![f32::NEG_INFINITY; n],
    ];
    rows[1][40000] = 7.0;
    rows[1][123] = 7.0; // tie: the first index wins
    rows[3][n - 1] = 2.0;
    let flat: Vec<f32> = rows.concat();
    let got = kern.run_argmax(&ctx, &flat, rows.len(), n).unwrap();
    let want: Vec<u32> = rows.iter().map(|r| ops::argmax(r) as u32).collect();
    assert_eq!(got, want);
    assert_eq!(got[1], 123);
    let small = kern.run_argmax(&ctx, &[1.0, 3.0, 3.0], 1, 3).unwrap();
    assert_eq!(small, vec![1]);
}

#[test]
fn adapters_are_listed_and_selected() {
    let Some(ctx) = gpu() else { return };
    let list = dattavani_asr::testing::backend::gpu::list_adapters();
    assert!(!list.is_empty());
    for a in &list {
        assert!(
            a.max_storage_binding_size > 0 && a.max_invocations_per_workgroup > 0,
            "{a}"
        );
        println!("{a}");
    }
    // by index and by name
    let by_index = GpuContext::new(&AdapterSelector::Index(0)).unwrap();
    assert_eq!(by_index.info.name, list[0].name);
    let frag = ctx
        .info
        .name
        .chars()
        .take(4)
        .collect::<String>()
        .to_uppercase();
    assert!(GpuContext::new(&AdapterSelector::from_adapter_arg(&frag)).is_ok());
    let err = GpuContext::new(&AdapterSelector::Index(99))
        .err()
        .expect("index 99 must fail")
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = GpuContext::new(&AdapterSelector::Name("no-such-gpu".into()))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("no-such-gpu"), "{err}");
    // `auto` never takes a software adapter
    let hw = list.iter().any(|a| a.device_type != "Cpu");
    match GpuContext::new(&AdapterSelector::Auto) {
        Ok(c) => assert!(hw && !c.is_software()),
        Err(e) => {
            assert!(!hw);
            assert!(e.to_string().contains("no hardware GPU adapter"), "{e}");
            assert_eq!(e.exit_code(), 4);
        }
    }
}

#[test]
fn device_errors_become_error_values_not_panics() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    // shape checks on the host
    let small = ctx.storage("small", 16);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let mut pass = enc.begin_compute_pass(&Default::default());
    let e = kern
        .linear(&mut pass, &small, &small, None, &small, 4, 4, 4, false)
        .unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e}");
    let e = kern
        .linear(&mut pass, &small, &small, None, &small, 1, 1, 3, false)
        .unwrap_err();
    drop(pass);
    drop(enc);
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    // a real wgpu validation error (a buffer without STORAGE usage bound as storage), caught by
    // the error scope
    let not_storage = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("map-only"),
        size: 64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let r = ctx.scoped("bad binding", || {
        kern.begin();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            kern.add(&mut pass, &not_storage, &small, 4)?;
        }
        kern.flush_params();
        ctx.queue.submit([enc.finish()]);
        Ok(())
    });
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}

/// Model level: the GPU encoder and the first decoder steps against the CPU forward pass on
/// tiny.en and the reference jfk mel. Four pre-LN blocks of f32 GEMMs in different summation
/// orders: the CPU path itself is within ~6e-5 of CTranslate2; we allow 1e-3 (the bound
/// for the encoder) and 2e-3 on logits (magnitudes ~10-30, relative ~1e-4).
#[test]
fn gpu_model_matches_cpu_model_on_jfk() {
    use dattavani_asr::testing::backend::{cpu::CpuModel, gpu::GpuModel, Backend};
    use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};
    let Some(ctx) = gpu() else { return };
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let files = hub::resolve("tiny.en").expect("tiny.en is cached");
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let weights = Weights::open(&files.weights()).unwrap();
    let mut cpu = CpuModel::load(&weights, &config.dims).unwrap();
    let mut gpu = GpuModel::load(ctx, &weights, &config.dims).unwrap();
    let (_, mel) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    cpu.encode(&mel).unwrap();
    let t = std::time::Instant::now();
    gpu.encode(&mel).unwrap();
    eprintln!("gpu encoder: {:.2} s", t.elapsed().as_secs_f64());
    let a = gpu.encoder_output().unwrap();
    let b = cpu.encoder_output().unwrap();
    let e = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    eprintln!("encoder max abs diff gpu vs cpu: {e:.2e}");
    assert!(e <= 1e-3, "encoder diff {e}");
    let n_vocab = config.dims.n_vocab;
    let (mut lg, mut lc) = (vec![0.0; n_vocab], vec![0.0; n_vocab]);
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    // <|startoftranscript|><|notimestamps|> for tiny.en, then greedy steps
    gpu.begin_decode(1).unwrap();
    cpu.begin_decode(1).unwrap();
    let mut tokens = vec![50257u32, 50362];
    for step in 0..4 {
        gpu.decode(&tokens, &mut lg).unwrap();
        cpu.decode(&tokens, &mut lc).unwrap();
        let e = max_diff(&lg, &lc);
        eprintln!("step {step}: logits max abs diff {e:.2e}");
        assert!(e <= 2e-3, "step {step}: logits diff {e}");
        let next = dattavani_asr::testing::backend::cpu::ops::argmax(&lc) as u32;
        assert_eq!(
            dattavani_asr::testing::backend::cpu::ops::argmax(&lg) as u32,
            next
        );
        tokens = vec![next];
    }
    assert_eq!(gpu.cached_len(), cpu.cached_len());
    // Batched: fan out to 3 sequences, feed each a different token, reorder (dropping one,
    // duplicating another), feed two tokens each.
    for m in [&mut gpu as &mut dyn Backend, &mut cpu] {
        m.reorder(&[0, 0, 0]).unwrap();
    }
    let (mut lg, mut lc) = (vec![0.0; 3 * n_vocab], vec![0.0; 3 * n_vocab]);
    for (feed, src) in [
        (vec![262u32, 11, 13], Some(vec![2usize, 0, 2])),
        (vec![1, 2, 3, 4, 5, 6], None),
    ] {
        gpu.decode(&feed, &mut lg).unwrap();
        cpu.decode(&feed, &mut lc).unwrap();
        let e = max_diff(&lg, &lc);
        eprintln!("batched step: logits max abs diff {e:.2e}");
        assert!(e <= 2e-3, "batched logits diff {e}");
        if let Some(src) = src {
            gpu.reorder(&src).unwrap();
            cpu.reorder(&src).unwrap();
        }
    }
    assert_eq!(gpu.n_seq(), 3);
    assert_eq!(gpu.cached_len(), cpu.cached_len());
}

/// Model level, several windows: three windows encoded in one `encode_batch` (the jfk mel, its
/// time-reversal and a quieter copy, so that each window's cross-attention differs), a pass
/// whose sequences read windows [0, 0, 1, 2, 2] (runs of unequal length: the cross-attention
/// dispatches bind query rows from an offset), a reorder that drops window 1 and duplicates a
/// sequence of window 2, and the alignment weights of window 2. Logits against the CPU model
/// within the tolerance of `gpu_model_matches_cpu_model_on_jfk` (2e-3), attention weights
/// within that of `gpu_end_to_end::cross_attention_weights_match_the_cpu` (2e-3).
#[test]
fn gpu_model_matches_cpu_model_over_several_windows() {
    use dattavani_asr::testing::backend::{cpu::CpuModel, gpu::GpuModel, Backend};
    use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};
    let Some(ctx) = gpu() else { return };
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let files = hub::resolve("tiny.en").expect("tiny.en is cached");
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let weights = Weights::open(&files.weights()).unwrap();
    let mut cpu = CpuModel::load(&weights, &config.dims).unwrap();
    let mut gpu = GpuModel::load(ctx, &weights, &config.dims).unwrap();
    let (_, mel) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    let frames = mel.len() / config.dims.n_mels;
    let reversed: Vec<f32> = mel
        .chunks_exact(frames)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let quieter: Vec<f32> = mel.iter().map(|&x| x - 0.25).collect();
    let mels: Vec<&[f32]> = vec![&mel, &reversed, &quieter];
    let n_vocab = config.dims.n_vocab;
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    for m in [&mut gpu as &mut dyn Backend, &mut cpu] {
        m.encode_batch(&mels).unwrap();
        assert_eq!(m.n_windows(), 3);
        m.begin_decode_windows(&[0, 0, 1, 2, 2]).unwrap();
    }
    let (mut lg, mut lc) = (vec![0.0; 5 * n_vocab], vec![0.0; 5 * n_vocab]);
    // <|startoftranscript|><|notimestamps|> for every sequence, then one step of distinct
    // tokens, the reorder, and one more step.
    let prompt: Vec<u32> = (0..5).flat_map(|_| [50257u32, 50362]).collect();
    for (feed, src) in [
        (prompt, None),
        (
            vec![262u32, 11, 13, 383, 314],
            Some(vec![0usize, 1, 3, 4, 4]),
        ),
        (vec![1, 2, 3, 4, 5], None),
    ] {
        gpu.decode(&feed, &mut lg).unwrap();
        cpu.decode(&feed, &mut lc).unwrap();
        let e = max_diff(&lg, &lc);
        eprintln!("windows step: logits max abs diff {e:.2e}");
        assert!(e <= 2e-3, "logits diff {e}");
        // Each window's sequences see their own audio: windows 0 and 1 disagree.
        assert!(max_diff(&lc[..n_vocab], &lc[2 * n_vocab..3 * n_vocab]) > 0.1);
        if let Some(src) = src {
            gpu.reorder(&src).unwrap();
            cpu.reorder(&src).unwrap();
        }
    }
    let tokens = [50257u32, 50362, 400, 523, 616];
    let heads = [(2usize, 1usize), (3, 4)];
    let wg = gpu.cross_attention_weights_in(2, &tokens, &heads).unwrap();
    let wc = cpu.cross_attention_weights_in(2, &tokens, &heads).unwrap();
    let w0 = cpu.cross_attention_weights_in(0, &tokens, &heads).unwrap();
    let e = max_diff(&wg, &wc);
    eprintln!("window 2 attention weights: max abs diff {e:.2e}");
    assert!(e <= 2e-3, "attention weights diff {e}");
    assert!(
        max_diff(&wc, &w0) > 1e-2,
        "windows 0 and 2 align differently"
    );
}
