//! The log-mel spectrogram's own kernels, `shaders/mel.wgsl`: STFT frames, power spectrum,
//! log10 with the running maximum, and the normalised output blocks. The DFT and the filter bank
//! run on `matmul`; `backend/gpu/mel.rs` chains them (`GpuMel`).
//!
//! CPU twin: `src/mel.rs` (`log_mel_spectrogram`). Test: `tests/suite/gpu_mel.rs`.

use crate::error::{Error, Result};
use crate::mel::N_FFT;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
use super::op::Op;
use super::{groups, need, whole, Kernels};

/// Columns of a DFT output row (re 0..200, im 201..401) and of a power-spectrum row (201 bins
/// padded to a multiple of 4), as `shaders/mel.wgsl` lays them out.
const SPEC_COLS: usize = 402;
const POWER_COLS: usize = 204;
const N_FREQS: f64 = 201.0;
/// Values per thread in `mel_log` (`LOG_PER` in the shader).
const LOG_PER: usize = 16;

super::wgsl_params! {
    /// The four entry points read the fields their doc comments name; the rest stay 0.
    MelParams in "mel.wgsl" {
        /// mel_frames: samples of audio.
        n_samples: u32,
        /// mel_frames: the first sample the binding holds.
        s0: u32,
        /// mel_frames: samples the binding holds.
        s_len: u32,
        /// mel_frames: the first frame.
        t0: u32,
        /// mel_frames, mel_power, mel_norm: frames (rows) of this dispatch.
        rows: u32,
        /// mel_norm: frames of the block with audio.
        live: u32,
        /// mel_norm: mel bands.
        n_mels: u32,
        /// mel_log: values.
        count: u32,
    }
}

super::build::pipelines! { frames: "mel_frames", power: "mel_power", log: "mel_log", norm: "mel_norm" }

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let m = b.module::<MelParams>("mel", &[("MEL_WG", b.config.elementwise_wg)], "");
    Pipelines::new(b, &m, &b.layouts.ro_2rw)
}

/// Bytes a binding spans.
fn bound(b: &wgpu::BufferBinding<'_>) -> u64 {
    b.size.map_or(b.buffer.size() - b.offset, |s| s.get())
}

super::op::kernel_ops! {
    /// `frames [rows, 400]` of STFT frames `t0 ..` (see `shaders/mel.wgsl`); `samples` binds
    /// samples `s0 .. s0 + s_len` of an `n_samples`-sample signal.
    MelFrames(MelParams) {
        frames, gmax; n_samples, s0, s_len, t0, rows; samples: wgpu::BufferBinding<'a>
    }
    /// `power [rows, 204] = re² + im²` of `spec [rows, 402]` (zero padding columns).
    MelPower(MelParams) { spec, power, gmax; rows }
    /// `logs[i] = log10(max(mel[i], 1e-10))` for `count` values, folding their maximum into
    /// `gmax` (an order-preserving u32, initialised by the caller).
    MelLog(MelParams) { mel, gmax; count; logs: wgpu::BufferBinding<'a> }
    /// One output block `out [n_mels, rows]`: normalised log-mel of `rows` frames whose first
    /// `live` have log10 values in `logs` (frame-major `[live, n_mels]`), the rest silence.
    MelNorm(MelParams) {
        gmax; rows, n_mels;
        logs: wgpu::BufferBinding<'a>, out: wgpu::BufferBinding<'a>, live: usize,
    }
}

impl Kernels {
    /// One dispatch of a mel kernel over `threads` threads (all four share one layout), if
    /// `params.rows` or `params.count` is not 0.
    fn mel_dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: &Kernel,
        [src, dst, gmax]: [wgpu::BufferBinding<'_>; 3],
        (params, threads): (MelParams, usize),
        work: Work,
    ) -> Result<()> {
        let wg = Self::grid(groups(threads, self.config.elementwise_wg) as usize);
        self.launch(pass, kernel, &params, &[src, dst, gmax], wg, || work)
    }
}

/// A binding of `values` 4-byte values, or the error naming `what`.
fn holds(b: &wgpu::BufferBinding<'_>, values: usize, what: &str) -> Result<()> {
    let bytes = bound(b);
    if (values as u64) * 4 > bytes {
        return Err(Error::Device(format!(
            "{what}: {values} values in a binding of {bytes} bytes"
        )));
    }
    Ok(())
}

impl Op for MelFrames<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let rows = self.rows;
        if rows == 0 {
            return Ok(());
        }
        holds(&self.samples, self.s_len, "mel_frames samples")?;
        need(self.frames, rows * N_FFT, "mel_frames out")?;
        // 400-sample windowed frames.
        let v = (rows * N_FFT) as f64;
        let binds = [self.samples.clone(), whole(self.frames), whole(self.gmax)];
        let (kernel, params) = (&k.mel.frames, (self.params()?, rows * N_FFT));
        k.mel_dispatch(pass, kernel, binds, params, Work::new(v, 8.0 * v))
    }
}

impl Op for MelPower<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let rows = self.rows;
        if rows == 0 {
            return Ok(());
        }
        need(self.spec, rows * SPEC_COLS, "mel_power spec")?;
        need(self.power, rows * POWER_COLS, "mel_power out")?;
        // 201 complex bins in, 201 powers out (rows padded to 402 / 204 values).
        let r = rows as f64;
        let work = Work::new(3.0 * r * N_FREQS, 4.0 * r * (SPEC_COLS + POWER_COLS) as f64);
        let binds = [whole(self.spec), whole(self.power), whole(self.gmax)];
        let (kernel, params) = (&k.mel.power, (self.params()?, rows * POWER_COLS));
        k.mel_dispatch(pass, kernel, binds, params, work)
    }
}

impl Op for MelLog<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let count = self.count;
        if count == 0 {
            return Ok(());
        }
        need(self.mel, count, "mel_log in")?;
        holds(&self.logs, count, "mel_log")?;
        let work = Work::new(count as f64, 8.0 * count as f64);
        let binds = [whole(self.mel), self.logs.clone(), whole(self.gmax)];
        let params = (self.params()?, count.div_ceil(LOG_PER));
        k.mel_dispatch(pass, &k.mel.log, binds, params, work)
    }
}

impl Op for MelNorm<'_> {
    fn record(&self, k: &Kernels, pass: &mut wgpu::ComputePass<'_>) -> Result<()> {
        let (rows, n_mels, live) = (self.rows, self.n_mels, self.live.min(self.rows));
        if rows == 0 || n_mels == 0 {
            return Ok(());
        }
        if (live * n_mels * 4) as u64 > bound(&self.logs)
            || (rows * n_mels * 4) as u64 > bound(&self.out)
        {
            return Err(Error::Device(format!(
                "mel_norm: {rows} x {n_mels} block with {live} live frames exceeds its bindings"
            )));
        }
        let params = MelParams {
            live: live as u32,
            ..self.params()?
        };
        let (r, m) = (rows as f64, n_mels as f64);
        let work = Work::new(2.0 * r * m, 4.0 * (live as f64 + r) * m);
        let binds = [self.logs.clone(), self.out.clone(), whole(self.gmax)];
        k.mel_dispatch(pass, &k.mel.norm, binds, (params, rows * n_mels), work)
    }
}
