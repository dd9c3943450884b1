//! What a transcription takes besides the audio, and what it reports about itself. Everything
//! the command line derives from its flags (the temperature schedule, the mel padding that goes
//! with plain-text decoding) is derived here, so a library caller and the CLI get the same
//! transcript from the same options.

use serde::Serialize;

use crate::decode::DecodeOptions;
use crate::error::{Error, Result};

/// Which compute device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A hardware GPU when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// Any GPU adapter, a software one (lavapipe / llvmpipe) included.
    Gpu,
}

/// Storage precision of the matrix weights; arithmetic is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dtype {
    /// The default: the fastest storage whose word error rate stays within noise of f32's on
    /// the dev clips: on a CPU with AVX-512 VNNI int8, with [`Dtype::Int8Bf16V`]'s attention
    /// where it also has AVX-512 BF16; f32 on other CPUs (their int8 kernel is the portable
    /// one, not measured faster); f16 on a GPU. See [`Dtype::resolve_cpu`].
    Auto,
    /// The reference: token-identical to CTranslate2's float32 on the reference clips.
    F32,
    /// GPU only (the GPU's default).
    F16,
    /// Per-row scaled int8 (CTranslate2's layout); on the CPU activations are quantized per row
    /// too and products summed in i32; the GPU dequantizes the weights in its matmul kernels.
    Int8,
    /// [`Dtype::Int8`], and on a CPU with AVX-512 BF16 the encoder's attention products in bf16
    /// with f32 sums (CTranslate2's `int8_bfloat16` in spirit): a faster encoder, at the price of
    /// more near-tie flips than int8 alone (measured in README, hence not the default). Exactly
    /// [`Dtype::Int8`] elsewhere, the GPU included.
    Int8Bf16,
    /// [`Dtype::Int8`], and on a CPU with AVX-512 BF16 the encoder's attention products as
    /// three bf16 products of split operands (each f32 as `hi + lo`, two bf16; what is lost is
    /// about 2^-16 of each product): near f32. Made for AMX bf16 tiles, where three bf16
    /// products should take a fraction of the time of f32 ones (not yet measured: the default
    /// int8 keeps f32 attention until it is, on an AMX CPU, for speed and words); with AVX-512
    /// BF16 alone it is slower than [`Dtype::Int8`] (it is there to test and compare). Exactly
    /// [`Dtype::Int8`] without AVX-512 BF16, the GPU included.
    Int8Bf16x3,
    /// [`Dtype::Int8`], and on a CPU with AVX-512 BF16 the encoder attention's second product
    /// (softmax weights × values) in bf16 with f32 sums; queries × keys stay f32. Exactly
    /// [`Dtype::Int8`] without AVX-512 BF16, the GPU included.
    Int8Bf16V,
}

impl Dtype {
    /// What the CPU path stores for `dtype` (`None`: [`Dtype::Auto`]); f16 is not a CPU format
    /// (an error at load).
    pub fn resolve_cpu(dtype: Option<Dtype>) -> Dtype {
        match dtype.unwrap_or(Dtype::Auto) {
            Dtype::Auto if crate::backend::cpu::int8::has_vnni() => {
                use crate::backend::cpu::ops::Products;
                if Products::Bf16Values.on_this_cpu() == Products::Bf16Values {
                    Dtype::Int8Bf16V
                } else {
                    Dtype::Int8
                }
            }
            Dtype::Auto => Dtype::F32,
            other => other,
        }
    }
}

/// What fills the mel frames of a window that lie past the end of the audio. Not an option of
/// its own: it follows `without_timestamps` ([`TranscribeOptions::mel_padding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MelPadding {
    /// Zeros, as OpenAI's `transcribe()` pads each mel segment (`pad_or_trim`).
    Zeros,
    /// The log-mel of silence (the spectrogram's floor), as decoding a 30-s-padded clip gives
    /// (OpenAI's `decode()` on `log_mel_spectrogram(pad_or_trim(audio))`, CTranslate2's tests).
    Floor,
}

