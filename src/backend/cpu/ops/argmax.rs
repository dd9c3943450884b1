//! Index of the largest value.
//!
//! GPU twin: `backend/gpu/kernels/argmax.rs` (`shaders/argmax.wgsl`). Test:
//! `tests/kernels_vs_cpu/argmax.rs`.

/// Index of the largest value (the first one on ties), as the GPU argmax kernel returns.
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}
