//! GELU and the residual add against `ops::gelu` / `ops::add_assign`. Kernel:
//! `src/backend/gpu/kernels/elementwise.rs`, `shaders/elementwise.wgsl`; twin:
//! `src/backend/cpu/ops/elementwise.rs`.

use super::*;

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
