//! One window's result, the same way for the sequential seek loop and the batched loop: decode
//! with temperature fallback, the no-speech rule, segments cut at timestamp pairs, word
//! timestamps (and where to resume after the last word), segment assembly. The loops differ
//! only in what they do with a window's unfinished tail (see `TailPolicy`).

use std::time::Instant;

use super::options::{TranscribeOptions, WindowTimings};
use super::Segment;
use crate::backend::Backend;
use crate::decode::alignment::{self, SegmentSpan, Word};
use crate::decode::search::Rng;
use crate::decode::TIME_PRECISION;
use crate::decode::{self, CancelHandle, DecodeOptions, DecodeStats, DecodingResult, DecodingTask};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::tokenizer::WhisperTokenizer;

/// What a transcription loop needs of the loaded model for one window.
pub(crate) struct Model<'a> {
    pub backend: &'a mut (dyn Backend + Send),
    pub tokenizer: &'a WhisperTokenizer,
    pub config: &'a ModelConfig,
    pub options: &'a TranscribeOptions,
    pub cancel: Option<&'a CancelHandle>,
}

/// `decode` at temperature `t`: beam search only at 0, best-of sampling only above.
pub(crate) fn options_at(decode: &DecodeOptions, t: f32) -> DecodeOptions {
    let mut opts = decode.clone();
    opts.temperature = t;
    if t > 0.0 {
        opts.beam_size = None;
        opts.patience = None;
    } else {
        opts.best_of = None;
    }
    opts
}

/// The no-speech rule (OpenAI's): `<|nospeech|>` likelier than the threshold, and the text not
/// confidently likely (average log-probability not above the log-probability threshold).
pub(crate) fn is_no_speech(o: &TranscribeOptions, r: &DecodingResult) -> bool {
    let likely_silent = o.no_speech_threshold.is_some_and(|n| r.no_speech_prob > n);
    let confident = o.logprob_threshold.is_some_and(|l| r.avg_logprob > l);
    likely_silent && !confident
}

/// Whether a decode failed the thresholds and is retried at the next temperature: too
/// repetitive or too unlikely, unless it is silence (which is skipped, not retried).
pub(crate) fn needs_fallback(o: &TranscribeOptions, r: &DecodingResult) -> bool {
    let too_repetitive = o
        .compression_ratio_threshold
        .is_some_and(|c| r.compression_ratio > c);
    let too_unlikely = o.logprob_threshold.is_some_and(|l| r.avg_logprob < l);
    (too_repetitive || too_unlikely) && !(too_unlikely && is_no_speech(o, r))
}

