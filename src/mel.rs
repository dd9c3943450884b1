//! Whisper's log-mel spectrogram on the CPU (the reference the GPU mel is tested against).
//!
//! Exactly OpenAI Whisper's `log_mel_spectrogram(audio, n_mels, padding=N_SAMPLES)` as
//! `transcribe()` calls it:
//!
//! 1. append [`N_SAMPLES`] zeros to the audio;
//! 2. STFT: n_fft 400, hop 160, periodic Hann window, `center=True` with reflect padding of 200
//!    samples at both ends; power `|X|^2`; the last frame is dropped, so
//!    `n_frames = (len + N_SAMPLES) / HOP_LENGTH`;
//! 3. librosa's Slaney mel filterbank (`htk=False`, `norm="slaney"`), computed here in f64 and
//!    rounded to f32 as Whisper's `mel_filters.npz` stores it;
//! 4. `log10(max(mel, 1e-10))`, then `max(x, global_max - 8)`, then `(x + 4) / 4`.
//!
//! The STFT runs in f64 with rustfft, frames in parallel. Frames that lie entirely in the
//! appended silence are all-zero, so their log-mel is the constant `log10(1e-10)` and they are
//! not transformed at all.

use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30-s window.
pub const N_FRAMES: usize = 3000;
/// Samples in one 30-s window.
pub const N_SAMPLES: usize = 480_000;
/// Frequency bins of the one-sided spectrum (`N_FFT / 2 + 1`).
pub const N_FREQS: usize = N_FFT / 2 + 1;

const SAMPLE_RATE: f64 = 16_000.0;

/// A log-mel spectrogram, `n_mels` rows of `n_frames` columns, row-major.
#[derive(Debug, Clone)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Frames that hold audio: `n_frames - N_FRAMES` (the rest come from the appended 30 s of
    /// silence).
    pub fn content_frames(&self) -> usize {
        self.n_frames.saturating_sub(N_FRAMES)
    }

    /// Number of 30-s windows needed to cover the content frames (at least 1).
    pub fn n_windows(&self) -> usize {
        self.content_frames().div_ceil(N_FRAMES).max(1)
    }

    /// The `[n_mels, N_FRAMES]` row-major window starting at `start_frame`. Columns at or past
    /// `n_frames` are 0.0, as OpenAI's `pad_or_trim` pads a mel segment.
    pub fn window(&self, start_frame: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n_mels * N_FRAMES];
        let start = start_frame.min(self.n_frames);
        let take = (self.n_frames - start).min(N_FRAMES);
        if take > 0 {
            for (m, row) in out.chunks_exact_mut(N_FRAMES).enumerate() {
                let src = m * self.n_frames + start;
                row[..take].copy_from_slice(&self.data[src..src + take]);
            }
        }
        out
    }
}

// librosa, Slaney scale: linear (F_SP Hz per mel) below MIN_LOG_HZ, logarithmic above.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;

/// The Slaney scale's (mel of MIN_LOG_HZ, log step per mel above it).
fn slaney_log_part() -> (f64, f64) {
    (MIN_LOG_HZ / F_SP, 6.4f64.ln() / 27.0)
}

fn hz_to_mel(f: f64) -> f64 {
    let (min_log_mel, logstep) = slaney_log_part();
    if f >= MIN_LOG_HZ {
        min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
    } else {
        f / F_SP
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let (min_log_mel, logstep) = slaney_log_part();
    if m >= min_log_mel {
        MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
    } else {
        F_SP * m
    }
}

/// librosa `filters.mel(sr=16000, n_fft=400, n_mels, htk=False, norm="slaney")` as f32,
/// shape `[n_mels, N_FREQS]` row-major (Whisper's `mel_filters.npz`).
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    assert!(n_mels > 0, "mel_filters: n_mels must be positive");
    // np.linspace(hz_to_mel(0), hz_to_mel(sr / 2), n_mels + 2), then back to Hz.
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2.0));
    let n_pts = n_mels + 2;
    let step = (hi - lo) / (n_pts - 1) as f64;
    let mel_f: Vec<f64> = (0..n_pts)
        .map(|i| {
            if i == n_pts - 1 {
                hi
            } else {
                lo + i as f64 * step
            }
        })
        .map(mel_to_hz)
        .collect();
    let fftfreqs: Vec<f64> = (0..N_FREQS)
        .map(|k| k as f64 * (SAMPLE_RATE / 2.0) / (N_FREQS - 1) as f64)
        .collect();
    let mut w = vec![0.0f32; n_mels * N_FREQS];
    for i in 0..n_mels {
        let fdiff_lo = mel_f[i + 1] - mel_f[i];
        let fdiff_hi = mel_f[i + 2] - mel_f[i + 1];
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = -(mel_f[i] - f) / fdiff_lo;
            let upper = (mel_f[i + 2] - f) / fdiff_hi;
            w[i * N_FREQS + k] = (0.0f64.max(lower.min(upper)) * enorm) as f32;
        }
    }
    w
}

