//! Transcribing the speech the VAD keeps, by either path: one frame (durations, the log line,
//! the empty transcript of audio without speech, times mapped to the original timeline for the
//! callback and the transcript alike) around what each path decodes.

use super::batched::spans;
use super::model::{VadModel, SAMPLE_RATE};
use super::sequential::{clamp_to_detected, restore_timestamps, VadTranscript};
use super::timestamps::{collect_chunks, speech_timestamps_and_detected, SpeechChunk, VadOptions};
use crate::error::Result;
use crate::transcribe::{Hooks, Segment, TranscribeOptions, Transcriber, Transcript};

/// Which loop decodes the speech the VAD keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadPath {
    /// faster-whisper's `vad_filter=True`: the speech cut out and concatenated, decoded as one
    /// clip, times mapped back ([`restore_timestamps`], then [`clamp_to_detected`]).
    Sequential,
    /// faster-whisper's `BatchedInferencePipeline`: the speech packed into [`spans`] of the
    /// original audio, decoded `batch_size` at a time (see [`super::batched`]).
    Batched,
}

impl VadPath {
    /// The path `transcribe --vad` takes for these options: batched for batches of more than
    /// one, or without timestamps (then the sequential loop could not tell where a decode that
    /// stopped early left off, and would skip the rest of its window).
    pub fn for_options(options: &TranscribeOptions) -> Self {
        if options.batch_size > 1 || options.decode.without_timestamps {
            Self::Batched
        } else {
            Self::Sequential
        }
    }
}

/// Transcribe the speech of 16 kHz `samples` that `vad` finds with `options`, by `path`, with
/// `transcriber`'s options as they are. Times are in the original timeline, in the transcript
/// and in the segment callback alike; progress counts the decoded audio; cancellation as for any
/// transcription. `removed_duration` counts the audio not decoded. No speech gives an empty
/// transcript.
pub fn transcribe_speech(
    transcriber: &mut Transcriber,
    samples: &[f32],
    vad: &VadModel,
    options: &VadOptions,
    path: VadPath,
    hooks: Hooks<'_>,
) -> Result<VadTranscript> {
    let duration = samples.len() as f64 / SAMPLE_RATE as f64;
    let seconds = |n: usize| n as f64 / SAMPLE_RATE as f64;
    match path {
        VadPath::Sequential => {
            let probs = vad.speech_probabilities(samples);
            let (speech, detected) = speech_timestamps_and_detected(&probs, samples.len(), options);
            let kept = collect_chunks(samples, &speech);
            tracing::info!(
                "VAD: {} speech chunks, {:.1} s of {:.1} s kept",
                speech.len(),
                seconds(kept.len()),
                duration
            );
            let chunks = speech.clone();
            let to_original = move |s: &mut [Segment]| {
                restore_timestamps(s, &chunks);
                clamp_to_detected(s, &chunks, &detected);
            };
            let transcript = if kept.is_empty() {
                empty_transcript(transcriber, duration)
            } else {
                let mut t = transcribe_mapped(hooks, to_original, |hooks| {
                    transcriber.transcribe_samples_with(&kept, SAMPLE_RATE as u32, hooks)
                })?;
                t.duration = duration;
                t
            };
            Ok(VadTranscript {
                transcript,
                speech,
                removed_duration: duration - seconds(kept.len()),
            })
        }
        VadPath::Batched => {
            let (ranges, speech, detected) = spans(samples, vad, options);
            let kept: usize = ranges.iter().map(|r| r.end - r.start).sum();
            tracing::info!(
                "VAD: {} speech chunks in {} spans, {:.1} s of {:.1} s decoded",
                speech.len(),
                ranges.len(),
                seconds(kept),
                duration
            );
            let transcript = if ranges.is_empty() {
                empty_transcript(transcriber, duration)
            } else {
                let to_original = move |s: &mut [Segment]| clamp_to_detected(s, &speech, &detected);
                transcribe_mapped(hooks, to_original, |hooks| {
                    transcriber.transcribe_chunks(samples, &ranges, hooks)
                })?
            };
            let speech = ranges
                .iter()
                .map(|r| SpeechChunk {
                    start: r.start,
                    end: r.end,
                })
                .collect();
            Ok(VadTranscript {
                transcript,
                speech,
                removed_duration: duration - seconds(kept),
            })
        }
    }
}

/// Runs `transcribe` with `hooks`, mapping the segments to the original timeline with
/// `to_original`: each segment the callback (if any) sees, one by one as it is final, and those
/// of the returned transcript, so both get the same times.
fn transcribe_mapped<'a>(
    mut hooks: Hooks<'a>,
    to_original: impl Fn(&mut [Segment]) + Clone + Send + 'a,
    transcribe: impl FnOnce(Hooks<'a>) -> Result<Transcript>,
) -> Result<Transcript> {
    if let Some(mut user) = hooks.take_on_segment() {
        let map = to_original.clone();
        hooks = hooks.on_segment(move |s: &Segment| {
            let mut s = s.clone();
            map(std::slice::from_mut(&mut s));
            user(&s);
        });
    }
    let mut t = transcribe(hooks)?;
    to_original(&mut t.segments);
    Ok(t)
}

/// The transcript of audio without speech: no segments, the asked language (else English).
fn empty_transcript(transcriber: &Transcriber, duration: f64) -> Transcript {
    Transcript {
        text: String::new(),
        language: transcriber
            .options()
            .decode
            .language
            .clone()
            .unwrap_or_else(|| "en".to_string()),
        language_probability: None,
        segments: Vec::new(),
        duration,
    }
}
