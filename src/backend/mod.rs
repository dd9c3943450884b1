//! The model-level interface every compute backend implements. Decoding, windowing and output
//! talk to this trait only, so they never know which device ran.

pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::model::config::ModelDims;

/// A loaded Whisper model on some device.
///
/// The lifecycle per 30-s window is: `encode` once (which also computes the cross-attention K/V
/// that every decoder step reuses), then `reset_decoder` + a series of `decode` calls that append
/// tokens to the self-attention KV cache. Several decoding passes (temperature fallback) may run
/// over one encoded window.
pub trait Backend {
    fn dims(&self) -> &ModelDims;

    /// A human-readable name of the device that runs this backend (for logs and `bench`).
    fn device_name(&self) -> String;

    /// Encode one window of log-mel, `n_mels` rows of `2 * n_audio_ctx` frames, row-major.
    /// Keeps the encoder output and the cross-attention K/V for the following `decode` calls
    /// and clears the self-attention cache.
    fn encode(&mut self, mel: &[f32]) -> Result<()>;

    /// The last encoder output, `[n_audio_ctx, n_audio_state]` row-major (tests and alignment).
    fn encoder_output(&self) -> Result<Vec<f32>>;

    /// Forget all decoded tokens of the current window (a new pass over the same window).
    fn reset_decoder(&mut self);

    /// Number of tokens currently held in the self-attention cache.
    fn cached_len(&self) -> usize;

    /// Append `tokens` to the sequence and write the logits of the last position into `logits`
    /// (`n_vocab` long).
    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()>;
}
