//! Kernel-3, padding-1 convolution (the encoder stem), as im2col then `linear`.
//!
//! GPU twin: `backend/gpu/kernels/conv1d.rs` (`shaders/conv1d.wgsl`). Test:
//! `tests/kernels_vs_cpu/conv1d.rs`.

use super::matmul::linear;

thread_local! {
    /// The im2col rows of the calling thread's last convolution (taken out for the call, so a
    /// rayon task this thread runs meanwhile never finds it borrowed): a window of tiny fills
    /// 10 MB of them, which a fresh allocation zeroed every window.
    static COLS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Output length of a kernel-3, padding-1 convolution.
pub fn conv1d_out_len(t_in: usize, stride: usize) -> usize {
    (t_in + 2 - 3) / stride + 1
}

/// How a convolution's input is laid out.
#[derive(Clone, Copy)]
pub enum ConvInput {
    /// `[c_in, t_in]` (the mel).
    ChannelsFirst,
    /// `[t_in, c_in]` (what conv1 writes).
    TimeMajor,
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
    let shape = (c_in, t_in, c_out, stride);
    conv1d_k3_from(ConvInput::ChannelsFirst, input, shape, weight, bias, out);
}

/// [`conv1d_k3`] of an input laid out as `layout` says, `(c_in, t_in, c_out, stride)` its
/// shape. A time-major input (conv2 after conv1) gives the same im2col rows, hence the same
/// bits, without a transposed copy.
pub fn conv1d_k3_from(
    layout: ConvInput,
    input: &[f32],
    (c_in, t_in, c_out, stride): (usize, usize, usize, usize),
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let t_out = conv1d_out_len(t_in, stride);
    assert!(input.len() >= c_in * t_in, "conv1d input too small");
    // im2col, time-major: row t holds input[c, t*stride + j - 1] at c*3 + j (0 in the padding).
    let width = c_in * 3;
    let mut cols = COLS.take();
    cols.resize(t_out * width, 0.0);
    super::par_chunks(&mut cols[..t_out * width], width, |at, rows| {
        for (i, row) in rows.chunks_exact_mut(width).enumerate() {
            let t = at / width + i;
            for j in 0..3 {
                let src = (t * stride + j).checked_sub(1).filter(|&s| s < t_in);
                match (src, layout) {
                    (None, _) => (0..c_in).for_each(|c| row[c * 3 + j] = 0.0),
                    (Some(s), ConvInput::ChannelsFirst) => {
                        (0..c_in).for_each(|c| row[c * 3 + j] = input[c * t_in + s])
                    }
                    (Some(s), ConvInput::TimeMajor) => {
                        let src_row = &input[s * c_in..(s + 1) * c_in];
                        for (c, &v) in src_row.iter().enumerate() {
                            row[c * 3 + j] = v;
                        }
                    }
                }
            }
        }
    });
    linear(
        &cols[..t_out * width],
        t_out,
        width,
        weight,
        c_out,
        Some(bias),
        false,
        out,
    );
    COLS.set(cols);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::ops::test_data as data;

    /// Both layouts build the same im2col rows, so the same bits, on odd shapes and both
    /// strides (the padding rows at both ends included).
    #[test]
    fn time_major_input_gives_the_channels_first_bits() {
        for &(c_in, t_in, c_out, stride) in &[(5, 7, 3, 1), (7, 9, 4, 2), (33, 64, 17, 2)] {
            let x = data(1, c_in * t_in);
            let (w, b) = (data(2, c_out * c_in * 3), data(3, c_out));
            let t_out = conv1d_out_len(t_in, stride);
            let mut time_major = vec![0.0; t_in * c_in];
            for c in 0..c_in {
                for t in 0..t_in {
                    time_major[t * c_in + c] = x[c * t_in + t];
                }
            }
            let (mut want, mut got) = (vec![0.0; t_out * c_out], vec![1.0; t_out * c_out]);
            conv1d_k3(&x, c_in, t_in, &w, &b, c_out, stride, &mut want);
            let shape = (c_in, t_in, c_out, stride);
            conv1d_k3_from(ConvInput::TimeMajor, &time_major, shape, &w, &b, &mut got);
            assert_eq!(want, got, "{c_in}x{t_in} -> {c_out}, stride {stride}");
        }
    }
}
