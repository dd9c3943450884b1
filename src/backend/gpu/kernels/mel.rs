//! The log-mel spectrogram's own kernels, `shaders/mel.wgsl`: STFT frames, power spectrum,
//! log10 with the running maximum, and the normalised output blocks. The DFT and the filter bank
//! run on `matmul`; `backend/gpu/mel.rs` chains them (`GpuMel`).
//!
//! CPU twin: `src/mel.rs` (`log_mel_spectrogram`). Test: `tests/suite/gpu_mel.rs`.

use crate::error::{Error, Result};
use crate::mel::N_FFT;

use super::super::profile::Work;
use super::build::{Builder, Kernel};
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

pub(super) struct Pipelines {
    frames: Kernel,
    power: Kernel,
    log: Kernel,
    norm: Kernel,
}

pub(super) fn compile(b: &Builder<'_>) -> Pipelines {
    let m = b.module::<MelParams>("mel", &[("MEL_WG", b.config.elementwise_wg)], "");
    let l = &b.layouts.ro_2rw;
    Pipelines {
        frames: b.pipeline(&m, "mel_frames", l),
        power: b.pipeline(&m, "mel_power", l),
        log: b.pipeline(&m, "mel_log", l),
        norm: b.pipeline(&m, "mel_norm", l),
    }
}

/// Bytes a binding spans.
fn bound(b: &wgpu::BufferBinding<'_>) -> u64 {
    b.size.map_or(b.buffer.size() - b.offset, |s| s.get())
}

impl Kernels {
    /// One dispatch of a mel kernel over `threads` threads (all four share one layout).
    #[allow(clippy::too_many_arguments)]
    fn mel_dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        kernel: &Kernel,
        src: wgpu::BufferBinding<'_>,
        dst: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        params: MelParams,
        threads: usize,
        work: Work,
    ) -> Result<()> {
        let wg = Self::grid(groups(threads, self.config.elementwise_wg) as usize);
        let binds = [src, dst, whole(gmax)];
        self.launch(pass, kernel, &params, &binds, wg, || work)
    }

    /// `frames [rows, 400]` of STFT frames `t0 ..` (see `shaders/mel.wgsl`); `samples` binds
    /// samples `s0 .. s0 + len` of an `n`-sample signal.
    #[allow(clippy::too_many_arguments)]
    pub fn mel_frames(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        samples: wgpu::BufferBinding<'_>,
        frames: &wgpu::Buffer,
        gmax: &wgpu::Buffer,
        n: usize,
        s0: usize,
        len: usize,
        t0: usize,
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        let bytes = bound(&samples);
        if (len as u64) * 4 > bytes {
            return Err(Error::Device(format!(
                "mel_frames: {len} samples in a binding of {bytes} bytes"
            )));
        }
        need(frames, rows * N_FFT, "mel_frames out")?;
        let params = MelParams {
            n_samples: n as u32,
            s0: s0 as u32,
            s_len: len as u32,
            t0: t0 as u32,
            rows: rows as u32,
            ..Default::default()
        };
        // 400-sample windowed frames.
        let v = (rows * N_FFT) as f64;
        let work = Work::new(v, 8.0 * v);
        let (pl, out) = (&self.mel.frames, whole(frames));
        self.mel_dispatch(pass, pl, samples, out, gmax, params, rows * N_FFT, work)
    }

    /// `power [rows, 204] = re² + im²` of `spec [rows, 402]` (zero padding columns).
    pub fn mel_power(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        spec: &wgpu::Buffer,
        power: &wgpu::Buffer,
        gmax: &wgpu::Buffer,
        rows: usize,
    ) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        need(spec, rows * SPEC_COLS, "mel_power spec")?;
        need(power, rows * POWER_COLS, "mel_power out")?;
        let params = MelParams {
            rows: rows as u32,
            ..Default::default()
        };
        // 201 complex bins in, 201 powers out (rows padded to 402 / 204 values).
        let r = rows as f64;
        let work = Work::new(3.0 * r * N_FREQS, 4.0 * r * (SPEC_COLS + POWER_COLS) as f64);
        let (pl, src, dst) = (&self.mel.power, whole(spec), whole(power));
        self.mel_dispatch(pass, pl, src, dst, gmax, params, rows * POWER_COLS, work)
    }

    /// `logs[i] = log10(max(mel[i], 1e-10))` for `count` values, folding their maximum into
    /// `gmax` (an order-preserving u32, initialised by the caller).
    pub fn mel_log(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        mel: &wgpu::Buffer,
        logs: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        count: usize,
    ) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        need(mel, count, "mel_log in")?;
        let bytes = bound(&logs);
        if (count as u64) * 4 > bytes {
            return Err(Error::Device(format!(
                "mel_log: {count} values in a binding of {bytes} bytes"
            )));
        }
        let params = MelParams {
            count: count as u32,
            ..Default::default()
        };
        let work = Work::new(count as f64, 8.0 * count as f64);
        let threads = count.div_ceil(LOG_PER);
        let (pl, src) = (&self.mel.log, whole(mel));
        self.mel_dispatch(pass, pl, src, logs, gmax, params, threads, work)
    }

    /// One output block `out [n_mels, rows]`: normalised log-mel of `rows` frames whose first
    /// `live` have log10 values in `logs` (frame-major `[live, n_mels]`), the rest silence.
    #[allow(clippy::too_many_arguments)]
    pub fn mel_norm(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        logs: wgpu::BufferBinding<'_>,
        out: wgpu::BufferBinding<'_>,
        gmax: &wgpu::Buffer,
        rows: usize,
        live: usize,
        n_mels: usize,
    ) -> Result<()> {
        if rows == 0 || n_mels == 0 {
            return Ok(());
        }
        if (live.min(rows) * n_mels * 4) as u64 > bound(&logs)
            || (rows * n_mels * 4) as u64 > bound(&out)
        {
            return Err(Error::Device(format!(
                "mel_norm: {rows} x {n_mels} block with {live} live frames exceeds its bindings"
            )));
        }
        let params = MelParams {
            rows: rows as u32,
            live: live.min(rows) as u32,
            n_mels: n_mels as u32,
            ..Default::default()
        };
        let (r, m) = (rows as f64, n_mels as f64);
        let work = Work::new(2.0 * r * m, 4.0 * (params.live as f64 + r) * m);
        let threads = rows * n_mels;
        self.mel_dispatch(pass, &self.mel.norm, logs, out, gmax, params, threads, work)
    }
}
