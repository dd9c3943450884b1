//! `layer_norm` against `ops::layer_norm`. Kernel: `src/backend/gpu/kernels/layernorm.rs`,
//! `shaders/layernorm.wgsl`; twin: `src/backend/cpu/ops/layernorm.rs`.

use super::*;

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