/// One filter row as its nonzero span: first bin and weights (f32 values widened to f64).
struct SparseRow {
    start: usize,
    weights: Vec<f64>,
}

fn sparse_filters(n_mels: usize) -> Vec<SparseRow> {
    let dense = mel_filters(n_mels);
    dense
        .chunks_exact(N_FREQS)
        .map(|row| {
            let first = row.iter().position(|&x| x != 0.0);
            match first {
                None => SparseRow {
                    start: 0,
                    weights: Vec::new(),
                },
                Some(s) => {
                    let e = row.iter().rposition(|&x| x != 0.0).unwrap() + 1;
                    SparseRow {
                        start: s,
                        weights: row[s..e].iter().map(|&x| x as f64).collect(),
                    }
                }
            }
        })
        .collect()
}

/// Frames computed per rayon task.
const FRAMES_PER_TASK: usize = 64;

/// The per-frame half of the log-mel: `log10(max(mel power, 1e-10))` of STFT frames, before the
/// global-max clamp. Shared by [`log_mel_spectrogram`] and the incremental mel
/// (`audio::SpooledMel`), so both give bit-identical frames.
pub struct FrameAnalyzer {
    n_mels: usize,
    window: Vec<f64>,
    filters: Vec<SparseRow>,
    fft: Arc<dyn Fft<f64>>,
}

