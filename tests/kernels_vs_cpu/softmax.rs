//! Row softmax, plain and causal, against `ops::softmax_rows`. Kernel:
//! `src/backend/gpu/kernels/softmax.rs`, `shaders/softmax.wgsl`; twin:
//! `src/backend/cpu/ops/softmax.rs`.

use super::*;

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
            let e = max_abs_err(&got, &want);
            assert!(
                e <= tol,
                "softmax {rows}x{cols} causal {causal:?}: err {e} > {tol}"
            );
        }
    }
}
