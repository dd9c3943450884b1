//! Row softmax and `log_sum_exp` (the decoder's log-probabilities).
//!
//! GPU twin: `backend/gpu/kernels/softmax.rs` (`shaders/softmax.wgsl`). Test:
//! `tests/kernels_vs_cpu/softmax.rs`.

use super::math::{exp, lanes_reduce};

simd_dispatch! {
/// Numerically stable softmax of each `cols`-wide row, in place.
[softmax_rows_on] pub fn softmax_rows(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let max = lanes_reduce(row, f32::NEG_INFINITY, f32::max);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / lanes_reduce(row, 0.0, |a, b| a + b);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}
}

simd_dispatch! {
/// `ln Σ exp(x)`, stable (the max is factored out); −∞ for an empty or all −∞ input. Vectorised:
/// it runs over the whole vocabulary at every decoding step.
[log_sum_exp_on] pub fn log_sum_exp(x: &[f32]) -> f32 {
    let max = lanes_reduce(x, f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += exp(c[i] - max);
        }
    }
    let sum = acc.iter().sum::<f32>() + tail.iter().map(|&v| exp(v - max)).sum::<f32>();
    max + sum.ln()
}
}
