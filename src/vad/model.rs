//! The Silero VAD v6 network (16 kHz) on the CPU: a speech probability per 512-sample window.
//!
//! The graph, as the package's `silero_vad.onnx` (16 kHz branch) and `tinygrad_model.py` run it:
//! 1. input: 64 samples of context (the end of the previous window, zeros at first) + 512 new
//!    samples = 576, reflect-padded on the right by 64 -> 640;
//! 2. STFT as a conv: 258 filters of 256 taps, stride 128 -> 4 frames; magnitude
//!    `sqrt(re² + im²)` of the 129 (re, im) pairs;
//! 3. four conv layers (kernel 3, padding 1, ReLU): 129->128 (stride 1), 128->64 (stride 2),
//!    64->64 (stride 2), 64->128 (stride 1), leaving one frame of 128 features;
//! 4. an LSTM cell (PyTorch gate order i, f, g, o) with state (h, c) carried between windows;
//! 5. ReLU(h), a 1x1 conv 128->1, sigmoid: the window's speech probability.
//!
//! Only the LSTM depends on earlier windows (the context is just the previous 64 samples), so
//! steps 1-3 and the LSTM's input product run for a block of windows at once as matrix products
//! (the `gemm` crate; the STFT by FFT when its filters are a windowed DFT, as in v6), and only
//! `weight_hh · h` and the cell update run window by window.

use std::path::Path;

use crate::error::{Error, Result};

/// Samples per window at 16 kHz.
pub const WINDOW_SAMPLES: usize = 512;
/// Samples of the previous window prepended to each window.
pub const CONTEXT_SAMPLES: usize = 64;
/// The sample rate the model runs at.
pub const SAMPLE_RATE: usize = 16_000;

const INPUT: usize = CONTEXT_SAMPLES + WINDOW_SAMPLES; // 576
const PADDED: usize = INPUT + 64; // 640, reflect padding on the right
const N_FFT: usize = 256;
const HOP: usize = 128;
const FRAMES: usize = (PADDED - N_FFT) / HOP + 1; // 4
const BINS: usize = N_FFT / 2 + 1; // 129
const HIDDEN: usize = 128;

/// One conv layer: weights `[c_out, c_in * 3]` (PyTorch's `[c_out, c_in, 3]` flattened), so each
/// output is one dot product with an im2col column laid out `[c_in, 3]`.
#[derive(Debug, Clone)]
struct Conv {
    c_in: usize,
    c_out: usize,
    stride: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The weights of the 16 kHz model, in the layout the forward pass reads.
#[derive(Debug, Clone)]
pub struct VadWeights {
    /// `[258, 256]`: rows 0..129 the real parts, 129..258 the imaginary parts.
    stft: Vec<f32>,
    /// Whether `stft` is a windowed DFT basis (row k: `w[n] cos(2πkn/256)`, `-w[n] sin(..)`, the
    /// window `w` being row 0), so an FFT gives the same magnitudes with 1/30 of the work.
    stft_is_dft: bool,
    convs: [Conv; 4],
    /// `[512, 128]`, PyTorch's gate order (i, f, g, o).
    lstm_ih: Vec<f32>,
    /// `weight_hh` transposed, `[128, 512]`: the recurrent product is then 128 vector
    /// multiply-adds over all 512 gates (no per-gate horizontal sums on the sequential path).
    lstm_hh_t: Vec<f32>,
    /// `bias_ih + bias_hh`.
    lstm_bias: Vec<f32>,
    out_weight: Vec<f32>,
    out_bias: f32,
}

/// The tensor names (as in the package's `silero_vad_16k.safetensors`) and shapes of the model.
pub const TENSORS: &[(&str, &[usize])] = &[
    ("stft_conv.weight", &[258, 1, 256]),
    ("conv1.weight", &[128, 129, 3]),
    ("conv1.bias", &[128]),
    ("conv2.weight", &[64, 128, 3]),
    ("conv2.bias", &[64]),
    ("conv3.weight", &[64, 64, 3]),
    ("conv3.bias", &[64]),
    ("conv4.weight", &[128, 64, 3]),
    ("conv4.bias", &[128]),
    ("lstm_cell.weight_ih", &[512, 128]),
    ("lstm_cell.weight_hh", &[512, 128]),
    ("lstm_cell.bias_ih", &[512]),
    ("lstm_cell.bias_hh", &[512]),
    ("final_conv.weight", &[1, 128, 1]),
    ("final_conv.bias", &[1]),
];

impl VadWeights {
    /// Build from named tensors (names and shapes of [`TENSORS`]); `get(name, shape)` returns the
    /// tensor's values or an error naming `path`.
    pub(crate) fn from_tensors(
        mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    ) -> Result<Self> {
        let mut t = |name: &str| {
            let shape = TENSORS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
                .expect("name listed in TENSORS");
            get(name, shape)
        };
        let conv = |t: &mut dyn FnMut(&str) -> Result<Vec<f32>>,
                    i: usize,
                    c_in: usize,
                    c_out: usize,
                    stride: usize|
         -> Result<Conv> {
            Ok(Conv {
                c_in,
                c_out,
                stride,
                weight: t(&format!("conv{i}.weight"))?,
                bias: t(&format!("conv{i}.bias"))?,
            })
        };
        let stft = t("stft_conv.weight")?;
        let stft_is_dft = is_windowed_dft(&stft);
        let convs = [
            conv(&mut t, 1, BINS, 128, 1)?,
            conv(&mut t, 2, 128, 64, 2)?,
            conv(&mut t, 3, 64, 64, 2)?,
            conv(&mut t, 4, 64, HIDDEN, 1)?,
        ];
        let (lstm_ih, lstm_hh) = (t("lstm_cell.weight_ih")?, t("lstm_cell.weight_hh")?);
        let mut lstm_hh_t = vec![0.0; lstm_hh.len()];
        for g in 0..4 * HIDDEN {
            for j in 0..HIDDEN {
                lstm_hh_t[j * 4 * HIDDEN + g] = lstm_hh[g * HIDDEN + j];
            }
        }
        let (b_ih, b_hh) = (t("lstm_cell.bias_ih")?, t("lstm_cell.bias_hh")?);
        let lstm_bias = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        Ok(VadWeights {
            stft,
            stft_is_dft,
            convs,
            lstm_ih,
            lstm_hh_t,
            lstm_bias,
            out_weight: t("final_conv.weight")?,
            out_bias: t("final_conv.bias")?[0],
        })
    }

