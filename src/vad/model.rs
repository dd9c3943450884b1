//! The Silero VAD v6 network (16 kHz) on the CPU, one 512-sample window at a time.
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
    convs: [Conv; 4],
    /// `[512, 256]`: row `g` is `[weight_ih[g], weight_hh[g]]`, so one dot with `[x, h]` gives
    /// the gate's pre-activation.
    lstm_weight: Vec<f32>,
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
        let convs = [
            conv(&mut t, 1, BINS, 128, 1)?,
            conv(&mut t, 2, 128, 64, 2)?,
            conv(&mut t, 3, 64, 64, 2)?,
            conv(&mut t, 4, 64, HIDDEN, 1)?,
        ];
        let (w_ih, w_hh) = (t("lstm_cell.weight_ih")?, t("lstm_cell.weight_hh")?);
        let (b_ih, b_hh) = (t("lstm_cell.bias_ih")?, t("lstm_cell.bias_hh")?);
        let mut lstm_weight = Vec::with_capacity(4 * HIDDEN * 2 * HIDDEN);
        for g in 0..4 * HIDDEN {
            lstm_weight.extend_from_slice(&w_ih[g * HIDDEN..(g + 1) * HIDDEN]);
            lstm_weight.extend_from_slice(&w_hh[g * HIDDEN..(g + 1) * HIDDEN]);
        }
        let lstm_bias = b_ih.iter().zip(&b_hh).map(|(a, b)| a + b).collect();
        Ok(VadWeights {
            stft,
            convs,
            lstm_weight,
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

/// Scratch buffers, allocated once per stream.
struct Scratch {
    padded: [f32; PADDED],
    /// `[BINS, FRAMES]` then each conv's output `[c_out, frames]`.
    act: Vec<f32>,
    next: Vec<f32>,
    col: Vec<f32>,
    xh: [f32; 2 * HIDDEN],
    gates: [f32; 4 * HIDDEN],
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            padded: [0.0; PADDED],
            act: vec![0.0; BINS * FRAMES],
            next: Vec::new(),
            col: Vec::new(),
            xh: [0.0; 2 * HIDDEN],
            gates: [0.0; 4 * HIDDEN],
        }
    }
}

