//! Sequential `--vad`: transcribe only the speech, report times in the original timeline
//! (faster-whisper's `vad_filter=True` path: `collect_chunks`, transcribe, then
//! `restore_speech_timestamps`).

use serde::Serialize;

use super::model::{VadModel, SAMPLE_RATE};
use super::timestamps::{
    speech_timestamps_and_detected, SpeechChunk, SpeechTimestampsMap, VadOptions,
};
use super::transcribe::{transcribe_speech, VadPath};
use crate::error::Result;
use crate::transcribe::{Hooks, Segment, Transcriber, Transcript};

/// A transcript of the speech in some audio, with what the VAD did.
#[derive(Debug, Clone, Serialize)]
pub struct VadTranscript {
    /// Segment and word times in the original timeline; `duration` is the original duration.
    pub transcript: Transcript,
    /// The speech that was transcribed, samples of the original audio.
    pub speech: Vec<SpeechChunk>,
    /// Seconds of audio removed as non-speech.
    pub removed_duration: f64,
}

/// The speech segments of 16 kHz `samples` (model forward + [`speech_timestamps`]), padded by
/// `speech_pad_ms` as the package pads them.
///
/// [`speech_timestamps`]: super::speech_timestamps
pub fn speech_chunks(samples: &[f32], vad: &VadModel, options: &VadOptions) -> Vec<SpeechChunk> {
    let probs = vad.speech_probabilities(samples);
    speech_timestamps_and_detected(&probs, samples.len(), options).0
}

/// Move times that fall in a chunk's padding to the edge of the speech they belong to: a start
/// before the detected start goes to it, a start after the detected end to the next chunk's
/// detected start; an end after the detected end goes to it, an end before the detected start
/// to the previous chunk's detected end. Times are in the original timeline; `padded[i]` holds
/// `detected[i]`.
///
/// Why: a cut chunk begins with up to `speech_pad_ms` (400 ms) of near-silence, and Whisper puts
/// the first word of a window at the window's start whatever the audio says, so without this the
/// first segment after each cut starts up to 0.4 s early. Without word timestamps Whisper also
/// puts a segment boundary anywhere in the ~0.8 s of padding between two chunks; a start on the
/// earlier side would map to before the removed silence (a minute early after a minute of
/// silence). faster-whisper does neither.
pub fn clamp_to_detected(
    segments: &mut [Segment],
    padded: &[SpeechChunk],
    detected: &[SpeechChunk],
) {
    let sr = SAMPLE_RATE as f64;
    let round = |t: f64| (t * 100.0).round() / 100.0;
    // The chunk holding `t`, allowing for the 10 ms rounding of mapped times.
    let chunk_at = |t: f64| {
        let sample = (t * sr).round() as usize;
        padded
            .iter()
            .position(|c| c.start <= sample + 160 && sample < c.end + 160)
    };
    let at = |c: &SpeechChunk, end: bool| round(if end { c.end } else { c.start } as f64 / sr);
    let clamp_start = |t: f64| match chunk_at(t) {
        Some(i) if t < detected[i].start as f64 / sr => at(&detected[i], false),
        // At or after the last speech of its chunk: what the segment says is in the next.
        Some(i) if t >= detected[i].end as f64 / sr && i + 1 < detected.len() => {
            at(&detected[i + 1], false)
        }
        _ => t,
    };
    let clamp_end = |t: f64| match chunk_at(t - 1e-6) {
        Some(i) if t > detected[i].end as f64 / sr => at(&detected[i], true),
        // At or before the first speech of its chunk: what the segment says was in the last.
        Some(i) if t <= detected[i].start as f64 / sr && i > 0 => at(&detected[i - 1], true),
        _ => t,
    };
    for seg in segments {
        match seg.words.as_mut().filter(|w| !w.is_empty()) {
            Some(words) => {
                for w in words.iter_mut() {
                    w.start = clamp_start(w.start);
                    w.end = clamp_end(w.end).max(w.start);
                    w.start = w.start.min(w.end);
                }
                seg.start = words[0].start;
                seg.end = words[words.len() - 1].end;
            }
            None => {
                seg.start = clamp_start(seg.start);
                seg.end = clamp_end(seg.end).max(seg.start);
            }
        }
    }
}

