//! Batched `--vad` (`--vad --batch-size N`), as faster-whisper's `BatchedInferencePipeline`: the
//! speech found by the VAD is packed by [`merge_segments`] into spans of at most 30 s, and the
//! spans are decoded independently, N at a time in lockstep ([`crate::Transcriber::transcribe_chunks`]),
//! without previous-text conditioning.
//!
//! Each span is a window of the original audio (the silence between the speech chunks packed
//! into it stays in it), so segment and word times come out in the original timeline with no
//! mapping. A decode that stops at a timestamp before the span's end is continued from there
//! (the batched loop's continuations), and spans end where the speaker paused, so decoding
//! without timestamps loses no more than a window's worth of tail: the sequential loop's
//! 30-s windows cut mid-sentence, and a window whose decode ends early is skipped whole.

use super::model::VadModel;
use super::timestamps::{merge_segments, speech_timestamps_and_detected, SpeechChunk, VadOptions};
use crate::mel::{HOP_LENGTH, N_FRAMES};
use crate::transcribe::SampleRange;

/// Longest span, seconds: one Whisper window.
pub const CHUNK_LENGTH_S: f32 = 30.0;

/// The spans the batched path decodes: speech found with `options` (its
/// `max_speech_duration_s` replaced by [`CHUNK_LENGTH_S`]), merged, each cut to fit a window of
/// mel frames (a span of exactly 30 s that does not start on a frame would need 3001), with the
/// padded and the detected speech chunks (for [`clamp_to_detected`](super::clamp_to_detected)).
pub fn spans(
    samples: &[f32],
    vad: &VadModel,
    options: &VadOptions,
) -> (Vec<SampleRange>, Vec<SpeechChunk>, Vec<SpeechChunk>) {
    let options = VadOptions {
        max_speech_duration_s: CHUNK_LENGTH_S,
        ..options.clone()
    };
    let probs = vad.speech_probabilities(samples);
    let (speech, detected) = speech_timestamps_and_detected(&probs, samples.len(), &options);
    let ranges = merge_segments(&speech, &options)
        .into_iter()
        .map(|m| {
            let last = (m.start / HOP_LENGTH + N_FRAMES) * HOP_LENGTH;
            SampleRange {
                start: m.start,
                end: m.end.min(last).min(samples.len()),
            }
        })
        .filter(|r| r.end > r.start)
        .collect();
    (ranges, speech, detected)
}
