//! `info`: what a file holds and how it sounds, measured in one streaming pass over the decoded
//! samples at the input's own rate (no resampling), in bounded memory.

use std::path::Path;

use super::stream::{open_path_source, OpenOptions, SourceFormat};
use crate::error::{Error, Result};

/// A sample at or above this magnitude counts as clipped (-0.009 dBFS: the top code of 16-bit
/// PCM is 32767 / 32768 = 0.99997, and lossy decoders overshoot past 1.0 where the source clipped).
pub const CLIP_LEVEL: f32 = 0.999;
/// A 10-ms block of the mono mix whose RMS is under this level (dBFS) counts as silence.
pub const SILENCE_DBFS: f64 = -50.0;

/// What [`audio_info`] reports. Levels in dBFS are None for digital silence (-infinity).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AudioInfo {
    pub file: String,
    pub container: String,
    pub codec: String,
    /// Seconds of decoded audio.
    pub duration_s: f64,
    pub sample_rate: u32,
    pub channels: u16,
    /// Bits per sample where the format has them (PCM, FLAC, ALAC); None for lossy codecs.
    pub bits_per_sample: Option<u32>,
    /// Highest |sample| over all channels, dBFS.
    pub peak_dbfs: Option<f64>,
    /// RMS over all channels, dBFS (a full-scale sine is -3.01 dBFS).
    pub rms_dbfs: Option<f64>,
    /// Share of samples (all channels) at or above `CLIP_LEVEL` in magnitude, 0..1.
    pub clipped_share: f64,
    /// Mean sample value over all channels (full scale = 1).
    pub dc_offset: f64,
    /// Longest run of 10-ms blocks of the mono mix under `SILENCE_DBFS`, seconds.
    pub longest_silence_s: f64,
    /// Set when the stream was only partly readable (truncated, damaged packets).
    pub warning: Option<String>,
}

impl AudioInfo {
    /// The text form `info` prints without `--json`.
    pub fn to_text(&self) -> String {
        let db = |x: Option<f64>| x.map_or("-inf".to_string(), |v| format!("{v:.2}"));
        let mut s = format!(
            "{}\n  container: {}\n  codec: {}\n  duration: {:.3} s\n  sample rate: {} Hz\n  \
             channels: {}\n  bit depth: {}\n  peak: {} dBFS\n  RMS: {} dBFS\n  clipped: {:.4} %\n  \
             DC offset: {:.6}\n  longest silence: {:.2} s",
            self.file,
            self.container,
            self.codec,
            self.duration_s,
            self.sample_rate,
            self.channels,
            self.bits_per_sample
                .map_or("n/a (lossy)".to_string(), |b| format!("{b}-bit")),
            db(self.peak_dbfs),
            db(self.rms_dbfs),
            self.clipped_share * 100.0,
            self.dc_offset,
            self.longest_silence_s
        );
        if let Some(w) = &self.warning {
            s.push_str(&format!("\n  warning: {w}"));
        }
        s
    }
}

/// Running statistics over interleaved samples.
struct Stats {
    channels: usize,
    /// Samples per 10-ms silence block (per channel).
    block_len: usize,
    peak: f32,
    sum: f64,
    sum_sq: f64,
    clipped: u64,
    samples: u64,
    block_sum_sq: f64,
    block_fill: usize,
    silent_run: u64,
    longest_run: u64,
}

impl Stats {
    fn new(format: &SourceFormat) -> Self {
        Stats {
            channels: format.channels.max(1) as usize,
            block_len: (format.sample_rate as usize / 100).max(1),
            peak: 0.0,
            sum: 0.0,
            sum_sq: 0.0,
            clipped: 0,
            samples: 0,
            block_sum_sq: 0.0,
            block_fill: 0,
            silent_run: 0,
            longest_run: 0,
        }
    }

    fn add(&mut self, interleaved: &[f32]) {
        // Per-block partial sums in f32 lanes would be faster still; f64 keeps the levels exact
        // enough for long files and is far above the 200x target already.
        let mut sum = 0.0f64;
        let mut sum_sq = 0.0f64;
        let mut peak = self.peak;
        let mut clipped = 0u64;
        for &x in interleaved {
            let a = x.abs();
            peak = peak.max(a);
            clipped += (a >= CLIP_LEVEL) as u64;
            sum += x as f64;
            sum_sq += (x as f64) * (x as f64);
        }
        self.peak = peak;
        self.sum += sum;
        self.sum_sq += sum_sq;
        self.clipped += clipped;
        self.samples += interleaved.len() as u64;

        let ch = self.channels;
        let threshold = 10f64.powf(SILENCE_DBFS / 10.0); // power of the mono mix
        let scale = 1.0 / ch as f64;
        for frame in interleaved.chunks_exact(ch) {
            let m = frame.iter().map(|&x| x as f64).sum::<f64>() * scale;
            self.block_sum_sq += m * m;
            self.block_fill += 1;
            if self.block_fill == self.block_len {
                if self.block_sum_sq / self.block_len as f64 <= threshold {
                    self.silent_run += 1;
                    self.longest_run = self.longest_run.max(self.silent_run);
                } else {
                    self.silent_run = 0;
                }
                self.block_sum_sq = 0.0;
                self.block_fill = 0;
            }
        }
    }
}

fn dbfs(amplitude: f64) -> Option<f64> {
    (amplitude > 0.0).then(|| 20.0 * amplitude.log10())
}

/// Measure the file at `path` ("-": stdin). Errors name the file.
pub fn audio_info(path: &Path, opts: &OpenOptions) -> Result<AudioInfo> {
    let mut source = open_path_source(path, opts)?;
    let mut stats = Stats::new(source.format());
    let mut block = Vec::new();
    while source
        .next_block(&mut block)
        .map_err(|m| Error::audio(path, m))?
    {
        stats.add(&block);
    }
    let format = source.format().clone();
    if stats.samples == 0 {
        let why = match source.damage() {
            Some(d) => format!("no decodable audio ({d})"),
            None => "contains no audio samples".to_string(),
        };
        return Err(Error::audio(path, why));
    }
    let n = stats.samples as f64;
    let frames = stats.samples / stats.channels as u64;
    Ok(AudioInfo {
        file: path.display().to_string(),
        container: format.container,
        codec: format.codec,
        duration_s: frames as f64 / format.sample_rate as f64,
        sample_rate: format.sample_rate,
        channels: format.channels,
        bits_per_sample: format.bits_per_sample,
        peak_dbfs: dbfs(stats.peak as f64),
        rms_dbfs: dbfs((stats.sum_sq / n).sqrt()),
        clipped_share: stats.clipped as f64 / n,
        dc_offset: stats.sum / n,
        longest_silence_s: stats.longest_run as f64 * stats.block_len as f64
            / format.sample_rate as f64,
        warning: source.damage().map(str::to_string),
    })
}
