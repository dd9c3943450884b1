//! `conv1d_k3` against `ops::conv1d_k3`. Kernel: `src/backend/gpu/kernels/conv1d.rs`,
//! `shaders/conv1d.wgsl`; twin: `src/backend/cpu/ops/conv1d.rs`.

use super::*;

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
                .run_conv1d_k3(&ctx, [&x, &w, &b], (c_in, t_in, c_out, stride), gelu)
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