impl Model<'_> {
    /// Decode encoded window `window` at each of `temperatures` in turn until a result passes
    /// the thresholds (OpenAI's `decode_with_fallback`); the last result otherwise.
    pub fn decode_with_fallback(
        &mut self,
        decode: &DecodeOptions,
        temperatures: &[f32],
        window: usize,
        rng: &mut Rng,
        timings: &mut WindowTimings,
    ) -> Result<DecodingResult> {
        let mut result = None;
        for (step, &t) in temperatures.iter().enumerate() {
            let opts = options_at(decode, t);
            timings.passes += 1;
            let task = DecodingTask::new(self.tokenizer, self.config, &opts)?
                .on_window(window)
                .with_cancel(self.cancel.cloned());
            let r = task.run(self.backend, rng);
            timings.add_stats(&task.stats());
            let r = r?;
            let retry = self.falls_back(t, &r, step + 1 < temperatures.len());
            result = Some(r);
            if !retry {
                break;
            }
        }
        result.ok_or_else(|| Error::Usage("no temperatures to decode with".into()))
    }

    /// Whether `r`, decoded at temperature `t`, fails the thresholds; logged when a hotter
    /// temperature follows.
    fn falls_back(&self, t: f32, r: &DecodingResult, hotter_follows: bool) -> bool {
        let retry = needs_fallback(self.options, r);
        if retry && hotter_follows {
            tracing::debug!(
                "temperature {t}: compression {:.2}, avg logprob {:.2}: falling back",
                r.compression_ratio,
                r.avg_logprob
            );
        }
        retry
    }

    /// [`decode_with_fallback`](Self::decode_with_fallback) of several encoded windows at once
    /// (`decodes[w]`: the options of the backend's window `w`), temperature by temperature:
    /// the windows that need a temperature (all at the first, those that failed the thresholds
    /// at the next ones) are decoded in one lockstep pass per set of equal options (prompt
    /// included; a window alone as `decode_with_fallback` does), each drawing from its own
    /// sampler `rngs[w]`. Each result is therefore what the window's own `decode_with_fallback`
    /// gives (the `Backend` contract), while the retries of several requests share their
    /// backend calls. A group's time and counts go evenly to its windows (the call counts to the
    /// first).
    pub fn decode_together_with_fallback(
        &mut self,
        decodes: &[&DecodeOptions],
        temperatures: &[f32],
        rngs: &mut [Rng],
        timings: &mut [WindowTimings],
    ) -> Result<Vec<DecodingResult>> {
        let n = decodes.len();
        let mut results: Vec<Option<DecodingResult>> = vec![None; n];
        // Every window at the first temperature, then those that failed at the one before.
        let mut retry = vec![true; n];
        for (step, &t) in temperatures.iter().enumerate() {
            let todo: Vec<usize> = (0..n).filter(|&w| retry[w]).collect();
            for group in groups_of_equal(&todo, |a, b| decodes[a] == decodes[b]) {
                let opts = options_at(decodes[group[0]], t);
                let task = DecodingTask::new(self.tokenizer, self.config, &opts)?
                    .on_window(group[0])
                    .with_cancel(self.cancel.cloned());
                let start = Instant::now();
                let decoded = if let [w] = group[..] {
                    task.run(self.backend, &mut rngs[w]).map(|r| vec![r])
                } else {
                    let mut own: Vec<Rng> = group.iter().map(|&w| rngs[w].clone()).collect();
                    let r = task.run_windows_each(self.backend, &group, &mut own);
                    for (&w, rng) in group.iter().zip(own) {
                        rngs[w] = rng;
                    }
                    r
                };
                let ms = start.elapsed().as_secs_f64() * 1e3;
                timings_share(timings, &group, ms, &task.stats());
                for (&w, r) in group.iter().zip(decoded?) {
                    retry[w] = self.falls_back(t, &r, step + 1 < temperatures.len());
                    results[w] = Some(r);
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::Usage("no temperatures to decode with".into())))
            .collect()
    }

    /// Word timestamps of a window's segments (encoded as `window` of the backend's batch),
    /// moving the segments' bounds to their words as OpenAI does. Returns each segment's words.
    #[allow(clippy::too_many_arguments)]
    pub fn align_words(
        &mut self,
        window: usize,
        sot: &[u32],
        language: &str,
        segments: &mut [RawSegment],
        time_offset: f64,
        frames: usize,
        last_speech_timestamp: &mut f64,
        timings: &mut WindowTimings,
    ) -> Result<Vec<Vec<Word>>> {
        let mut words: Vec<Vec<Word>> = vec![Vec::new(); segments.len()];
        let mut spans: Vec<SegmentSpan> = segments
            .iter_mut()
            .zip(words.iter_mut())
            .map(|(s, words)| SegmentSpan {
                start: &mut s.start,
                end: &mut s.end,
                tokens: &s.tokens,
                words,
            })
            .collect();
        let t = Instant::now();
        alignment::add_word_timestamps(
            self.backend,
            window,
            self.tokenizer,
            self.config,
            sot,
            &mut spans,
            time_offset,
            frames,
            language,
            last_speech_timestamp,
        )?;
        timings.align_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(words)
    }
}

/// `items` in groups of equal ones (by `eq`), each group in the order of `items`, the groups
/// in the order of their first items.
pub(crate) fn groups_of_equal(
    items: &[usize],
    eq: impl Fn(usize, usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &w in items {
        match groups.iter_mut().find(|g| eq(g[0], w)) {
            Some(g) => g.push(w),
            None => groups.push(vec![w]),
        }
    }
    groups
}

/// One decoding pass of the windows `group` took `ms` with `stats`: evenly to their timings,
/// the call counts to the first.
pub(crate) fn timings_share(
    timings: &mut [WindowTimings],
    group: &[usize],
    ms: f64,
    stats: &DecodeStats,
) {
    let n = group.len() as f64;
    for (k, &w) in group.iter().enumerate() {
        let wt = &mut timings[w];
        wt.decoder_ms += ms / n;
        wt.forward_ms += stats.forward_ms / n;
        wt.step_ms += stats.step_ms / n;
        wt.passes += 1;
        if k == 0 {
            wt.prompt_calls += stats.prompt_calls;
            wt.steps += stats.steps;
            wt.seq_tokens += stats.seq_tokens;
        }
    }
}

/// A segment cut from a window's tokens: seconds of the audio, and its tokens.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSegment {
    pub start: f64,
    pub end: f64,
    pub tokens: Vec<u32>,
}

