//! `linear` (f32, f16 and int8 weights; register, tiled and GEMV kernels; row-range split)
//! against `ops::linear`. Kernel: `src/backend/gpu/kernels/matmul.rs`, `shaders/matmul.wgsl`;
//! twin: `src/backend/cpu/ops/matmul.rs`.

use super::*;

/// (m, k, n, bias, gelu) of one `linear` call: x `[m, k]`, w `[n, k]`.
type Case = (usize, usize, usize, bool, bool);

/// Odd shapes around the tile sizes, with and without bias and GELU.
fn odd_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for m in [1, 5, 7, 63, 65, 300] {
        for k in [384, 385] {
            for n in [1, 7, 65, 384] {
                cases.push((m, k, n, (m + n) % 2 == 1, n == 65));
            }
        }
    }
    cases
}

/// The matmul variants (register: CPU-type adapters' default; tiled: real GPUs'), each without
/// the GEMV for few rows, with a one-row-per-workgroup GEMV up to 4 rows, and with a GEMV up to
/// 8 rows serving 3 rows per workgroup (m = 5 and 7 leave a partial last block).
fn matmul_variants(ctx: &GpuContext) -> Vec<Kernels> {
    let mut all = Vec::new();
    for variant in [MatmulVariant::Register, MatmulVariant::Tiled] {
        for (gemv_max_rows, gemv_batch) in [(0, 1), (4, 1), (8, 3)] {
            all.push(kernels_with(ctx, |c| {
                c.matmul = variant;
                c.gemv_max_rows = gemv_max_rows;
                c.gemv_batch = gemv_batch;
            }));
        }
    }
    all
}

