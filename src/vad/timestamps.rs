//! Speech segments from per-window probabilities, and the bookkeeping around cutting silence:
//! ports of silero-vad 6.2.3's `get_speech_timestamps_from_probs` and of faster-whisper's
//! `collect_chunks`, `SpeechTimestampsMap` and `merge_segments` (its batched pipeline).
//!
//! The ports keep the originals' arithmetic (sample counts derived from milliseconds stay
//! fractional where Python's do, truncation where Python calls `int`, the first longest silence
//! on ties) so the segments equal the package's sample for sample.

use serde::{Deserialize, Serialize};

use super::model::{SAMPLE_RATE, WINDOW_SAMPLES};

/// Options of [`speech_timestamps`], with faster-whisper's names and defaults (`VadOptions` in
/// faster_whisper/vad.py) plus silero's two max-speech options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadOptions {
    /// Windows with a speech probability at or above this are speech.
    pub threshold: f32,
    /// While in speech, windows below this are silence; default `max(threshold - 0.15, 0.01)`.
    pub neg_threshold: Option<f32>,
    /// Speech segments this short or shorter are dropped.
    pub min_speech_duration_ms: u32,
    /// Longer speech is split (at the longest silence of at least
    /// `min_silence_at_max_speech` ms inside it, if any). Infinity, written `null` in JSON, for
    /// no limit.
    #[serde(with = "infinite_as_null")]
    pub max_speech_duration_s: f32,
    /// Silence must last this long to end a segment.
    pub min_silence_duration_ms: u32,
    /// Each segment is widened by this much on both sides (less where neighbours are close).
    pub speech_pad_ms: u32,
    /// Shortest silence (ms) considered as a cut point when `max_speech_duration_s` is reached.
    pub min_silence_at_max_speech: u32,
    /// At `max_speech_duration_s`, cut at the longest silence so far (true) or the last (false).
    pub use_max_poss_sil_at_max_speech: bool,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_duration_ms: 0,
            max_speech_duration_s: f32::INFINITY,
            min_silence_duration_ms: 2000,
            speech_pad_ms: 400,
            min_silence_at_max_speech: 98,
            use_max_poss_sil_at_max_speech: true,
        }
    }
}

impl VadOptions {
    /// faster-whisper's `BatchedInferencePipeline` defaults: speech split at `chunk_length_s`
    /// (30 s) and short silences (160 ms) ending segments, so [`merge_segments`] can pack them.
    pub fn batched(chunk_length_s: f32) -> Self {
        VadOptions {
            max_speech_duration_s: chunk_length_s,
            min_silence_duration_ms: 160,
            ..Self::default()
        }
    }

    /// `neg_threshold`, or its default.
    pub fn effective_neg_threshold(&self) -> f64 {
        match self.neg_threshold {
            Some(t) => f64::from(t),
            None => (f64::from(self.threshold) - 0.15).max(0.01),
        }
    }
}

/// `max_speech_duration_s` as JSON: a number, or `null` for infinity (JSON has no infinity).
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f32(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::INFINITY))
    }
}

/// A span of speech, in samples of the 16 kHz input: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechChunk {
    pub start: usize,
    pub end: usize,
}

/// Speech segments from per-window probabilities (`probs[i]` covers samples
/// `[512 i, 512 (i + 1))` of `audio_len`): silero-vad's `get_speech_timestamps_from_probs`.
pub fn speech_timestamps(probs: &[f32], audio_len: usize, o: &VadOptions) -> Vec<SpeechChunk> {
    speech_timestamps_and_detected(probs, audio_len, o).0
}

fn to_chunks(v: &[(i64, i64)]) -> Vec<SpeechChunk> {
    v.iter()
        .map(|&(s, e)| SpeechChunk {
            start: s as usize,
            end: e as usize,
        })
        .collect()
}

