//! The model-level interface every compute backend implements. Decoding, windowing and output
//! talk to this trait only, so they never know which device ran.

pub mod cpu;
pub mod decode_pass;
#[cfg(feature = "gpu")]
pub mod gpu;
pub(crate) mod load_common;

pub use decode_pass::DecodePass;

use crate::error::{Error, Result};
use crate::mel::LogMel;
use crate::model::config::ModelDims;

/// The [`Backend::pass`] and [`Backend::pass_mut`] accessors of a backend that keeps its
/// [`DecodePass`] in the field `$field`.
macro_rules! decode_pass_field {
    ($field:ident) => {
        fn pass(&self) -> &$crate::backend::DecodePass {
            &self.$field
        }

        fn pass_mut(&mut self) -> &mut $crate::backend::DecodePass {
            &mut self.$field
        }
    };
}
pub(crate) use decode_pass_field;

/// A loaded Whisper model on some device.
///
/// Per 30-s window: `encode` once (which also computes the cross-attention K/V every decoder
/// step reuses), then one or more decoding passes (temperature fallback), each `begin_decode`
/// followed by `decode` calls. A pass decodes `n_seq` sequences in lockstep (beam search and
/// best-of sampling keep several); `reorder` re-indexes them (and may change their number),
/// e.g. fanning one decoded prompt out to five beams.
///
/// Batched transcription encodes several windows at once (`encode_batch`) and decodes them in
/// one pass: `begin_decode_windows` says which window each sequence reads in cross-attention,
/// and `reorder` carries that along (a window whose sequences are all dropped leaves the pass).
/// The single-window calls are the batch of one: `encode(mel)` is `encode_batch(&[mel])` and
/// `begin_decode(n)` puts `n` sequences on window 0. A sequence's logits must not depend on
/// which other sequences share its call: decoding windows together gives what decoding each
/// alone gives.
pub trait Backend {
    fn dims(&self) -> &ModelDims;

    /// A human-readable name of the device that runs this backend (for logs and `bench`).
    fn device_name(&self) -> String;

    /// Whisper's log-mel spectrogram of 16 kHz mono `samples` (30 s of silence appended), as
    /// `crate::mel::log_mel_spectrogram`, which is the default; a device backend computes it
    /// there.
    fn log_mel(&mut self, samples: &[f32], n_mels: usize) -> Result<LogMel> {
        Ok(crate::mel::log_mel_spectrogram(samples, n_mels))
    }

    /// Whether [`log_mel`](Self::log_mel) is computed on a device rather than by the CPU
    /// reference (so a streamed CPU mel would not be bit-identical to it).
    fn mel_on_device(&self) -> bool {
        false
    }

    /// Encode one window of log-mel, `n_mels` rows of `2 * n_audio_ctx` frames, row-major.
    /// Keeps the encoder output and the cross-attention K/V for the following decoding passes.
    fn encode(&mut self, mel: &[f32]) -> Result<()> {
        self.encode_batch(&[mel])
    }

    /// Encode several windows (each as `encode` takes it), replacing what was encoded before:
    /// window `i` is `mels[i]`, and each keeps its own cross-attention K/V. Checks the windows,
    /// runs the backend's [`encode_windows`](Self::encode_windows) and records them in the
    /// decoding-pass bookkeeping.
    fn encode_batch(&mut self, mels: &[&[f32]]) -> Result<()> {
        let (n_mels, t_in) = (self.dims().n_mels, 2 * self.dims().n_audio_ctx);
        if mels.is_empty() {
            return Err(Error::Internal("encode_batch given no windows".into()));
        }
        if let Some(mel) = mels.iter().find(|m| m.len() != n_mels * t_in) {
            return Err(Error::Internal(format!(
                "mel window has {} values, expected {n_mels} x {t_in}",
                mel.len()
            )));
        }
        // A new batch: the next pass must call begin_decode (and a failed encode leaves none).
        self.pass_mut().set_encoded(0);
        self.encode_windows(mels)?;
        self.pass_mut().set_encoded(mels.len());
        Ok(())
    }

    /// The device work of [`encode_batch`](Self::encode_batch), on windows it has checked (at
    /// least one, each `n_mels * 2 * n_audio_ctx` values).
    fn encode_windows(&mut self, mels: &[&[f32]]) -> Result<()>;

    /// The sequence/window bookkeeping of the current decoding pass (the default methods
    /// below read it); `decode_pass_field!` writes both for a backend's field.
    fn pass(&self) -> &DecodePass;
    fn pass_mut(&mut self) -> &mut DecodePass;

    /// Windows held encoded (0 before the first `encode`).
    fn n_windows(&self) -> usize {
        self.pass().n_windows()
    }

    /// The encoder output of window 0, `[n_audio_ctx, n_audio_state]` row-major (tests).
    fn encoder_output(&self) -> Result<Vec<f32>>;

    /// Start a decoding pass over encoded window 0 with `n_seq` empty sequences.
    fn begin_decode(&mut self, n_seq: usize) -> Result<()> {
        let windows = self.pass_mut().on_window_0(n_seq);
        let r = self.begin_decode_windows(&windows);
        self.pass_mut().recycle(windows);
        r
    }

    /// Start a decoding pass with one empty sequence per entry of `windows`: sequence `i`
    /// attends to encoded window `windows[i]`. A window's sequences are best kept adjacent
    /// (the backends run cross-attention per run of equal windows).
    fn begin_decode_windows(&mut self, windows: &[usize]) -> Result<()> {
        self.pass_mut().begin(windows)?;
        self.reserve_sequences(windows.len());
        Ok(())
    }

    /// Make the self-attention caches hold at least `n_seq` sequences (before a pass begins).
    fn reserve_sequences(&mut self, n_seq: usize);

