//! Whisper's log-mel spectrogram on the CPU (the reference the GPU mel is tested against).

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30-s window.
pub const N_FRAMES: usize = 3000;
/// Samples in one 30-s window.
pub const N_SAMPLES: usize = 480_000;

/// A log-mel spectrogram, `n_mels` rows of `n_frames` columns, row-major.
#[derive(Debug, Clone)]
pub struct LogMel {
    pub n_mels: usize,
    pub n_frames: usize,
    pub data: Vec<f32>,
}
