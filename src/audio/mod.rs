//! Audio input: decode a file to mono f32 samples at 16 kHz.
//!
//! WAV only (RIFF/WAVE): PCM 8/16/24/32-bit integer and IEEE 32/64-bit float, plain or
//! `WAVE_FORMAT_EXTENSIBLE`, any channel count (averaged to mono), any sample rate (band-limited
//! sinc resampling to 16 kHz with rubato). The RIFF parser is our own (see [`wav`]) because hound
//! rejects 64-bit float and cannot recover the readable part of a truncated data chunk.
//!
//! Every failure is an [`Error::Audio`] naming the file, never a panic.

mod resample;
mod wav;

use std::path::Path;

use crate::error::{Error, Result};

pub use wav::{decode_wav_bytes, DecodedWav};

/// Whisper's input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Read `path` and return mono samples at [`SAMPLE_RATE`], in [-1, 1].
///
/// 16 kHz input passes through untouched (16-bit PCM becomes `i16 as f32 / 32768.0`, as in
/// OpenAI's ffmpeg-based loader); any other rate is resampled with a windowed-sinc filter to
/// `round(len * 16000 / rate)` time-aligned samples.
pub fn load_audio(path: &Path) -> Result<Vec<f32>> {
    let (mono, rate) = decode_wav(path)?;
    if rate == SAMPLE_RATE {
        return Ok(mono);
    }
    resample::resample(&mono, rate, SAMPLE_RATE).map_err(|msg| {
        Error::audio(
            path,
            format!("resampling {rate} Hz to {SAMPLE_RATE} Hz failed: {msg}"),
        )
    })
}

/// Decode a WAV file to mono f32 samples at the file's own rate. Returns `(samples, rate)`.
pub fn decode_wav(path: &Path) -> Result<(Vec<f32>, u32)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::audio(path, "audio file not found"))
        }
        Err(e) => return Err(Error::audio(path, format!("cannot read audio file: {e}"))),
    };
    let decoded = decode_wav_bytes(&bytes).map_err(|msg| Error::audio(path, msg))?;
    if decoded.truncated {
        tracing::warn!(
            "{}: WAV data chunk is truncated (header declares more audio than the file holds); \
             using the {} samples present",
            path.display(),
            decoded.samples.len()
        );
    }
    Ok((decoded.samples, decoded.sample_rate))
}

/// Resample mono `samples` from `from` Hz to `to` Hz with rubato's band-limited sinc resampler.
///
/// The output is time-aligned with the input (the filter delay is removed) and has
/// `round(len * to / from)` samples. `from == to` returns a copy.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    resample::resample(samples, from, to)
        .map_err(|msg| Error::Usage(format!("resampling {from} Hz to {to} Hz: {msg}")))
}
