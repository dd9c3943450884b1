//! Whisper's log-mel spectrogram on the GPU: the twin of `crate::mel::log_mel_spectrogram`
//! (same padding, framing, frame count and normalisation), built from `shaders/mel.wgsl` and the
//! `linear` kernels (see the shader's header for the dispatch chain).
//!
//! Frames are processed in chunks of at most `chunk_frames` (4096 by default, fewer where a
//! storage binding is smaller) so the scratch buffers stay bounded for any audio length; every
//! chunk of a file is recorded into one command buffer (a new one only every
//! `CHUNKS_PER_SUBMIT` chunks, for the parameter arena), and the global maximum is kept on the
//! device, so the host uploads the samples once and reads the finished spectrogram back once.
//! As on the CPU, frames lying entirely in the appended 30 s of silence are not transformed:
//! their log10 mel is the constant −10.
//!
//! Output blocks: `[n_mels, n_frames]` goes into one binding when it fits (up to about 70 min of
//! audio at 80 mels under lavapipe's 128 MiB binding limit); longer audio is normalised in
//! column blocks `[n_mels, block]` that the host stitches into rows after the read-back.

use std::f64::consts::PI;

use wgpu::Buffer;

use crate::error::{Error, Result};
use crate::mel::{mel_filters, LogMel, HOP_LENGTH, N_FFT, N_FREQS, N_SAMPLES};

use super::context::GpuContext;
use super::kernels::{pad_cols, Kernels, Linear, MatrixRef, MelFrames, MelLog, MelNorm, MelPower};

/// Columns of the DFT output: re (k = 0..200), then im.
const SPEC_COLS: usize = 2 * N_FREQS;
/// Columns of the power spectrum: 201 bins zero-padded to a multiple of 4 (`linear`'s K).
const POWER_COLS: usize = 204;
/// Chunks recorded per command buffer (each takes 5 parameter slots of the arena's 4096).
const CHUNKS_PER_SUBMIT: usize = 512;