/// What to do with the text after a window's last timestamp pair that no timestamp closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailPolicy {
    /// Drop it and decode it again from its opening timestamp in the next window (OpenAI's
    /// seek loop).
    Redecode,
    /// Keep it as a segment ending at the window's content end (the batched loop, whose chunks
    /// are fixed up front), and clamp every segment inside the window's content.
    Keep,
}

/// A window's segments and where its text stops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CutWindow {
    pub segments: Vec<RawSegment>,
    /// The decode ended in a single timestamp after text: nothing unfinished follows.
    pub single_timestamp_ending: bool,
    /// With [`TailPolicy::Redecode`] and an unfinished tail: the timestamp (in steps from the
    /// window's start) it opened at, where the next window starts.
    pub redecode_from: Option<usize>,
}

/// Cut a window's tokens into segments at every pair of consecutive timestamps (OpenAI's
/// rule). `time_offset` is the window's start, `duration` its content (seconds). Without a
/// pair, one segment: the window's content, or up to its last timestamp.
pub(crate) fn cut_segments(
    tokens: &[u32],
    timestamp_begin: u32,
    time_offset: f64,
    duration: f64,
    tail: TailPolicy,
) -> CutWindow {
    let tb = timestamp_begin;
    let time = |t: u32| (t.saturating_sub(tb)) as f64 * TIME_PRECISION as f64;
    let is_ts = |i: usize| tokens[i] >= tb;
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_ts(n - 2) && is_ts(n - 1);
    let cuts: Vec<usize> = (1..n).filter(|&i| is_ts(i - 1) && is_ts(i)).collect();
    let segment = |start: f64, end: f64, tokens: &[u32]| RawSegment {
        start: time_offset + start,
        end: time_offset + end,
        tokens: tokens.to_vec(),
    };
    if cuts.is_empty() {
        let end = match tokens.iter().rev().find(|&&t| t >= tb) {
            Some(&last) if last != tb => time(last),
            _ => duration,
        };
        return CutWindow {
            segments: vec![segment(0.0, end, tokens)],
            single_timestamp_ending,
            redecode_from: None,
        };
    }
    let mut segments = Vec::new();
    let mut last = 0;
    for &cut in &cuts {
        let sliced = &tokens[last..cut];
        segments.push(segment(
            time(sliced[0]),
            time(sliced[sliced.len() - 1]),
            sliced,
        ));
        last = cut;
    }
    let rest = &tokens[last..];
    let mut redecode_from = None;
    match tail {
        TailPolicy::Redecode if single_timestamp_ending => {
            segments.push(segment(time(rest[0]), time(rest[rest.len() - 1]), rest));
        }
        TailPolicy::Redecode => redecode_from = Some((tokens[last - 1] - tb) as usize),
        TailPolicy::Keep => {
            if rest.len() > 1 {
                // Opened by a timestamp (the second of the last pair's neighbours).
                let start = time(rest[0]).min(duration);
                let end = match rest.iter().rposition(|&t| t >= tb) {
                    Some(i) if i > 0 => time(rest[i]).max(start),
                    _ => duration,
                };
                segments.push(segment(start, end, rest));
            }
            // The model may place timestamps in the silence that pads the window: keep every
            // segment inside the content, so that it never overlaps the next chunk.
            let content_end = time_offset + duration;
            for s in &mut segments {
                s.start = s.start.min(content_end);
                s.end = s.end.min(content_end);
            }
        }
    }
    CutWindow {
        segments,
        single_timestamp_ending,
        redecode_from,
    }
}

/// Mel frame right after the last aligned word, when it ends past the window's start: where
/// the next window starts when the words say the text went further than the timestamps.
pub(crate) fn resume_after_last_word(words: &[Vec<Word>], time_offset: f64) -> Option<usize> {
    let end = words.iter().rev().find_map(|w| w.last()).map(|w| w.end)?;
    (end > time_offset).then(|| (end * 100.0).round() as usize)
}