/// The batch items of the batched `--vad` path: speech found with `options` (its
/// `max_speech_duration_s` replaced by `chunk_length_s`, as faster-whisper's batched pipeline
/// does) and packed by [`merge_segments`] into spans of at most `chunk_length_s`.
///
/// [`merge_segments`]: super::merge_segments
pub fn batch_spans(
    samples: &[f32],
    vad: &VadModel,
    options: &VadOptions,
    chunk_length_s: f32,
) -> Vec<super::MergedChunk> {
    let options = VadOptions {
        max_speech_duration_s: chunk_length_s,
        ..options.clone()
    };
    super::merge_segments(&speech_chunks(samples, vad, &options), &options)
}

/// Map a transcript of the concatenated speech back to the original timeline, as faster-whisper's
/// `restore_speech_timestamps`: a segment with words takes its times from its first and last word,
/// each word mapped within the chunk holding its midpoint; a segment without words maps its start,
/// and its end as an end (a time exactly at a chunk's end stays in that chunk). Unlike there, a
/// segment without words that crosses a cut by less than `MISSED_CUT_S` (and less than half
/// its length) starts at the next chunk (ends at the previous one): otherwise a boundary put
/// 0.4 s early maps to before the silence removed, a minute early after a minute of silence.
pub fn restore_timestamps(segments: &mut [Segment], chunks: &[SpeechChunk]) {
    let map = SpeechTimestampsMap::new(chunks);
    for seg in segments {
        match seg.words.as_mut().filter(|w| !w.is_empty()) {
            Some(words) => {
                for w in words.iter_mut() {
                    let chunk = map.chunk_index((w.start + w.end) / 2.0, false);
                    w.start = map.original_time(w.start, Some(chunk), false);
                    w.end = map.original_time(w.end, Some(chunk), false);
                }
                seg.start = words[0].start;
                seg.end = words[words.len() - 1].end;
            }
            None => {
                let (mut start, mut end) = (seg.start, seg.end);
                let mut first = map.chunk_index(start, false);
                let mut last = map.chunk_index(end, true);
                let half = (end - start) / 2.0;
                // A segment across a cut with only a sliver (under a second, and under half the
                // segment) on one side: Whisper's boundary missed the cut, the sliver is padding.
                if last > first {
                    let boundary = map.chunk_end_time(first);
                    if boundary - start < MISSED_CUT_S.min(half) {
                        (start, first) = (boundary, first + 1);
                    }
                }
                if last > first {
                    let boundary = map.chunk_end_time(last - 1);
                    if end - boundary < MISSED_CUT_S.min(half) {
                        (end, last) = (boundary, last - 1);
                    }
                }
                seg.start = map.original_time(start, Some(first), false);
                seg.end = map.original_time(end, Some(last), true);
            }
        }
    }
}

/// Longest part of a segment without words on one side of a cut that is taken for a
/// misplaced boundary (Whisper's segment times are good to a few tenths of a second; a cut
/// chunk ends with `speech_pad_ms` of padding).
const MISSED_CUT_S: f64 = 1.0;

