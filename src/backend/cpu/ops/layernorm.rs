//! Layer normalisation of rows.
//!
//! GPU twin: `backend/gpu/kernels/layernorm.rs` (`shaders/layernorm.wgsl`). Test:
//! `tests/kernels_vs_cpu/layernorm.rs`.

/// Layer normalisation over each row of `x` (`cols` wide) into `out`, eps as PyTorch's default
/// 1e-5. Encoder-sized inputs are split by rows across the rayon pool (rows are independent, so
/// the split changes no bit).
pub fn layer_norm(x: &[f32], cols: usize, gamma: &[f32], beta: &[f32], out: &mut [f32]) {
    super::par_chunks(&mut out[..x.len()], cols, |at, o| {
        layer_norm_serial(&x[at..at + o.len()], cols, gamma, beta, o)
    });
}

simd_dispatch! {
/// [`layer_norm`] on one thread.
[layer_norm_on] pub(super) fn layer_norm_serial(x: &[f32], cols: usize, gamma: &[f32], beta: &[f32], out: &mut [f32]) {
    const EPS: f32 = 1e-5;
    for (row, o) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mean = row.iter().sum::<f32>() / cols as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / cols as f32;
        let inv = 1.0 / (var + EPS).sqrt();
        for i in 0..cols {
            o[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}
}
