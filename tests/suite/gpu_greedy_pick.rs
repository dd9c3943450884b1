//! The device-side greedy choice (`greedy_pick` in shaders/argmax.wgsl) against its CPU twin
//! `backend::masked_argmax`, on odd vocabulary sizes, masks and ties.

use dattavani_asr::testing::backend::gpu::kernels::{KernelConfig, Kernels};
use dattavani_asr::testing::backend::masked_argmax;

use crate::gpu_adapter;
use gpu_adapter::gpu;

/// The index must be identical (first on ties). The log-probability is a log-sum-exp over up to
/// 51,865 terms summed in a different order (online per thread, then a tree) with the GPU's exp:
/// relative error of the sum ~ n·ε in the worst case, in practice ~1e-6; 1e-4 absolute on a
/// value of order 10 leaves room while a wrong max or a missed mask (errors ≥ 1e-2) fails.
#[test]
fn greedy_pick_matches_masked_argmax() {
    let Some(ctx) = gpu() else { return };
    let k = Kernels::new(&ctx, KernelConfig::for_adapter(&ctx)).expect("kernels compile");
    let mut state = 7u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 20.0 - 10.0
    };
    for &n in &[1usize, 7, 63, 65, 257, 1000, 51864, 51865] {
        let x: Vec<f32> = (0..n).map(|_| next()).collect();
        // Mask the true maximum and a spread of other ids, as suppression lists do.
        let top = dattavani_asr::testing::backend::cpu::ops::argmax(&x) as u32;
        let mut suppress: Vec<u32> = (3..n as u32).step_by(7).collect();
        // (Never every id: a fully masked row has no answer.)
        if n > 1 {
            suppress.push(top);
        }
        suppress.sort_unstable();
        suppress.dedup();
        for mask in [&[][..], &suppress[..]] {
            let (want_i, want_lp) = masked_argmax(&mut x.clone(), mask);
            let (got_i, got_lp) = k.run_greedy_pick(&ctx, &x, mask).unwrap();
            assert_eq!(got_i, want_i, "n={n}, mask of {}", mask.len());
            assert!(
                (got_lp - want_lp).abs() <= 1e-4,
                "n={n}: log-prob {got_lp} vs {want_lp}"
            );
        }
    }
    // Ties: the first index wins, as ops::argmax.
    let x = vec![1.0f32, 3.0, 3.0, 2.0, 3.0];
    assert_eq!(k.run_greedy_pick(&ctx, &x, &[]).unwrap().0, 1);
    assert_eq!(k.run_greedy_pick(&ctx, &x, &[1]).unwrap().0, 2);
}