impl FrameAnalyzer {
    pub fn new(n_mels: usize) -> Self {
        let window: Vec<f64> = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
            .collect();
        FrameAnalyzer {
            n_mels,
            window,
            filters: sparse_filters(n_mels),
            fft: FftPlanner::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Frames `first..first + out.len() / n_mels` into `out` (frame-major, `n_mels` per frame).
    ///
    /// `samples` holds the audio's samples `origin..origin + samples.len()`; the audio is
    /// `n_known` samples long as far as these frames are concerned (samples at or past it are
    /// the appended silence). Every sample a frame reads must be in `samples` or past `n_known`
    /// (frames 0 and 1 reflect samples 1..=200, so those need `origin == 0`).
    pub fn frames(
        &self,
        samples: &[f32],
        origin: usize,
        n_known: usize,
        first: usize,
        out: &mut [f32],
    ) {
        let n_mels = self.n_mels;
        let pad = N_FFT / 2;
        let total = n_known + N_SAMPLES;
        // Sample `i` of the reflect-padded signal (i in [0, total + 2 * pad)).
        let at = |i: usize| -> f64 {
            let j = i as isize - pad as isize;
            let j = if j < 0 {
                (-j) as usize
            } else if j as usize >= total {
                2 * (total - 1) - j as usize
            } else {
                j as usize
            };
            if j < n_known {
                samples[j - origin] as f64
            } else {
                0.0
            }
        };
        let (window, filters, fft) = (&self.window, &self.filters, &self.fft);
        out.par_chunks_mut(FRAMES_PER_TASK * n_mels)
            .enumerate()
            .for_each(|(task, out)| {
                let mut buf = vec![Complex::new(0.0f64, 0.0); N_FFT];
                let mut scratch = vec![Complex::new(0.0f64, 0.0); fft.get_inplace_scratch_len()];
                let mut power = [0.0f64; N_FREQS];
                for (f, col) in out.chunks_exact_mut(n_mels).enumerate() {
                    let t = first + task * FRAMES_PER_TASK + f;
                    let base = t * HOP_LENGTH;
                    if base >= pad && base + N_FFT - pad <= n_known {
                        // Fully inside the audio: no reflection or padding to resolve.
                        let s = base - pad - origin;
                        let src = &samples[s..s + N_FFT];
                        for ((b, &x), &w) in buf.iter_mut().zip(src).zip(window) {
                            *b = Complex::new(x as f64 * w, 0.0);
                        }
                    } else {
                        for (i, (b, &w)) in buf.iter_mut().zip(window).enumerate() {
                            *b = Complex::new(at(base + i) * w, 0.0);
                        }
                    }
                    fft.process_with_scratch(&mut buf, &mut scratch);
                    for (p, c) in power.iter_mut().zip(&buf) {
                        *p = c.norm_sqr();
                    }
                    for (c, row) in col.iter_mut().zip(filters) {
                        let mel: f64 = row
                            .weights
                            .iter()
                            .zip(&power[row.start..])
                            .map(|(w, p)| w * p)
                            .sum();
                        *c = mel.max(1e-10).log10() as f32;
                    }
                }
            });
    }
}

/// Frames that can differ from silence for `n` samples of audio: frame t covers samples
/// [t*hop - pad, t*hop + pad), so it is nonzero only if that range reaches below n (the
/// reflection at the right end only mirrors appended zeros).
pub fn live_frames(n: usize) -> usize {
    let n_frames = (n + N_SAMPLES) / HOP_LENGTH;
    (n + N_FFT / 2).div_ceil(HOP_LENGTH).min(n_frames)
}

/// The log-mel of a silent frame (mel power 0): `log10(1e-10)`.
pub const SILENT_LOG_MEL: f32 = -10.0;

/// The final normalisation: clamp at `global_max - 8`, then `(x + 4) / 4`.
#[inline]
pub fn normalize(x: f32, global_max: f32) -> f32 {
    (x.max(global_max - 8.0) + 4.0) / 4.0
}

/// Whisper's log-mel spectrogram of 16 kHz mono `samples`, with 30 s of silence appended.
pub fn log_mel_spectrogram(samples: &[f32], n_mels: usize) -> LogMel {
    let n = samples.len();
    let total = n + N_SAMPLES; // after appending the silence
    let n_frames = total / HOP_LENGTH; // 1 + total / hop frames, minus the dropped last one
    let n_live = live_frames(n);

    // log10 mel power of the live frames, frame-major [n_live, n_mels].
    let mut live = vec![0.0f32; n_live * n_mels];
    FrameAnalyzer::new(n_mels).frames(samples, 0, n, 0, &mut live);

    const SILENT: f32 = SILENT_LOG_MEL;
    let global_max = live
        .iter()
        .copied()
        .fold(if n_live < n_frames { SILENT } else { f32::MIN }, f32::max);
    let floor = global_max - 8.0;
    let norm = |x: f32| (x.max(floor) + 4.0) / 4.0;

    let mut data = vec![norm(SILENT); n_mels * n_frames];
    data.par_chunks_mut(n_frames)
        .enumerate()
        .for_each(|(m, row)| {
            for (t, v) in row[..n_live].iter_mut().enumerate() {
                *v = norm(live[t * n_mels + m]);
            }
        });
    LogMel {
        n_mels,
        n_frames,
        data,
    }
}

/// Log-mel frames, fed to the seek loop window by window. The in-memory [`LogMel`] is one; a
/// streaming decoder with an incremental spectrogram is another, which keeps memory bounded
/// whatever the length of the audio.
pub trait MelSource {
    fn n_mels(&self) -> usize;
    /// Frames (100 per second) of real audio, known before the first window.
    fn content_frames(&self) -> usize;
    /// The 3000-frame window starting at frame `start`: n_mels rows of 3000, row-major,
    /// frames past the content being the padding's (as `LogMel::window` today).
    fn window(&mut self, start: usize) -> crate::error::Result<Vec<f32>>;
}

impl MelSource for LogMel {
    fn n_mels(&self) -> usize {
        self.n_mels
    }
    fn content_frames(&self) -> usize {
        LogMel::content_frames(self)
    }
    fn window(&mut self, start: usize) -> crate::error::Result<Vec<f32>> {
        Ok(LogMel::window(self, start))
    }
}
