//! Row argmax against `ops::argmax`. Kernel: `src/backend/gpu/kernels/argmax.rs`,
//! `shaders/argmax.wgsl`; twin: `src/backend/cpu/ops/argmax.rs`. The greedy pick:
//! `tests/suite/gpu_greedy_pick.rs`.

use super::*;

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