fn check_linear(ctx: &GpuContext, kern: &Kernels, rng: &mut Lcg, case: Case) {
    let (m, k, n, bias, gelu) = case;
    let x = rng.vec(m * k);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let bias = bias.then_some(&b[..]);
    let got = kern
        .run_linear(ctx, &x, m, k, &w, WeightType::F32, n, bias, gelu)
        .unwrap();
    let mut want = vec![0.0; m * n];
    ops::linear(&x, m, k, &w, n, bias, false, &mut want);
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
        .run_linear(ctx, &x, m, k, &w, WeightType::F16, n, Some(&b), n % 2 == 1)
        .unwrap();
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    for (weights, tol, what) in [
        (&w16, k_tol(k), "f16-rounded weights"),
        (&w, 4.0 * (k as f32).sqrt() / 2048.0, "f32 weights"),
    ] {
        let mut want = vec![0.0; m * n];
        ops::linear(&x, m, k, weights, n, Some(&b), false, &mut want);
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
    for kern in matmul_variants(&ctx) {
        for &(m, k, n) in &[(1, 384, 65), (7, 385, 384), (65, 384, 7), (300, 1536, 384)] {
            check_linear_f16(&ctx, &kern, &mut rng, m, k, n);
        }
    }
    // Row ranges of a weight larger than one binding (f16 rows are half as many bytes).
    let kern = kernels_with(&ctx, |c| c.max_binding_override = Some(64 * 384 * 2));
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
fn check_linear_int8(ctx: &GpuContext, kern: &Kernels, rng: &mut Lcg, case: Case) {
    let (m, k, n, bias, gelu) = case;
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
        .run_linear(ctx, &x, m, k, &w, WeightType::Int8, n, bias, gelu)
        .unwrap();
    let dequantized = QuantizedMatrix::quantize(&w, n, k).dequantize();
    for (weights, tol, what) in [
        (&dequantized, k_tol(k), "dequantized weights"),
        (&w, (k as f32).sqrt() / 127.0, "f32 weights"),
    ] {
        let mut want = vec![0.0; m * n];
        ops::linear(&x, m, k, weights, n, bias, false, &mut want);
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
    for kern in matmul_variants(&ctx) {
        for case in odd_cases() {
            check_linear_int8(&ctx, &kern, &mut rng, case);
        }
        check_linear_int8(&ctx, &kern, &mut rng, (300, 1536, 384, true, false));
        // fc2
    }
    // The real-GPU defaults (32 lanes per GEMV output) and the logits projection's shape.
    let kern = kernels_from(&ctx, KernelConfig::gpu(), |_| ());
    check_linear_int8(&ctx, &kern, &mut rng, (1, 384, 51864, false, false));
    check_linear_int8(&ctx, &kern, &mut rng, (3, 385, 70, true, true));
    check_linear_int8(&ctx, &kern, &mut rng, (5, 385, 70, true, true));
    check_linear_int8(
        &ctx,
        &kernels(&ctx),
        &mut rng,
        (1, 384, 51864, false, false),
    );
    // With naga's bounds checks (the int8 unpack under them).
    let kern = kernels_with(&ctx, |c| c.trusted = false);
    check_linear_int8(&ctx, &kern, &mut rng, (65, 385, 65, true, true));
    // Row ranges: 64 rows of 384 int8 per binding, so N = 300 is 5 ranges whose weights and
    // scales are bound at byte offsets.
    for base in [KernelConfig::for_adapter(&ctx), KernelConfig::gpu()] {
        let kern = kernels_from(&ctx, base, |c| c.max_binding_override = Some(64 * 384));
        check_linear_int8(&ctx, &kern, &mut rng, (1, 384, 300, true, false));
        check_linear_int8(&ctx, &kern, &mut rng, (65, 384, 300, true, true));
    }
}

#[test]
fn pack_i8_puts_element_0_in_the_low_byte() {
    assert_eq!(pack_i8(&[1, -1, 127, -127]), vec![0x81_7f_ff_01]);
    assert_eq!(pack_i8(&[-128, 0, 0, 0, 5]), vec![0x80, 5]);
}

/// `check_linear` of each case in turn, with data from seed `seed`.
fn check_cases(ctx: &GpuContext, kern: &Kernels, seed: u64, cases: impl IntoIterator<Item = Case>) {
    let mut rng = Lcg(seed);
    for case in cases {
        check_linear(ctx, kern, &mut rng, case);
    }
}

fn linear_suite(ctx: &GpuContext, kern: &Kernels) {
    // An encoder-sized product, and a tiny K: one K tile, partly empty.
    let big_and_tiny = [(1500, 384, 96, true, true), (2, 8, 3, true, false)];
    check_cases(ctx, kern, 1, odd_cases().into_iter().chain(big_and_tiny));
}

#[test]
fn linear_register_variant_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels_with(&ctx, |c| c.matmul = MatmulVariant::Register);
    linear_suite(&ctx, &kern);
}

#[test]
fn linear_tiled_variant_and_wide_gemv_match_cpu() {
    let Some(ctx) = gpu() else { return };
    // The real-GPU defaults (shared-memory tiles, 32 lanes per GEMV output), run here too.
    let kern = kernels_from(&ctx, KernelConfig::gpu(), |c| c.trusted = true);
    linear_suite(&ctx, &kern);
}

#[test]
fn linear_with_bounds_checked_shaders_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels_with(&ctx, |c| c.trusted = false);
    let cases = [(65, 385, 65, true, true), (1, 384, 384, true, false)];
    check_cases(&ctx, &kern, 2, cases);
}

#[test]
fn linear_split_over_row_ranges_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // Pretend a binding holds 64 rows of 384 floats: N = 300 becomes 5 row ranges, each bound at
    // a byte offset, as whisper-small's 159 MB embedding is on lavapipe's 128 MiB bindings.
    for base in [KernelConfig::for_adapter(&ctx), KernelConfig::gpu()] {
        let kern = kernels_from(&ctx, base, |c| c.max_binding_override = Some(64 * 384 * 4));
        let cases = [(1, 384, 300, true, false), (65, 384, 300, true, true)];
        check_cases(&ctx, &kern, 3, cases);
    }
}

#[test]
fn gemv_logits_projection_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // the GEMV kernel itself (CPU adapters default to the register matmul for every row count),
    // one thread and 32 threads per output, one or 8 input rows per workgroup: a beam-5 step's
    // 5 rows and a full block of 8
    for (lanes, rows, batch) in [(1, 64, 1), (32, 8, 1), (32, 8, 8)] {
        let kern = kernels_with(&ctx, |c| {
            c.gemv_max_rows = 8;
            c.gemv_lanes = lanes;
            c.gemv_rows = rows;
            c.gemv_batch = batch;
        });
        let mut rng = Lcg(4);
        check_linear(&ctx, &kern, &mut rng, (1, 384, 51864, false, false));
        check_linear(&ctx, &kern, &mut rng, (5, 384, 51864, false, false));
        check_linear(&ctx, &kern, &mut rng, (3, 385, 70, true, true));
        check_linear(&ctx, &kern, &mut rng, (8, 385, 70, true, true));
    }
    // and the default path for one row
    let logits = (1, 384, 51864, false, false);
    check_linear(&ctx, &kernels(&ctx), &mut Lcg(5), logits);
}