/// Everything `transcribe()` takes besides the audio (OpenAI's CLI options and defaults).
/// Serializable so that manifest sidecars can record what an output was made with.
#[derive(Debug, Clone, Serialize)]
pub struct TranscribeOptions {
    /// Per-window decoding options (language, task, beam size, best-of, timestamps, ...). Its
    /// `temperature` and `prompt` are set by the transcription loop.
    pub decode: DecodeOptions,
    /// First temperature; 0 decodes deterministically (beam search or greedy).
    pub temperature: f32,
    /// Step added to the temperature on each fallback, up to 1.0; 0 disables fallback.
    pub temperature_increment_on_fallback: f32,
    /// A decode whose text compresses better than this (gzip) is repetitive: retry hotter.
    pub compression_ratio_threshold: Option<f32>,
    /// A decode whose average log-probability is below this is unreliable: retry hotter.
    pub logprob_threshold: Option<f32>,
    /// A window whose `<|nospeech|>` probability is above this and whose average log-probability
    /// is not above `logprob_threshold` is silence: skipped.
    pub no_speech_threshold: Option<f32>,
    /// Feed the previous window's text as the prompt of the next one.
    pub condition_on_previous_text: bool,
    /// Text to prime the first window with (spelling, names, style).
    pub initial_prompt: Option<String>,
    /// Seed of the sampler used at temperatures above 0.
    pub seed: u64,
    /// Word-level timestamps from the alignment heads' cross-attention.
    pub word_timestamps: bool,
    /// How matrix weights are stored; `None` is [`Dtype::Auto`] (int8 on a CPU with AVX-512
    /// VNNI, int8-bf16v with AVX-512 BF16 too; f16 on a GPU). Read when the model is loaded.
    pub weights_dtype: Option<Dtype>,
    /// 1: OpenAI's sequential seek loop. Above 1: batched long-form transcription: chunks of at
    /// most 30 s cut at quiet points, decoded independently, this many at a time
    /// (`condition_on_previous_text` does not apply).
    pub batch_size: usize,
}

impl Default for TranscribeOptions {
    /// OpenAI's CLI defaults: beam 5, best-of 5, fallback 0.0..1.0 by 0.2, thresholds
    /// 2.4 / -1.0 / 0.6, conditioning on previous text, timestamps on.
    fn default() -> Self {
        TranscribeOptions {
            decode: DecodeOptions {
                beam_size: Some(5),
                best_of: Some(5),
                ..DecodeOptions::default()
            },
            temperature: 0.0,
            temperature_increment_on_fallback: 0.2,
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            initial_prompt: None,
            seed: 0,
            word_timestamps: false,
            weights_dtype: None,
            batch_size: 1,
        }
    }
}

impl TranscribeOptions {
    /// Greedy, no timestamps, no fallback: one plain decode per consecutive 30-s window (the
    /// setting the token-level reference transcripts were made with).
    pub fn greedy_plain() -> Self {
        TranscribeOptions {
            decode: DecodeOptions {
                without_timestamps: true,
                ..DecodeOptions::default()
            },
            temperature: 0.0,
            temperature_increment_on_fallback: 0.0,
            compression_ratio_threshold: None,
            logprob_threshold: None,
            no_speech_threshold: None,
            condition_on_previous_text: false,
            ..TranscribeOptions::default()
        }
    }

    /// The temperatures tried in turn: `temperature`, then up by the increment while at most
    /// 1.0 (each rounded to 1e-3, so 0.2 steps give 0.2, 0.4, ... 1.0 exactly).
    pub fn temperatures(&self) -> Vec<f32> {
        let mut temperatures = vec![self.temperature];
        let step = self.temperature_increment_on_fallback;
        if step > 0.0 {
            let mut t = self.temperature + step;
            while t <= 1.0 + 1e-6 {
                temperatures.push((t * 1000.0).round() / 1000.0);
                t += step;
            }
        }
        temperatures
    }