    /// Tokens held per sequence in the self-attention cache.
    fn cached_len(&self) -> usize {
        self.pass().cached_len()
    }

    /// Number of sequences in the current pass.
    fn n_seq(&self) -> usize {
        self.pass().n_seq()
    }

    /// Append `tokens.len() / n_seq` tokens to every sequence (`tokens` is sequence-major) and
    /// write each sequence's last-position logits into `logits` (`n_seq * n_vocab`).
    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()>;

    /// Continue with sequences `src` (new sequence `i` is old sequence `src[i]`, window
    /// included); `src.len()` becomes the new `n_seq`. Checks `src`, has the backend move its
    /// cache rows ([`reorder_caches`](Self::reorder_caches)) and updates the bookkeeping.
    fn reorder(&mut self, src: &[usize]) -> Result<()> {
        self.pass().check_reorder(src)?;
        self.reorder_caches(src)?;
        self.pass_mut().reorder(src);
        Ok(())
    }

    /// The device work of [`reorder`](Self::reorder), with `src` checked: the self-attention
    /// cache of new sequence `i` becomes that of old sequence `src[i]` (the first
    /// `cached_len` positions; the pass still describes the old sequences).
    fn reorder_caches(&mut self, src: &[usize]) -> Result<()>;

    /// Cross-attention weights of the given (layer, head) pairs when the decoder reads `tokens`
    /// from an empty cache: `[heads.len(), tokens.len(), n_audio_ctx]`, each row a softmax.
    /// Used for word timestamps; ends the current decoding pass. Reads window 0.
    fn cross_attention_weights(
        &mut self,
        tokens: &[u32],
        heads: &[(usize, usize)],
    ) -> Result<Vec<f32>> {
        self.cross_attention_weights_in(0, tokens, heads)
    }

    /// `cross_attention_weights` over encoded window `window`: checks `heads`, starts a pass of
    /// one sequence on `window` and runs the backend's
    /// [`cross_attention`](Self::cross_attention).
    fn cross_attention_weights_in(
        &mut self,
        window: usize,
        tokens: &[u32],
        heads: &[(usize, usize)],
    ) -> Result<Vec<f32>> {
        let (layers, n_head) = (self.dims().n_text_layer, self.dims().n_text_head);
        if let Some(bad) = heads.iter().find(|&&(l, h)| l >= layers || h >= n_head) {
            return Err(Error::Internal(format!(
                "alignment head {bad:?} outside {layers} layers x {n_head} heads"
            )));
        }
        self.begin_decode_windows(&[window])?;
        self.cross_attention(tokens, heads)
    }

    /// The device work of [`cross_attention_weights_in`](Self::cross_attention_weights_in), in
    /// the pass it has begun (one sequence, empty cache) with `heads` checked.
    fn cross_attention(&mut self, tokens: &[u32], heads: &[(usize, usize)]) -> Result<Vec<f32>>;

    /// Greedy decoding's step for one sequence: like `decode`, but the backend masks the
    /// `suppress` ids (sorted) and returns only the likeliest token and its log-probability
    /// under the masked distribution. A device backend thus reads back two numbers per token
    /// instead of the vocabulary's logits. This default reads the logits back.
    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        let mut logits = vec![0.0f32; self.dims().n_vocab];
        self.decode(tokens, &mut logits)?;
        Ok(masked_argmax(&mut logits, suppress))
    }

    /// The backend's diagnostics (device memory, weights storage, kernel profile), for
    /// `bench` and tests; `None` for a backend that reports none.
    fn diagnostics(&mut self) -> Option<&mut dyn Diagnostics> {
        None
    }
}

/// What a backend can tell about itself besides computing: kept apart from [`Backend`] so the
/// decoding loops see only the calls they make.
pub trait Diagnostics {
    /// Bytes of device memory the model holds (weights, activations, caches), for `bench`;
    /// `None` for backends that run in host memory.
    fn device_memory_bytes(&self) -> Option<u64> {
        None
    }

    /// How the matrix weights are stored on the device ("f32", "f16", "int8"), as `--dtype`
    /// spells them; arithmetic is f32 but for "int8-bf16" and "int8-bf16x3" (int8 weights, the
    /// encoder's attention products in bf16, plain or as three of split operands: only where
    /// the CPU ran them).
    fn weights_dtype(&self) -> &'static str;

    /// Of the last [`Backend::encode_batch`], the milliseconds spent projecting the encoder
    /// output into every decoder layer's cross-attention keys and values: decoder work that
    /// runs with the encoder here (CTranslate2 does it in its decoder, outside `encode`).
    /// `None` where the backend does not time it apart.
    fn cross_kv_ms(&self) -> Option<f64> {
        None
    }

    /// Turns the per-kernel device profile on or off (`bench`); returns whether it is on. Only
    /// a GPU whose adapter has timestamp queries inside passes can; the default cannot.
    fn set_kernel_profiling(&mut self, _on: bool) -> bool {
        false
    }

    /// Device time per kernel since profiling was turned on or last taken; `None` when off.
    #[cfg(feature = "gpu")]
    fn take_kernel_profile(&mut self) -> Result<Option<gpu::KernelProfile>> {
        Ok(None)
    }
}

/// Mask `suppress` to −∞, then (argmax, its log-softmax): what a greedy step needs.
pub fn masked_argmax(logits: &mut [f32], suppress: &[u32]) -> (u32, f32) {
    for &t in suppress {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = f32::NEG_INFINITY;
        }
    }
    let best = cpu::ops::argmax(logits);
    (best as u32, logits[best] - cpu::ops::log_sum_exp(logits))
}