/// Transcribe the speech of 16 kHz `samples` with `transcriber` (its options as they are), after
/// cutting what `vad` finds to be non-speech. No speech gives an empty transcript.
/// `progress` counts the concatenated speech. ([`transcribe_speech`] with
/// [`VadPath::Sequential`].)
pub fn transcribe_with_vad(
    transcriber: &mut Transcriber,
    samples: &[f32],
    vad: &VadModel,
    options: &VadOptions,
    progress: Option<&dyn crate::progress::Progress>,
) -> Result<VadTranscript> {
    let mut hooks = Hooks::default();
    if let Some(p) = progress {
        hooks = hooks.progress(p);
    }
    transcribe_speech(
        transcriber,
        samples,
        vad,
        options,
        VadPath::Sequential,
        hooks,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: f64, end: f64) -> Segment {
        Segment {
            id: 0,
            seek: 0,
            start,
            end,
            text: String::new(),
            tokens: Vec::new(),
            temperature: 0.0,
            avg_logprob: 0.0,
            compression_ratio: 0.0,
            no_speech_prob: 0.0,
            words: None,
        }
    }

    #[test]
    fn restored_times_are_in_the_original_timeline() {
        let s = 16_000;
        // Speech at 1-2 s and 10-12 s: 1 s cut before the first, 8 s more before the second.
        let chunks = [
            SpeechChunk {
                start: s,
                end: 2 * s,
            },
            SpeechChunk {
                start: 10 * s,
                end: 12 * s,
            },
        ];
        let mut segs = vec![segment(0.2, 1.0), segment(1.0, 2.5)];
        let mut with_words = segment(1.2, 2.9);
        with_words.words = Some(vec![crate::decode::alignment::Word {
            word: " x".into(),
            start: 1.5,
            end: 2.0,
            probability: 1.0,
        }]);
        segs.push(with_words);
        // A boundary 0.2 s before the cut: the segment is the second chunk's.
        segs.push(segment(0.8, 2.9));
        restore_timestamps(&mut segs, &chunks);
        assert_eq!((segs[3].start, segs[3].end), (10.0, 11.9));
        assert_eq!((segs[0].start, segs[0].end), (1.2, 2.0));
        assert_eq!((segs[1].start, segs[1].end), (10.0, 11.5));
        // A segment with words takes its times from them.
        assert_eq!((segs[2].start, segs[2].end), (10.5, 11.0));
    }

    #[test]
    fn times_in_the_padding_move_to_the_detected_speech() {
        let s = 16_000;
        // Speech detected at 2-5 s, padded to 1.6-5.4 s.
        let padded = [SpeechChunk {
            start: 16 * s / 10,
            end: 54 * s / 10,
        }];
        let detected = [SpeechChunk {
            start: 2 * s,
            end: 5 * s,
        }];
        let mut segs = vec![segment(1.6, 5.4), segment(2.5, 4.0)];
        clamp_to_detected(&mut segs, &padded, &detected);
        assert_eq!((segs[0].start, segs[0].end), (2.0, 5.0));
        assert_eq!((segs[1].start, segs[1].end), (2.5, 4.0));
    }

    #[test]
    fn boundaries_in_the_padding_between_chunks_go_to_the_speech() {
        let s = 16_000;
        // Speech detected at 2-5 s and 65-70 s, padded by 0.4 s.
        let padded = [
            SpeechChunk {
                start: 16 * s / 10,
                end: 54 * s / 10,
            },
            SpeechChunk {
                start: 646 * s / 10,
                end: 704 * s / 10,
            },
        ];
        let detected = [
            SpeechChunk {
                start: 2 * s,
                end: 5 * s,
            },
            SpeechChunk {
                start: 65 * s,
                end: 70 * s,
            },
        ];
        // Whisper's boundary after the first speech, before the silence cut: the second
        // segment's text is the second chunk's; and one just after it, ending early.
        let mut segs = vec![segment(2.0, 5.2), segment(5.2, 68.0), segment(64.8, 64.9)];
        clamp_to_detected(&mut segs, &padded, &detected);
        assert_eq!((segs[0].start, segs[0].end), (2.0, 5.0));
        assert_eq!((segs[1].start, segs[1].end), (65.0, 68.0));
        assert_eq!((segs[2].start, segs[2].end), (65.0, 65.0));
    }
}
