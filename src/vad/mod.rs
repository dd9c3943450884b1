//! Voice activity detection: Silero VAD v6 (16 kHz) natively in Rust, and the speech/silence
//! bookkeeping faster-whisper does around it.
//!
//! # Which weights
//!
//! The `silero-vad` 6.2.3 wheel ships `silero_vad_16k.safetensors`, but its weights are not those
//! of the package's `silero_vad.onnx` (nor of its JIT or other ONNX exports): run through the same
//! graph they give probabilities up to ~0.3 away on speech. `silero_vad.onnx` is the model the
//! package, faster-whisper and onnxruntime users run, so the default weights are that model's,
//! read from the wheel's `silero_vad_16k_op15.onnx` (plain initializers, same weights as
//! `silero_vad.onnx`'s 16 kHz branch) by a small protobuf reader ([`onnx_weights`]), with no ONNX
//! runtime. The safetensors loads too ([`VadModel::from_file`]) and is checked against onnxruntime
//! running the op15 graph with those weights substituted (tests/vad.rs).
//!
//! # Wiring for the CLI and the batched path (for the merger)
//!
//! - `models pull silero-vad`: [`fetch::pull_in`]`(&cache_dir)` (or [`fetch::resolve_in`], which
//!   returns the cached snapshot without running pip). `HF_HUB_OFFLINE=1`: `resolve_in` never runs
//!   pip and errors with the command to run. Name: [`fetch::MODEL_NAME`].
//! - `transcribe --vad`: [`VadModel::load`]`()` once, then
//!   [`transcribe_with_vad`]`(&mut transcriber, &samples, &vad, &options, &mut progress)`; json
//!   output adds [`VadTranscript::removed_duration`] (seconds) next to `duration`.
//! - `--vad-threshold` -> [`VadOptions::threshold`], `--vad-neg-threshold` ->
//!   `neg_threshold` (`Some`), `--vad-min-speech-duration-ms` -> `min_speech_duration_ms`,
//!   `--vad-min-silence-duration-ms` -> `min_silence_duration_ms`, `--vad-speech-pad-ms` ->
//!   `speech_pad_ms`, `--vad-max-speech-duration-s` -> `max_speech_duration_s`; start from
//!   [`VadOptions::default`] (faster-whisper's defaults). `VadOptions` is serde (a server's
//!   `chunking_strategy` object deserialises into it; `null` max duration = infinity).
//! - `--vad --batch-size N`: [`sequential::batch_spans`]`(&samples, &vad, &options, 30.0)` with
//!   options [`VadOptions::batched`]`(30.0)` when no `--vad-*` flag is given, else
//!   [`VadOptions::default`] with the flags applied (faster-whisper's rule; the max duration is
//!   always the chunk length). Each [`MergedChunk`] `start..end` (samples) is one ≤30 s window
//!   for the batched transcribe entry, decoded without previous-text conditioning; its segment
//!   and word times are offset by `start / 16000` s (the audio inside keeps its original
//!   spacing, so no map is needed).
//! - Done (second wave): `transcribe --vad` is src/cli/vad.rs on [`transcribe_speech`]
//!   (segment callback in the original timeline), [`VadPath::Sequential`] or, with
//!   `--batch-size` > 1 or `--without-timestamps`, [`VadPath::Batched`] ([`batched`]); `models
//!   pull|verify|rm silero-vad` on [`fetch::pull_in`], [`fetch::verify_in`], [`fetch::remove_in`].
//! - `info`'s speech share: `speech_chunks` with [`VadOptions::default`], summing `end - start`.

pub mod batched;
pub mod fetch;
pub mod model;
pub mod onnx_weights;
pub mod sequential;
pub mod timestamps;
pub mod transcribe;

use std::path::Path;

pub use batched::{spans, CHUNK_LENGTH_S};
pub use model::{VadModel, VadState, VadWeights, CONTEXT_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES};
pub use sequential::{
    batch_spans, clamp_to_detected, restore_timestamps, speech_chunks, transcribe_with_vad,
    VadTranscript,
};
pub use timestamps::{
    collect_chunks, merge_segments, speech_timestamps, speech_timestamps_and_detected, MergedChunk,
    SpeechChunk, SpeechTimestampsMap, VadOptions,
};
pub use transcribe::{transcribe_speech, VadPath};

use crate::error::Result;

impl VadModel {
    /// The reference weights from the cache, fetching them first if needed (see
    /// [`fetch::resolve`]).
    pub fn load() -> Result<Self> {
        Self::load_from_snapshot(&fetch::resolve()?)
    }

    /// The reference weights of a snapshot directory made by [`fetch`].
    pub fn load_from_snapshot(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join(fetch::ONNX_WEIGHTS))
    }
}