/// `Σ a[i]·b[i]` over 16 independent lanes, so the loop vectorises (the compiler may not reorder
/// a single float sum on its own).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = 0.0;
    for v in acc {
        s += v;
    }
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// One window: `samples` (exactly [`WINDOW_SAMPLES`]) -> speech probability; updates `state`.
#[inline(always)]
fn window_body(w: &VadWeights, state: &mut VadState, s: &mut Scratch, samples: &[f32]) -> f32 {
    // 1. context + window, reflect-padded on the right (ONNX Pad mode=reflect: x[n-2-i]).
    s.padded[..CONTEXT_SAMPLES].copy_from_slice(&state.context);
    s.padded[CONTEXT_SAMPLES..INPUT].copy_from_slice(samples);
    for i in 0..PADDED - INPUT {
        s.padded[INPUT + i] = s.padded[INPUT - 2 - i];
    }
    state
        .context
        .copy_from_slice(&s.padded[INPUT - CONTEXT_SAMPLES..INPUT]);

    // 2. STFT magnitude, [BINS, FRAMES].
    s.act.clear();
    s.act.resize(BINS * FRAMES, 0.0);
    for bin in 0..BINS {
        let re_w = &w.stft[bin * N_FFT..(bin + 1) * N_FFT];
        let im_w = &w.stft[(bin + BINS) * N_FFT..(bin + BINS + 1) * N_FFT];
        for f in 0..FRAMES {
            let x = &s.padded[f * HOP..f * HOP + N_FFT];
            let (re, im) = (dot(re_w, x), dot(im_w, x));
            s.act[bin * FRAMES + f] = (re * re + im * im).sqrt();
        }
    }

    // 3. conv layers; `frames` is the current time length.
    let mut frames = FRAMES;
    for conv in &w.convs {
        let out_frames = (frames + 2 - 3) / conv.stride + 1;
        let k = conv.c_in * 3;
        // im2col: column t holds input[c][t*stride + j - 1] at c*3 + j (zero outside).
        s.col.clear();
        s.col.resize(out_frames * k, 0.0);
        for t in 0..out_frames {
            let col = &mut s.col[t * k..(t + 1) * k];
            for c in 0..conv.c_in {
                for j in 0..3 {
                    let src = (t * conv.stride + j) as isize - 1;
                    if src >= 0 && (src as usize) < frames {
                        col[c * 3 + j] = s.act[c * frames + src as usize];
                    }
                }
            }
        }
        s.next.clear();
        s.next.resize(conv.c_out * out_frames, 0.0);
        for o in 0..conv.c_out {
            let row = &conv.weight[o * k..(o + 1) * k];
            for t in 0..out_frames {
                let v = dot(row, &s.col[t * k..(t + 1) * k]) + conv.bias[o];
                s.next[o * out_frames + t] = v.max(0.0);
            }
        }
        std::mem::swap(&mut s.act, &mut s.next);
        frames = out_frames;
    }
    debug_assert_eq!(frames, 1);

    // 4. LSTM cell.
    s.xh[..HIDDEN].copy_from_slice(&s.act[..HIDDEN]);
    s.xh[HIDDEN..].copy_from_slice(&state.h);
    for g in 0..4 * HIDDEN {
        s.gates[g] =
            dot(&w.lstm_weight[g * 2 * HIDDEN..(g + 1) * 2 * HIDDEN], &s.xh) + w.lstm_bias[g];
    }
    for j in 0..HIDDEN {
        let i = sigmoid(s.gates[j]);
        let f = sigmoid(s.gates[HIDDEN + j]);
        let g = s.gates[2 * HIDDEN + j].tanh();
        let o = sigmoid(s.gates[3 * HIDDEN + j]);
        state.c[j] = f * state.c[j] + i * g;
        state.h[j] = o * state.c[j].tanh();
    }

    // 5. ReLU, 1x1 conv, sigmoid.
    let mut z = w.out_bias;
    for j in 0..HIDDEN {
        z += w.out_weight[j] * state.h[j].max(0.0);
    }
    sigmoid(z)
}

/// [`window_body`] compiled for AVX2 when the CPU has it, so the dot products run 8 wide.
fn window(w: &VadWeights, state: &mut VadState, s: &mut Scratch, samples: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(w: &VadWeights, st: &mut VadState, s: &mut Scratch, x: &[f32]) -> f32 {
            window_body(w, st, s, x)
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(w, state, s, samples) };
        }
    }
    window_body(w, state, s, samples)
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

    /// The speech probability of one window of exactly [`WINDOW_SAMPLES`] 16 kHz samples, after
    /// the windows `state` has seen.
    pub fn window_probability(&self, state: &mut VadState, samples: &[f32]) -> f32 {
        assert_eq!(samples.len(), WINDOW_SAMPLES, "one VAD window");
        let mut scratch = Scratch::new();
        window(&self.weights, state, &mut scratch, samples)
    }

    /// Per-window speech probabilities of 16 kHz `samples`, as the package's
    /// `get_speech_timestamps` computes them: fresh state, 512-sample windows, the last one
    /// zero-padded.
    pub fn speech_probabilities(&self, samples: &[f32]) -> Vec<f32> {
        let mut state = VadState::default();
        let mut scratch = Scratch::new();
        let mut padded = [0.0f32; WINDOW_SAMPLES];
        samples
            .chunks(WINDOW_SAMPLES)
            .map(|chunk| {
                let x = if chunk.len() == WINDOW_SAMPLES {
                    chunk
                } else {
                    padded[..chunk.len()].copy_from_slice(chunk);
                    padded[chunk.len()..].fill(0.0);
                    &padded[..]
                };
                window(&self.weights, &mut state, &mut scratch, x)
            })
            .collect()
    }
}
