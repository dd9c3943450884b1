//! Elementwise ops: GELU and the residual add.
//!
//! GPU twin: `backend/gpu/kernels/elementwise.rs` (`shaders/elementwise.wgsl`). Test:
//! `tests/kernels_vs_cpu/elementwise.rs`.

use super::math::erf;

/// GELU in the erf form OpenAI's Whisper uses (`torch.nn.functional.gelu`, not the tanh form),
/// in place. Encoder-sized inputs are split across the rayon pool (each element is computed
/// alone, so the split changes no bit).
pub fn gelu(x: &mut [f32]) {
    super::par_chunks(x, 1, |_, chunk| gelu_serial(chunk));
}

simd_dispatch! {
/// [`gelu`] on one thread.
[gelu_on] pub(super) fn gelu_serial(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}
}

simd_dispatch! {
/// `a += b`, elementwise.
[add_assign_on] pub fn add_assign(a: &mut [f32], b: &[f32]) {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
}
}