    /// Plain-text decoding reads the spectrogram's floor past the audio (as the reference
    /// transcripts were made); decoding with timestamps reads zeros (as OpenAI's seek loop).
    pub fn mel_padding(&self) -> MelPadding {
        if self.decode.without_timestamps {
            MelPadding::Floor
        } else {
            MelPadding::Zeros
        }
    }

    /// Reject options no decode can honour, before any work.
    pub fn validate(&self) -> Result<()> {
        let zero = |o: Option<usize>| o == Some(0);
        if zero(self.decode.beam_size) || zero(self.decode.best_of) || self.batch_size == 0 {
            return Err(Error::Usage(
                "beam size, best-of and batch size must be at least 1".into(),
            ));
        }
        if !self.temperature.is_finite() || !self.temperature_increment_on_fallback.is_finite() {
            return Err(Error::Usage("temperatures must be finite numbers".into()));
        }
        Ok(())
    }
}

/// Where the last transcription call spent its time (`Transcriber::timings`; the `bench`
/// command prints it). Filled on every call: a few clock reads per window and per decoder call,
/// nothing on the hot path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Log-mel spectrogram of the whole input.
    pub mel_ms: f64,
    /// Language detection (multilingual models without a language), its encoder run included.
    pub language_ms: f64,
    /// One entry per 30-s window decoded (the seek loop's iterations).
    pub windows: Vec<WindowTimings>,
    /// The whole call.
    pub total_ms: f64,
}

/// One window of [`Timings`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowTimings {
    /// Encoder plus the cross-attention K/V; 0 when language detection already encoded it.
    pub encoder_ms: f64,
    /// Of `encoder_ms`, the cross-attention K/V projections, where the backend times them
    /// apart (the CPU; else 0).
    pub cross_kv_ms: f64,
    /// All decoding passes of the window (temperature fallback included): the forward passes
    /// plus the host-side logit filters and search.
    pub decoder_ms: f64,
    /// Of `decoder_ms`, the time inside `Backend::decode` (the forward passes, read-back included).
    pub forward_ms: f64,
    /// Of `forward_ms`, the time in the one-token-per-sequence steps (the prompt calls excluded).
    pub step_ms: f64,
    /// Decoding passes (1 + temperature fallbacks).
    pub passes: usize,
    /// `Backend::decode` calls that fed the prompt.
    pub prompt_calls: usize,
    /// One-token steps (each feeds one token to every sequence of the pass).
    pub steps: usize,
    /// Sequence-tokens those steps computed: `steps` × sequences (beam search: 5 per step).
    pub seq_tokens: usize,
    /// Tokens of the kept result.
    pub tokens: usize,
    /// Word-timestamp alignment (with `word_timestamps`).
    pub align_ms: f64,
}

impl WindowTimings {
    /// Count a decoding loop's forward-call figures.
    pub(crate) fn add_stats(&mut self, s: &crate::decode::DecodeStats) {
        self.forward_ms += s.forward_ms;
        self.step_ms += s.step_ms;
        self.prompt_calls += s.prompt_calls;
        self.steps += s.steps;
        self.seq_tokens += s.seq_tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_schedule_is_the_cli_one() {
        let o = TranscribeOptions::default();
        assert_eq!(o.temperatures(), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(TranscribeOptions::greedy_plain().temperatures(), vec![0.0]);
        let o = TranscribeOptions {
            temperature: 0.5,
            temperature_increment_on_fallback: 0.25,
            ..TranscribeOptions::default()
        };
        assert_eq!(o.temperatures(), vec![0.5, 0.75, 1.0]);
    }

    #[test]
    fn padding_follows_timestamps() {
        assert_eq!(
            TranscribeOptions::default().mel_padding(),
            MelPadding::Zeros
        );
        assert_eq!(
            TranscribeOptions::greedy_plain().mel_padding(),
            MelPadding::Floor
        );
    }
}