    /// Read the package's `silero_vad_16k.safetensors`.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::model(path, format!("not a safetensors file: {e}")))?;
        Self::from_tensors(|name, shape| {
            let view = st
                .tensor(name)
                .map_err(|_| Error::model(path, format!("no tensor {name}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape {
                return Err(Error::model(
                    path,
                    format!(
                        "{name}: expected f32 {shape:?}, found {:?} {:?}",
                        view.dtype(),
                        view.shape()
                    ),
                ));
            }
            Ok(view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        })
    }
}

/// Whether a `[258, 256]` STFT basis is the DFT windowed by its own row 0 (within 1e-5).
fn is_windowed_dft(basis: &[f32]) -> bool {
    let window = &basis[..N_FFT];
    (0..BINS).all(|k| {
        (0..N_FFT).all(|n| {
            let phase = 2.0 * std::f64::consts::PI * ((k * n) % N_FFT) as f64 / N_FFT as f64;
            let w = f64::from(window[n]);
            let re = f64::from(basis[k * N_FFT + n]);
            let im = f64::from(basis[(BINS + k) * N_FFT + n]);
            (re - w * phase.cos()).abs() < 1e-5 && (im + w * phase.sin()).abs() < 1e-5
        })
    })
}

/// The recurrent state carried from one window to the next.
#[derive(Debug, Clone)]
pub struct VadState {
    h: [f32; HIDDEN],
    c: [f32; HIDDEN],
    context: [f32; CONTEXT_SAMPLES],
}

impl Default for VadState {
    fn default() -> Self {
        VadState {
            h: [0.0; HIDDEN],
            c: [0.0; HIDDEN],
            context: [0.0; CONTEXT_SAMPLES],
        }
    }
}

/// Windows encoded together by [`VadModel::speech_probabilities`]: large enough for the matrix
/// products to run at full speed, small enough for the activations (~1.3 MB) to stay in cache.
const BLOCK: usize = 64;

/// Buffers reused from block to block.
#[derive(Default)]
struct Scratch {
    /// 256-point FFT (planned on first use) and its buffer: two windowed frames per transform,
    /// one as the real part and one as the imaginary part.
    fft: Option<std::sync::Arc<dyn rustfft::Fft<f32>>>,
    spectrum: Vec<rustfft::num_complex::Complex<f32>>,
    /// im2col matrix, column-major `[k, n]` (each column contiguous).
    col: Vec<f32>,
    /// STFT output `[258, n]`.
    spec: Vec<f32>,
    /// Activations `[channels, windows * frames]`, and the next layer's.
    act: Vec<f32>,
    next: Vec<f32>,
    /// LSTM input products, `[windows, 512]`.
    gates_x: Vec<f32>,
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`; `lhs` row-major; `rhs` column-major (column `j` at
/// `rhs[j k..]`); `dst` row-major, or column-major with `dst_col_major`.
fn matmul(
    m: usize,
    k: usize,
    n: usize,
    lhs: &[f32],
    rhs: &[f32],
    dst: &mut [f32],
    dst_col_major: bool,
) {
    assert!(lhs.len() >= m * k && rhs.len() >= k * n && dst.len() >= m * n);
    let (dst_cs, dst_rs) = if dst_col_major {
        (m as isize, 1)
    } else {
        (1, n as isize)
    };
    // SAFETY: the assert keeps every index gemm computes from (m, n, k, strides) inside the
    // slices; dst does not alias lhs or rhs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `e^x` without a library call, so loops over it vectorise: Cephes' `expf` (range reduction
/// by ln 2, degree-6 polynomial, exponent bits set directly); within 2 ulp for |x| < 87.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 2 σ(2x) - 1` (absolute error ~1e-7, all the cell needs).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// Steps 1-3 and the LSTM input product for the windows of `samples` (a whole number of
/// windows), each preceded by its 64 samples of context (`context` before the first).
/// Leaves `s.gates_x` = `[windows, 512]`.
fn encode_block(w: &VadWeights, context: &[f32], samples: &[f32], s: &mut Scratch) {
    let windows = samples.len() / WINDOW_SAMPLES;
    // 1-2. STFT frames as im2col columns: window b's frame f is column b * FRAMES + f.
    let n = windows * FRAMES;
    s.col.clear();
    s.col.resize(n * N_FFT, 0.0);
    let mut padded = [0.0f32; PADDED];
    for b in 0..windows {
        let start = b * WINDOW_SAMPLES;
        if b == 0 {
            padded[..CONTEXT_SAMPLES].copy_from_slice(context);
        } else {
            padded[..CONTEXT_SAMPLES].copy_from_slice(&samples[start - CONTEXT_SAMPLES..start]);
        }
        padded[CONTEXT_SAMPLES..INPUT].copy_from_slice(&samples[start..start + WINDOW_SAMPLES]);
        // Reflect padding on the right (ONNX Pad mode=reflect: x[n - 2 - i]).
        for i in 0..PADDED - INPUT {
            padded[INPUT + i] = padded[INPUT - 2 - i];
        }
        for f in 0..FRAMES {
            let col = (b * FRAMES + f) * N_FFT;
            s.col[col..col + N_FFT].copy_from_slice(&padded[f * HOP..f * HOP + N_FFT]);
        }
    }
    if w.stft_is_dft {
        stft_magnitudes_fft(w, windows, s);
    } else {
        s.spec.resize(2 * BINS * n, 0.0);
        matmul(2 * BINS, N_FFT, n, &w.stft, &s.col, &mut s.spec, false);
        s.act.clear();
        s.act.extend(
            s.spec[..BINS * n]
                .iter()
                .zip(&s.spec[BINS * n..])
                .map(|(re, im)| (re * re + im * im).sqrt()),
        );
    }

    // 3. Convs (kernel 3, padding 1 within each window), as im2col + one product each.
    let mut frames = FRAMES;
    for conv in &w.convs {
        let out_frames = (frames + 2 - 3) / conv.stride + 1;
        let (k, n_in, n_out) = (conv.c_in * 3, windows * frames, windows * out_frames);
        s.col.clear();
        s.col.resize(n_out * k, 0.0);
        for b in 0..windows {
            for t in 0..out_frames {
                let col = &mut s.col[(b * out_frames + t) * k..][..k];
                for j in 0..3 {
                    let src = (t * conv.stride + j) as isize - 1;
                    if src < 0 || src as usize >= frames {
                        continue;
                    }
                    let src = b * frames + src as usize;
                    for c in 0..conv.c_in {
                        col[c * 3 + j] = s.act[c * n_in + src];
                    }
                }
            }
        }
        s.next.resize(conv.c_out * n_out, 0.0);
        matmul(
            conv.c_out,
            k,
            n_out,
            &conv.weight,
            &s.col,
            &mut s.next,
            false,
        );
        for (o, row) in s.next[..conv.c_out * n_out]
            .chunks_exact_mut(n_out)
            .enumerate()
        {
            for v in row {
                *v = (*v + conv.bias[o]).max(0.0);
            }
        }
        std::mem::swap(&mut s.act, &mut s.next);
        frames = out_frames;
    }
    debug_assert_eq!(frames, 1);

    // 4 (input half). act is [128, windows]; the product wants columns contiguous.
    s.col.clear();
    s.col.resize(windows * HIDDEN, 0.0);
    for c in 0..HIDDEN {
        for b in 0..windows {
            s.col[b * HIDDEN + c] = s.act[c * windows + b];
        }
    }
    s.gates_x.resize(windows * 4 * HIDDEN, 0.0);
    matmul(
        4 * HIDDEN,
        HIDDEN,
        windows,
        &w.lstm_ih,
        &s.col,
        &mut s.gates_x,
        true,
    );
}

/// Step 2 by FFT: `s.col` holds the frames (column `b * FRAMES + f`); leaves `s.act` =
/// `[BINS, windows * FRAMES]` magnitudes. Frames go in pairs, `x + i y` in one transform:
/// `X_k = (Z_k + conj Z_{N-k}) / 2`, `Y_k = (Z_k - conj Z_{N-k}) / 2i`.
fn stft_magnitudes_fft(w: &VadWeights, windows: usize, s: &mut Scratch) {
    use rustfft::num_complex::Complex;
    let n = windows * FRAMES;
    let fft = s
        .fft
        .get_or_insert_with(|| rustfft::FftPlanner::new().plan_fft_forward(N_FFT))
        .clone();
    let window = &w.stft[..N_FFT];
    s.spectrum.clear();
    for pair in s.col[..n * N_FFT].chunks_exact(2 * N_FFT) {
        let (x, y) = pair.split_at(N_FFT);
        s.spectrum
            .extend((0..N_FFT).map(|i| Complex::new(window[i] * x[i], window[i] * y[i])));
    }
    fft.process(&mut s.spectrum);
    s.act.clear();
    s.act.resize(BINS * n, 0.0);
    for (p, z) in s.spectrum.chunks_exact(N_FFT).enumerate() {
        for k in 0..BINS {
            let (a, b) = (z[k], z[(N_FFT - k) % N_FFT].conj());
            s.act[k * n + 2 * p] = (a + b).norm() * 0.5;
            s.act[k * n + 2 * p + 1] = (a - b).norm() * 0.5;
        }
    }
}

/// Steps 4-5 window by window: the LSTM cell from the precomputed input products `gates_x`
/// (`[windows, 512]`), pushing each window's speech probability to `out`.
#[inline(always)]
fn lstm_steps<const FMA: bool>(
    w: &VadWeights,
    state: &mut VadState,
    gates_x: &[f32],
    out: &mut Vec<f32>,
) {
    let mut gates = [0.0f32; 4 * HIDDEN];
    for gx in gates_x.chunks_exact(4 * HIDDEN) {
        for ((v, x), b) in gates.iter_mut().zip(gx).zip(&w.lstm_bias) {
            *v = x + b;
        }
        for (h, row) in state.h.iter().zip(w.lstm_hh_t.chunks_exact(4 * HIDDEN)) {
            for (v, r) in gates.iter_mut().zip(row) {
                *v = if FMA { r.mul_add(*h, *v) } else { *v + r * h };
            }
        }
        let (ifg, o) = gates.split_at(3 * HIDDEN);
        let (i, fg) = ifg.split_at(HIDDEN);
        let (f, g) = fg.split_at(HIDDEN);
        for j in 0..HIDDEN {
            state.c[j] = sigmoid(f[j]) * state.c[j] + sigmoid(i[j]) * tanh(g[j]);
            state.h[j] = sigmoid(o[j]) * tanh(state.c[j]);
        }
        // 5. ReLU, 1x1 conv, sigmoid.
        let mut z = w.out_bias;
        for j in 0..HIDDEN {
            z += w.out_weight[j] * state.h[j].max(0.0);
        }
        out.push(sigmoid(z));
    }
}

/// [`lstm_steps`] compiled for the widest vector unit the CPU has (AVX-512 or AVX2, with FMA
/// where present), picked at run time.
fn lstm_steps_dispatch(w: &VadWeights, state: &mut VadState, gates_x: &[f32], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(w: &VadWeights, st: &mut VadState, g: &[f32], out: &mut Vec<f32>) {
            lstm_steps::<true>(w, st, g, out)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2_fma(w: &VadWeights, st: &mut VadState, g: &[f32], out: &mut Vec<f32>) {
            lstm_steps::<true>(w, st, g, out)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(w: &VadWeights, st: &mut VadState, g: &[f32], out: &mut Vec<f32>) {
            lstm_steps::<false>(w, st, g, out)
        }
        let fma = std::is_x86_feature_detected!("fma");
        // SAFETY (each call): the CPU has the features the function enables, checked here.
        if fma && std::is_x86_feature_detected!("avx512f") {
            return unsafe { avx512(w, state, gates_x, out) };
        }
        if fma && std::is_x86_feature_detected!("avx2") {
            return unsafe { avx2_fma(w, state, gates_x, out) };
        }
        if std::is_x86_feature_detected!("avx2") {
            return unsafe { avx2(w, state, gates_x, out) };
        }
    }
    lstm_steps::<false>(w, state, gates_x, out)
}

/// A loaded Silero VAD model. Cheap to share (`&VadModel` across threads); each stream keeps its
/// own [`VadState`].
#[derive(Debug, Clone)]
pub struct VadModel {
    weights: VadWeights,
}

impl VadModel {
    pub fn new(weights: VadWeights) -> Self {
        VadModel { weights }
    }

    /// Load weights from a file: `.safetensors` (the package's `silero_vad_16k.safetensors`) or
    /// `.onnx` (the initializers of the package's `silero_vad_16k_op15.onnx`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let weights = match path.extension().and_then(|e| e.to_str()) {
            Some("onnx") => super::onnx_weights::read(path)?,
            Some("safetensors") => VadWeights::from_safetensors(path)?,
            _ => {
                return Err(Error::model(
                    path,
                    "expected a .safetensors or .onnx Silero VAD weights file",
                ))
            }
        };
        Ok(Self::new(weights))
    }

    /// Speech probabilities of consecutive windows of a stream: `samples` is a whole number of
    /// [`WINDOW_SAMPLES`] windows of 16 kHz audio following what `state` has seen.
    pub fn stream_probabilities(&self, state: &mut VadState, samples: &[f32]) -> Vec<f32> {
        assert_eq!(samples.len() % WINDOW_SAMPLES, 0, "whole VAD windows");
        let mut scratch = Scratch::default();
        let mut out = Vec::with_capacity(samples.len() / WINDOW_SAMPLES);
        for block in samples.chunks(BLOCK * WINDOW_SAMPLES) {
            encode_block(&self.weights, &state.context, block, &mut scratch);
            lstm_steps_dispatch(&self.weights, state, &scratch.gates_x, &mut out);
            state
                .context
                .copy_from_slice(&block[block.len() - CONTEXT_SAMPLES..]);
        }
        out
    }

    /// Per-window speech probabilities of 16 kHz `samples`, as the package's
    /// `get_speech_timestamps` computes them: fresh state, 512-sample windows, the last one
    /// zero-padded.
    pub fn speech_probabilities(&self, samples: &[f32]) -> Vec<f32> {
        let whole = samples.len() / WINDOW_SAMPLES * WINDOW_SAMPLES;
        let mut state = VadState::default();
        let mut out = self.stream_probabilities(&mut state, &samples[..whole]);
        if whole < samples.len() {
            let mut last = [0.0f32; WINDOW_SAMPLES];
            last[..samples.len() - whole].copy_from_slice(&samples[whole..]);
            out.extend(self.stream_probabilities(&mut state, &last));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights with small pseudo-random values and a periodic-Hann-windowed DFT basis.
    fn synthetic() -> VadWeights {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        VadWeights::from_tensors(|name, shape| {
            if name == "stft_conv.weight" {
                let mut basis = vec![0.0f32; 2 * BINS * N_FFT];
                for k in 0..BINS {
                    for n in 0..N_FFT {
                        let t = 2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64;
                        let w = 0.5 - 0.5 * t.cos();
                        let phase = t * k as f64;
                        basis[k * N_FFT + n] = (w * phase.cos()) as f32;
                        basis[(BINS + k) * N_FFT + n] = (-w * phase.sin()) as f32;
                    }
                }
                return Ok(basis);
            }
            Ok((0..shape.iter().product::<usize>())
                .map(|_| next() * 0.3)
                .collect())
        })
        .unwrap()
    }

    #[test]
    fn fft_and_matrix_stft_agree() {
        let fft = synthetic();
        assert!(fft.stft_is_dft);
        let matrix = VadWeights {
            stft_is_dft: false,
            ..fft.clone()
        };
        let audio: Vec<f32> = (0..20 * WINDOW_SAMPLES + 100)
            .map(|i| (i as f32 * 0.05).sin() * 0.3 + ((i * 7919) % 101) as f32 / 1000.0)
            .collect();
        let a = VadModel::new(fft).speech_probabilities(&audio);
        let b = VadModel::new(matrix).speech_probabilities(&audio);
        assert_eq!(a.len(), 21);
        // Not saturated: the comparison means something.
        assert!(a.iter().any(|p| (p - a[0]).abs() > 1e-3), "{a:?}");
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{d}");
    }
}