/// [`speech_timestamps`] (padded by `speech_pad_ms`), and the same segments before padding: where
/// the model's probabilities say speech starts and ends (one-to-one with the padded ones).
pub fn speech_timestamps_and_detected(
    probs: &[f32],
    audio_len: usize,
    o: &VadOptions,
) -> (Vec<SpeechChunk>, Vec<SpeechChunk>) {
    let sr = SAMPLE_RATE as f64;
    let window = WINDOW_SAMPLES as i64;
    let threshold = f64::from(o.threshold);
    let neg_threshold = o.effective_neg_threshold();
    let min_speech_samples = sr * f64::from(o.min_speech_duration_ms) / 1000.0;
    let speech_pad_samples = sr * f64::from(o.speech_pad_ms) / 1000.0;
    let max_speech_samples =
        sr * f64::from(o.max_speech_duration_s) - window as f64 - 2.0 * speech_pad_samples;
    let min_silence_samples = sr * f64::from(o.min_silence_duration_ms) / 1000.0;
    let min_silence_at_max = sr * f64::from(o.min_silence_at_max_speech) / 1000.0;
    let audio_len = audio_len as i64;

    let mut triggered = false;
    let mut speeches: Vec<(i64, i64)> = Vec::new();
    // Start of the speech in progress (Python's `current_speech['start']`).
    let mut current: Option<i64> = None;
    // Zero means "none", as in the original.
    let (mut temp_end, mut prev_end, mut next_start) = (0i64, 0i64, 0i64);
    let mut possible_ends: Vec<(i64, i64)> = Vec::new();

    for (i, &p) in probs.iter().enumerate() {
        let p = f64::from(p);
        let cur_sample = window * i as i64;

        // Speech back after a tentative end: remember the silence if long enough.
        if p >= threshold && temp_end != 0 {
            let sil_dur = cur_sample - temp_end;
            if sil_dur as f64 > min_silence_at_max {
                possible_ends.push((temp_end, sil_dur));
            }
            temp_end = 0;
            if next_start < prev_end {
                next_start = cur_sample;
            }
        }

        if p >= threshold && !triggered {
            triggered = true;
            current = Some(cur_sample);
            continue;
        }

        // Max speech length reached: decide where to cut.
        if let (true, Some(start)) = (triggered, current) {
            if (cur_sample - start) as f64 > max_speech_samples {
                if o.use_max_poss_sil_at_max_speech && !possible_ends.is_empty() {
                    // The longest silence; the first of equals, as Python's max().
                    let (end, dur) = possible_ends
                        .iter()
                        .copied()
                        .fold(possible_ends[0], |b, e| if e.1 > b.1 { e } else { b });
                    prev_end = end;
                    speeches.push((start, prev_end));
                    current = None;
                    next_start = prev_end + dur;
                    if next_start < prev_end + cur_sample {
                        current = Some(next_start);
                    } else {
                        triggered = false;
                    }
                    (prev_end, next_start, temp_end) = (0, 0, 0);
                    possible_ends.clear();
                } else if prev_end != 0 {
                    speeches.push((start, prev_end));
                    current = None;
                    if next_start < prev_end {
                        triggered = false;
                    } else {
                        current = Some(next_start);
                    }
                    (prev_end, next_start, temp_end) = (0, 0, 0);
                    possible_ends.clear();
                } else {
                    speeches.push((start, cur_sample));
                    current = None;
                    (prev_end, next_start, temp_end) = (0, 0, 0);
                    triggered = false;
                    possible_ends.clear();
                    continue;
                }
            }
        }

        // Silence while in speech.
        if p < neg_threshold && triggered {
            if temp_end == 0 {
                temp_end = cur_sample;
            }
            let sil_dur_now = (cur_sample - temp_end) as f64;
            if !o.use_max_poss_sil_at_max_speech && sil_dur_now > min_silence_at_max {
                prev_end = temp_end;
            }
            if sil_dur_now < min_silence_samples {
                continue;
            }
            if let Some(start) = current {
                if (temp_end - start) as f64 > min_speech_samples {
                    speeches.push((start, temp_end));
                }
            }
            current = None;
            (prev_end, next_start, temp_end) = (0, 0, 0);
            triggered = false;
            possible_ends.clear();
        }
    }

    if let Some(start) = current {
        if (audio_len - start) as f64 > min_speech_samples {
            speeches.push((start, audio_len));
        }
    }

    let detected = to_chunks(&speeches);
    // Padding: `int(...)` of float expressions truncates toward zero (all are >= 0 here).
    let n = speeches.len();
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = (speeches[0].0 as f64 - speech_pad_samples).max(0.0) as i64;
        }
        if i != n - 1 {
            let silence = speeches[i + 1].0 - speeches[i].1;
            if (silence as f64) < 2.0 * speech_pad_samples {
                speeches[i].1 += silence.div_euclid(2);
                speeches[i + 1].0 = (speeches[i + 1].0 - silence.div_euclid(2)).max(0);
            } else {
                speeches[i].1 =
                    (audio_len as f64).min(speeches[i].1 as f64 + speech_pad_samples) as i64;
                speeches[i + 1].0 = (speeches[i + 1].0 as f64 - speech_pad_samples).max(0.0) as i64;
            }
        } else {
            speeches[i].1 =
                (audio_len as f64).min(speeches[i].1 as f64 + speech_pad_samples) as i64;
        }
    }
    (to_chunks(&speeches), detected)
}