/// The window's transcript segments: each raw segment with its text and the window's decode
/// figures, leaving out instantaneous or empty ones. Ends are kept inside the audio
/// (`total_s`); ids are numbered on from `first_id`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    tokenizer: &WhisperTokenizer,
    raw: Vec<RawSegment>,
    words: Option<Vec<Vec<Word>>>,
    result: &DecodingResult,
    seek: usize,
    total_s: f64,
    first_id: usize,
) -> Result<Vec<Segment>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut words = words.map(Vec::into_iter);
    for s in raw {
        let w = words.as_mut().map(|w| w.next().unwrap_or_default());
        let text = tokenizer.decode(&s.tokens)?;
        // An instantaneous or empty segment carries nothing.
        if s.start == s.end || text.trim().is_empty() {
            continue;
        }
        out.push(Segment {
            id: first_id + out.len(),
            seek,
            start: decode::round2(s.start),
            end: decode::round2(s.end.min(total_s.max(s.start))),
            text,
            tokens: s.tokens,
            temperature: result.temperature,
            avg_logprob: result.avg_logprob,
            compression_ratio: result.compression_ratio,
            no_speech_prob: result.no_speech_prob,
            words: w,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(c: &CutWindow) -> Vec<(f64, f64)> {
        c.segments
            .iter()
            .map(|s| (decode::round2(s.start), decode::round2(s.end)))
            .collect()
    }

    #[test]
    fn kept_tails_end_at_the_content() {
        let tb = 1000;
        let keep = TailPolicy::Keep;
        // <0.00> a b <1.00> <1.00> c d  (no closing timestamp)
        let c = cut_segments(&[tb, 1, 2, tb + 50, tb + 50, 3, 4], tb, 10.0, 20.0, keep);
        assert_eq!(times(&c), vec![(10.0, 11.0), (11.0, 30.0)]);
        assert_eq!(c.segments[1].tokens, vec![tb + 50, 3, 4]);
        // Closed by a single timestamp: no tail beyond it.
        let c = cut_segments(&[tb, 1, tb + 50, tb + 50, 3, tb + 100], tb, 0.0, 20.0, keep);
        assert_eq!(times(&c), vec![(0.0, 1.0), (1.0, 2.0)]);
        // No pair: the whole chunk, or up to the last timestamp.
        let c = cut_segments(&[tb, 1, 2], tb, 5.0, 20.0, keep);
        assert_eq!(times(&c), vec![(5.0, 25.0)]);
        let c = cut_segments(&[tb, 1, 2, tb + 25], tb, 5.0, 20.0, keep);
        assert_eq!(times(&c), vec![(5.0, 5.5)]);
        // Timestamps past the chunk's end (in its padding) are cut back to it.
        let c = cut_segments(
            &[tb, 1, tb + 150, tb + 150, 2, tb + 300],
            tb,
            0.0,
            4.0,
            keep,
        );
        assert_eq!(times(&c), vec![(0.0, 3.0), (3.0, 4.0)]);
    }

    #[test]
    fn redecoded_tails_move_the_seek() {
        let tb = 1000;
        let cut =
            |tokens: &[u32], offset| cut_segments(tokens, tb, offset, 20.0, TailPolicy::Redecode);
        let c = cut(&[tb, 1, 2, tb + 50, tb + 50, 3, 4], 10.0);
        assert_eq!(times(&c), vec![(10.0, 11.0)]);
        assert_eq!(c.redecode_from, Some(50));
        assert!(!c.single_timestamp_ending);
        let c = cut(&[tb, 1, tb + 50, tb + 50, 3, tb + 100], 0.0);
        assert_eq!(times(&c), vec![(0.0, 1.0), (1.0, 2.0)]);
        assert_eq!(c.redecode_from, None);
        assert!(c.single_timestamp_ending);
    }

    #[test]
    fn the_no_speech_rule() {
        let o = TranscribeOptions::default();
        let r = |no_speech_prob: f32, avg_logprob: f32| DecodingResult {
            tokens: vec![],
            text: String::new(),
            avg_logprob,
            sum_logprob: 0.0,
            no_speech_prob,
            temperature: 0.0,
            compression_ratio: 1.0,
        };
        assert!(is_no_speech(&o, &r(0.9, -2.0)));
        // Confident text despite the no-speech probability is kept.
        assert!(!is_no_speech(&o, &r(0.9, -0.5)));
        assert!(!is_no_speech(&o, &r(0.1, -2.0)));
        // Unlikely text that is silence is skipped, not retried hotter.
        assert!(!needs_fallback(&o, &r(0.9, -2.0)));
        assert!(needs_fallback(&o, &r(0.1, -2.0)));
    }
}