/// Order-preserving u32 encoding of an f32 (the shader's `ord`).
fn ord(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The device-side constants of the log-mel: the DFT matrix and the filterbank of the last
/// `n_mels` used.
pub struct GpuMel {
    /// `[402, 400]`: rows k = 0..200 are hann[i]·cos(2πki/400), rows 201 + k hann[i]·sin(…).
    dft: Buffer,
    filters: Option<(usize, Buffer)>,
    gmax: Buffer,
    chunk_frames: usize,
}

impl GpuMel {
    /// Uploads the DFT matrix (twiddles and periodic Hann window in f64, rounded once to f32).
    pub fn new(ctx: &GpuContext) -> Self {
        let mut w = vec![0.0f32; SPEC_COLS * N_FFT];
        for i in 0..N_FFT {
            let hann = 0.5 - 0.5 * (2.0 * PI * i as f64 / N_FFT as f64).cos();
            for k in 0..N_FREQS {
                // k·i reduced mod 400 exactly before the angle is formed.
                let a = 2.0 * PI * ((k * i) % N_FFT) as f64 / N_FFT as f64;
                w[k * N_FFT + i] = (hann * a.cos()) as f32;
                w[(N_FREQS + k) * N_FFT + i] = (hann * a.sin()) as f32;
            }
        }
        GpuMel {
            dft: ctx.upload("mel dft", &w),
            filters: None,
            gmax: ctx.storage("mel max", 16),
            chunk_frames: 4096,
        }
    }

    /// Frames per chunk (rounded up to the binding-range step; tests use small chunks to
    /// exercise the chunked path on short audio).
    pub fn set_chunk_frames(&mut self, frames: usize) {
        self.chunk_frames = frames.max(1);
    }

    /// `crate::mel::log_mel_spectrogram(samples, n_mels)` on `ctx`'s device.
    pub fn compute(
        &mut self,
        ctx: &GpuContext,
        k: &Kernels,
        samples: &[f32],
        n_mels: usize,
    ) -> Result<LogMel> {
        if n_mels == 0 {
            return Err(Error::Internal("log-mel with 0 mel bands".into()));
        }
        // The mel's buffers live for this call: no bind-group cache.
        ctx.scoped("log-mel", || {
            k.without_bind_cache(|| {
                let n = samples.len();
                let total = n + N_SAMPLES;
                let n_frames = total / HOP_LENGTH;
                let pad = N_FFT / 2;
                let n_live = (n + pad).div_ceil(HOP_LENGTH).min(n_frames);
                if n_frames > u32::MAX as usize / N_FFT || n > (i32::MAX as usize) / 2 {
                    return Err(Error::Usage(format!(
                        "{n} samples is too long for the GPU log-mel"
                    )));
                }

                // Chunk size: a multiple of the range step whose DFT output and sample range each fit
                // one binding.
                let step = k.row_step();
                let mb = k.max_binding() as usize;
                let by_samples = ((mb / 4).saturating_sub(N_FFT + step) / HOP_LENGTH) / step * step;
                let chunk = self
                    .chunk_frames
                    .next_multiple_of(step)
                    .min(k.rows_per_binding((SPEC_COLS * 4) as u64))
                    .min(by_samples)
                    .max(step);
                let cap = chunk.min(n_live.max(1));

                if self.filters.as_ref().map(|f| f.0) != Some(n_mels) {
                    let (f, _) = pad_cols(&mel_filters(n_mels), n_mels, N_FREQS);
                    self.filters = Some((n_mels, ctx.upload("mel filters", &f)));
                }
                let filters = &self.filters.as_ref().expect("set above").1;

                let buf = |l: &str, elems: usize| ctx.storage(l, (elems.max(1) * 4) as u64);
                let samples_b = ctx.upload("mel samples", samples);
                let frames = buf("mel frames", cap * N_FFT);
                let spec = buf("mel spectrum", cap * SPEC_COLS);
                let power = buf("mel power", cap * POWER_COLS);
                let melp = buf("mel bands", cap * n_mels);
                let logs = buf("mel log10", n_live * n_mels);
                let out = buf("log-mel", n_mels * n_frames);

                // Silent frames have log10 mel −10 and take part in the maximum (as on the CPU).
                let init = if n_live < n_frames {
                    -10.0f32
                } else {
                    f32::MIN
                };
                ctx.queue
                    .write_buffer(&self.gmax, 0, bytemuck::cast_slice(&[ord(init), 0, 0, 0]));

                let starts: Vec<usize> = (0..n_live).step_by(chunk).collect();
                for batch in starts.chunks(CHUNKS_PER_SUBMIT) {
                    self.submit(ctx, k, |pass| {
                        for &t0 in batch {
                            let rows = chunk.min(n_live - t0);
                            // Samples t0·160 − 200 .. (t0 + rows)·160 + 200, clipped to the audio.
                            let s0 = (t0 * HOP_LENGTH).saturating_sub(pad) / step * step;
                            let end = n.min((t0 + rows) * HOP_LENGTH + pad);
                            let len = end.saturating_sub(s0);
                            let sb = k.range(&samples_b, s0, len, "mel samples")?;
                            let (gmax, n_samples, s_len) = (&self.gmax, n, len);
                            let (frames, samples) = (&frames, sb);
                            k.record(
                                pass,
                                &MelFrames {
                                    frames,
                                    gmax,
                                    n_samples,
                                    s0,
                                    s_len,
                                    t0,
                                    rows,
                                    samples,
                                },
                            )?;
                            let dft = MatrixRef::f32(&self.dft, SPEC_COLS, N_FFT);
                            k.record(pass, &Linear::new(frames, dft, &spec, rows))?;
                            k.record(
                                pass,
                                &MelPower {
                                    spec: &spec,
                                    power: &power,
                                    gmax,
                                    rows,
                                },
                            )?;
                            let filters = MatrixRef::f32(filters, n_mels, POWER_COLS);
                            k.record(pass, &Linear::new(&power, filters, &melp, rows))?;
                            let logs = k.range(&logs, t0 * n_mels, rows * n_mels, "mel log10")?;
                            let count = rows * n_mels;
                            k.record(
                                pass,
                                &MelLog {
                                    mel: &melp,
                                    gmax,
                                    count,
                                    logs,
                                },
                            )?;
                        }
                        Ok(())
                    })?;
                }

                let block = k.rows_per_binding((n_mels * 4) as u64).min(n_frames);
                let blocks: Vec<usize> = (0..n_frames).step_by(block.max(1)).collect();
                for batch in blocks.chunks(CHUNKS_PER_SUBMIT) {
                    self.submit(ctx, k, |pass| {
                        for &b0 in batch {
                            let rows = block.min(n_frames - b0);
                            let live = n_live.saturating_sub(b0).min(rows);
                            let lb = if live > 0 {
                                k.range(&logs, b0 * n_mels, live * n_mels, "mel log10")?
                            } else {
                                k.range(&logs, 0, 1, "mel log10")?
                            };
                            let ob = k.range(&out, b0 * n_mels, rows * n_mels, "log-mel")?;
                            let (logs, out, gmax) = (lb, ob, &self.gmax);
                            k.record(
                                pass,
                                &MelNorm {
                                    gmax,
                                    rows,
                                    n_mels,
                                    logs,
                                    out,
                                    live,
                                },
                            )?;
                        }
                        Ok(())
                    })?;
                }

                let raw: Vec<f32> = ctx.read(&out, n_mels * n_frames)?;
                let data = if block >= n_frames {
                    raw
                } else {
                    // Stitch the column blocks [n_mels, rows] into rows of n_frames.
                    let mut data = vec![0.0f32; n_mels * n_frames];
                    for &b0 in &blocks {
                        let rows = block.min(n_frames - b0);
                        let blk = &raw[b0 * n_mels..(b0 + rows) * n_mels];
                        for (m, src) in blk.chunks_exact(rows).enumerate() {
                            data[m * n_frames + b0..m * n_frames + b0 + rows].copy_from_slice(src);
                        }
                    }
                    data
                };
                Ok(LogMel {
                    n_mels,
                    n_frames,
                    data,
                })
            })
        })
    }

    fn submit(
        &self,
        ctx: &GpuContext,
        k: &Kernels,
        record: impl FnOnce(&mut wgpu::ComputePass<'_>) -> Result<()>,
    ) -> Result<()> {
        k.submit_pass(ctx, ("log-mel", true), record, |_| {})
    }
}