/// The speech of `audio` concatenated (faster-whisper's `collect_chunks` without a maximum
/// duration): what the sequential `--vad` path transcribes.
pub fn collect_chunks(audio: &[f32], chunks: &[SpeechChunk]) -> Vec<f32> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.end - c.start).sum());
    for c in chunks {
        out.extend_from_slice(&audio[c.start.min(audio.len())..c.end.min(audio.len())]);
    }
    out
}

/// Maps times in the concatenated speech back to the original timeline (faster-whisper's
/// `SpeechTimestampsMap`, times rounded to 10 ms as there).
#[derive(Debug, Clone)]
pub struct SpeechTimestampsMap {
    /// End of each chunk, in samples of the concatenated speech.
    chunk_end_sample: Vec<usize>,
    /// Silence removed before each chunk, seconds.
    total_silence_before: Vec<f64>,
}

impl SpeechTimestampsMap {
    pub fn new(chunks: &[SpeechChunk]) -> Self {
        let (mut previous_end, mut silent) = (0usize, 0usize);
        let (mut chunk_end_sample, mut total_silence_before) = (Vec::new(), Vec::new());
        for c in chunks {
            silent += c.start.saturating_sub(previous_end);
            previous_end = c.end;
            chunk_end_sample.push(c.end - silent);
            total_silence_before.push(silent as f64 / SAMPLE_RATE as f64);
        }
        SpeechTimestampsMap {
            chunk_end_sample,
            total_silence_before,
        }
    }

    /// The chunk a time (seconds of concatenated speech) falls in; a time exactly at a chunk's
    /// end belongs to that chunk when `is_end`.
    pub fn chunk_index(&self, time: f64, is_end: bool) -> usize {
        let sample = (time * SAMPLE_RATE as f64) as usize;
        if is_end {
            if let Some(i) = self.chunk_end_sample.iter().position(|&e| e == sample) {
                return i;
            }
        }
        let after = self.chunk_end_sample.partition_point(|&e| e <= sample);
        after.min(self.chunk_end_sample.len().saturating_sub(1))
    }

    /// Where chunk `i` ends, seconds of concatenated speech.
    pub fn chunk_end_time(&self, i: usize) -> f64 {
        self.chunk_end_sample[i] as f64 / SAMPLE_RATE as f64
    }

    /// The original time of `time` (seconds of concatenated speech), in chunk `chunk` if given.
    pub fn original_time(&self, time: f64, chunk: Option<usize>, is_end: bool) -> f64 {
        if self.chunk_end_sample.is_empty() {
            return time;
        }
        let chunk = chunk.unwrap_or_else(|| self.chunk_index(time, is_end));
        ((self.total_silence_before[chunk] + time) * 100.0).round() / 100.0
    }
}

