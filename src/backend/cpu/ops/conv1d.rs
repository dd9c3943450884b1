//! Kernel-3, padding-1 convolution (the encoder stem), as im2col then `linear`.
//!
//! GPU twin: `backend/gpu/kernels/conv1d.rs` (`shaders/conv1d.wgsl`). Test:
//! `tests/kernels_vs_cpu/conv1d.rs`.

use super::matmul::linear;

/// Output length of a kernel-3, padding-1 convolution.
pub fn conv1d_out_len(t_in: usize, stride: usize) -> usize {
    (t_in + 2 - 3) / stride + 1
}

/// 1-D convolution, kernel 3, padding 1, as Whisper's encoder stem.
/// `input` is `[c_in, t_in]` (channels first, as the mel is); the result is written transposed,
/// `[t_out, c_out]`, because the transformer that follows wants time-major rows.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_k3(
    input: &[f32],
    c_in: usize,
    t_in: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    stride: usize,
    out: &mut [f32],
) {
    let t_out = conv1d_out_len(t_in, stride);
    // im2col, time-major: row t holds input[c, t*stride + j - 1] for every (c, j).
    let mut cols = vec![0.0f32; t_out * c_in * 3];
    super::par_chunks(&mut cols, c_in * 3, |at, rows| {
        for (i, row) in rows.chunks_exact_mut(c_in * 3).enumerate() {
            let t = at / (c_in * 3) + i;
            for c in 0..c_in {
                for j in 0..3 {
                    let src = (t * stride + j) as isize - 1;
                    if src >= 0 && (src as usize) < t_in {
                        row[c * 3 + j] = input[c * t_in + src as usize];
                    }
                }
            }
        }
    });
    linear(
        &cols,
        t_out,
        c_in * 3,
        weight,
        c_out,
        Some(bias),
        false,
        out,
    );
}
