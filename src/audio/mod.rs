//! Audio input: decode a file to mono f32 samples at 16 kHz.
//! (Being written: WAV via hound, band-limited resampling via rubato.)

use std::path::Path;

use crate::error::{Error, Result};

/// Whisper's input sample rate.
pub const SAMPLE_RATE: u32 = 16_000;

/// Read `path` and return mono samples at [`SAMPLE_RATE`], in [-1, 1].
pub fn load_audio(path: &Path) -> Result<Vec<f32>> {
    Err(Error::audio(
        path,
        "audio decoding is not implemented in this build",
    ))
}