/// A batch item of the batched `--vad` path: the speech chunks packed into one span of at most
/// `max_speech_duration_s` (30 s), decoded as one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedChunk {
    /// Start of the span, samples of the original audio.
    pub start: usize,
    /// End of the span, samples.
    pub end: usize,
    /// The speech chunks inside, after the edge-padding adjustment.
    pub segments: Vec<(usize, usize)>,
}

/// faster-whisper's `merge_segments`: consecutive speech chunks packed into spans up to
/// `max_speech_duration_s` long. Where padded chunks overlap, the overlap's padding is taken back
/// first, as there.
pub fn merge_segments(chunks: &[SpeechChunk], o: &VadOptions) -> Vec<MergedChunk> {
    if chunks.is_empty() {
        return Vec::new();
    }
    let mut segs: Vec<(i64, i64)> = chunks
        .iter()
        .map(|c| (c.start as i64, c.end as i64))
        .collect();
    let edge_padding = (o.speech_pad_ms as i64 * SAMPLE_RATE as i64) / 1000;
    let chunk_length = f64::from(o.max_speech_duration_s) * SAMPLE_RATE as f64;
    let mut merged = Vec::new();
    let (mut curr_start, mut curr_end) = (segs[0].0, 0i64);
    let mut seg_idxs: Vec<(usize, usize)> = Vec::new();
    for idx in 0..segs.len() {
        if idx > 0 && segs[idx].0 < segs[idx - 1].1 {
            segs[idx].0 += edge_padding;
        }
        if idx + 1 < segs.len() && segs[idx].1 > segs[idx + 1].0 {
            segs[idx].1 -= edge_padding;
        }
        let (start, end) = segs[idx];
        if (end - curr_start) as f64 > chunk_length && curr_end - curr_start > 0 {
            merged.push(MergedChunk {
                start: curr_start as usize,
                end: curr_end as usize,
                segments: std::mem::take(&mut seg_idxs),
            });
            curr_start = start;
        }
        curr_end = end;
        seg_idxs.push((start as usize, end as usize));
    }
    merged.push(MergedChunk {
        start: curr_start as usize,
        end: curr_end as usize,
        segments: seg_idxs,
    });
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: usize, end: usize) -> SpeechChunk {
        SpeechChunk { start, end }
    }

    #[test]
    fn map_puts_times_back_in_the_original_timeline() {
        // Speech 1-2 s and 5-6 s: 1 s removed before the first, 4 s before the second.
        let m = SpeechTimestampsMap::new(&[chunk(16_000, 32_000), chunk(80_000, 96_000)]);
        assert_eq!(m.original_time(0.5, None, false), 1.5);
        assert_eq!(m.original_time(1.5, None, false), 5.5);
        // Exactly at the first chunk's end: the first chunk when it is an end time.
        assert_eq!(m.original_time(1.0, None, true), 2.0);
        assert_eq!(m.original_time(1.0, None, false), 5.0);
    }

    #[test]
    fn merge_packs_chunks_up_to_the_limit() {
        let o = VadOptions::batched(30.0);
        let s = 16_000;
        let merged = merge_segments(
            &[
                chunk(0, 10 * s),
                chunk(12 * s, 25 * s),
                chunk(26 * s, 40 * s),
            ],
            &o,
        );
        assert_eq!(merged.len(), 2);
        assert_eq!((merged[0].start, merged[0].end), (0, 25 * s));
        assert_eq!((merged[1].start, merged[1].end), (26 * s, 40 * s));
    }

    #[test]
    fn options_round_trip_through_json_with_infinity_as_null() {
        let o = VadOptions::default();
        let j = serde_json::to_string(&o).unwrap();
        assert!(j.contains("\"max_speech_duration_s\":null"), "{j}");
        let back: VadOptions = serde_json::from_str(&j).unwrap();
        assert_eq!(back, o);
        let partial: VadOptions = serde_json::from_str(r#"{"threshold":0.6}"#).unwrap();
        assert_eq!(partial.min_silence_duration_ms, 2000);
    }
}
