//! Batched long-form transcription (`batch_size` > 1), as faster-whisper's
//! `BatchedInferencePipeline` without its neural VAD: the audio is cut up front into chunks of
//! at most 30 s, each cut at the quietest stretch of the few seconds before the 30-s limit, and
//! the chunks are decoded independently, `batch_size` at a time: one `encode_batch` for the
//! batch's windows, then one lockstep decoding pass over all of them
//! (`DecodingTask::run_windows`), every backend call carrying the live sequences of every chunk.
//!
//! Against the sequential seek loop: no conditioning on the previous chunk's text (the initial
//! prompt primes every chunk), and no seek back to the last timestamp: a chunk's text is all
//! kept, a last segment without a closing timestamp ending at the chunk's end. A chunk that
//! fails the thresholds at the first temperature is decoded again alone, on its encoded window,
//! at the following temperatures (the sequential fallback). Chunks of digital silence are
//! skipped. Decoding chunks together gives what decoding each alone gives (the `Backend`
//! contract), so the transcript does not depend on the batch size, only on the chunking.

use std::time::Instant;

use super::{
    decode_with_fallback, needs_fallback, options_at, MelPadding, Metered, Segment, Transcriber,
    Transcript, WindowTimings,
};
use crate::backend::Backend;
use crate::decode::alignment::{self, SegmentSpan, Word};
use crate::decode::search::Rng;
use crate::decode::{self, DecodingResult, DecodingTask, TIME_PRECISION};
use crate::error::{Error, Result};
use crate::mel::{LogMel, HOP_LENGTH, N_FRAMES};

/// Mel frames searched for a cut before the 30-s limit (the last 10 s of a full chunk): wide
/// enough to find a pause between sentences, not only between words.
pub const CUT_SEARCH_FRAMES: usize = 1000;

/// Width of the quiet stretch a cut is placed in the middle of (150 ms).
pub const CUT_QUIET_FRAMES: usize = 15;

/// A chunk's samples all below this magnitude (one step of 16-bit audio) are digital silence.
const DIGITAL_SILENCE: f32 = 1.0 / 32768.0;

/// One chunk of the audio: mel frames (10 ms each) `start .. start + frames`, at most 3000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub frames: usize,
}

/// Cut `content_frames` mel frames of `samples` (16 kHz) into chunks of at most 30 s. Where
/// more than 30 s remain, the cut goes in the middle of the [`CUT_QUIET_FRAMES`] consecutive
/// frames of least energy (sum of squared samples) among the last [`CUT_SEARCH_FRAMES`] frames
/// before the limit; on ties the later stretch (the longer chunk). Chunks of digital silence
/// are left out.
pub fn plan_chunks(samples: &[f32], content_frames: usize) -> Vec<Chunk> {
    let energy: Vec<f64> = (0..content_frames)
        .map(|f| {
            let lo = (f * HOP_LENGTH).min(samples.len());
            let hi = ((f + 1) * HOP_LENGTH).min(samples.len());
            samples[lo..hi]
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum()
        })
        .collect();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < content_frames {
        let end = if content_frames - start <= N_FRAMES {
            content_frames
        } else {
            let (lo, hi) = (start + N_FRAMES - CUT_SEARCH_FRAMES, start + N_FRAMES);
            let mut sum: f64 = energy[lo..lo + CUT_QUIET_FRAMES].iter().sum();
            let (mut best, mut best_sum) = (lo, sum);
            for s in lo + 1..=hi - CUT_QUIET_FRAMES {
                // Recomputed rather than slid, so rounding cannot drift across the search.
                sum = energy[s..s + CUT_QUIET_FRAMES].iter().sum();
                if sum <= best_sum {
                    (best, best_sum) = (s, sum);
                }
            }
            best + CUT_QUIET_FRAMES / 2
        };
        let lo = (start * HOP_LENGTH).min(samples.len());
        let hi = (end * HOP_LENGTH).min(samples.len());
        if samples[lo..hi].iter().any(|x| x.abs() >= DIGITAL_SILENCE) {
            chunks.push(Chunk {
                start,
                frames: end - start,
            });
        }
        start = end;
    }
    chunks
}

/// The `[n_mels, N_FRAMES]` window of `chunk`: its frames, then padding (zeros, as the
/// sequential loop pads its last window, or the spectrogram's floor, read off the appended
/// silence) instead of the next chunk's audio.
pub fn chunk_window(mel: &LogMel, chunk: Chunk, padding: MelPadding) -> Vec<f32> {
    let mut window = mel.window(chunk.start);
    if chunk.frames < N_FRAMES {
        for (m, row) in window.chunks_exact_mut(N_FRAMES).enumerate() {
            let fill = match padding {
                MelPadding::Zeros => 0.0,
                MelPadding::Floor => mel.data[m * mel.n_frames + mel.n_frames - 1],
            };
            row[chunk.frames..].fill(fill);
        }
    }
    window
}

/// A `Backend` whose single-window calls go to one window of a batch: `begin_decode(n)` puts
/// the `n` sequences on it, `cross_attention_weights` reads it. The temperature fallback and
/// word alignment of one chunk run through it, on the batch's encoder output.
struct OnWindow<'a> {
    inner: &'a mut dyn Backend,
    window: usize,
    /// `begin_decode`'s window list, kept to allocate once.
    windows: Vec<usize>,
}

impl Backend for OnWindow<'_> {
    fn dims(&self) -> &crate::model::config::ModelDims {
        self.inner.dims()
    }
    fn device_name(&self) -> String {
        self.inner.device_name()
    }
    fn encode_batch(&mut self, mels: &[&[f32]]) -> Result<()> {
        self.inner.encode_batch(mels)
    }
    fn n_windows(&self) -> usize {
        self.inner.n_windows()
    }
    fn encoder_output(&self) -> Result<Vec<f32>> {
        self.inner.encoder_output()
    }
    fn begin_decode(&mut self, n_seq: usize) -> Result<()> {
        self.windows.clear();
        self.windows.resize(n_seq, self.window);
        self.inner.begin_decode_windows(&self.windows)
    }
    fn begin_decode_windows(&mut self, windows: &[usize]) -> Result<()> {
        self.inner.begin_decode_windows(windows)
    }
    fn cached_len(&self) -> usize {
        self.inner.cached_len()
    }
    fn n_seq(&self) -> usize {
        self.inner.n_seq()
    }
    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        self.inner.decode(tokens, logits)
    }
    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        self.inner.decode_greedy(tokens, suppress)
    }
    fn reorder(&mut self, src: &[usize]) -> Result<()> {
        self.inner.reorder(src)
    }
    fn cross_attention_weights_in(
        &mut self,
        _window: usize,
        tokens: &[u32],
        heads: &[(usize, usize)],
    ) -> Result<Vec<f32>> {
        self.inner
            .cross_attention_weights_in(self.window, tokens, heads)
    }
    fn device_memory_bytes(&self) -> Option<u64> {
        self.inner.device_memory_bytes()
    }
    fn weights_dtype(&self) -> &'static str {
        self.inner.weights_dtype()
    }
}

/// A chunk's segments from its tokens: `(start, end, tokens)` in seconds of the audio. Cuts at
/// every pair of consecutive timestamps (OpenAI's rule); what follows the last pair (a segment
/// the model opened and wrote text in but did not close before end-of-text) is kept too,
/// ending at the chunk's end. Without timestamp pairs, one segment: the chunk, or up to its
/// last timestamp.
fn chunk_segments(
    tokens: &[u32],
    timestamp_begin: u32,
    time_offset: f64,
    duration: f64,
) -> Vec<(f64, f64, Vec<u32>)> {
    let tb = timestamp_begin;
    let time = |t: u32| (t.saturating_sub(tb)) as f64 * TIME_PRECISION as f64;
    let is_ts = |i: usize| tokens[i] >= tb;
    let mut segments = Vec::new();
    let cuts: Vec<usize> = (1..tokens.len())
        .filter(|&i| is_ts(i - 1) && is_ts(i))
        .collect();
    if cuts.is_empty() {
        let end = match tokens.iter().rev().find(|&&t| t >= tb) {
            Some(&last) if last != tb => time(last),
            _ => duration,
        };
        segments.push((time_offset, time_offset + end, tokens.to_vec()));
        return segments;
    }
    let mut last = 0;
    for &cut in &cuts {
        let sliced = &tokens[last..cut];
        let (start, end) = (time(sliced[0]), time(sliced[sliced.len() - 1]));
        segments.push((time_offset + start, time_offset + end, sliced.to_vec()));
        last = cut;
    }
    let rest = &tokens[last..];
    if rest.len() > 1 {
        // Opened by a timestamp (the second of the last pair's neighbours), not closed.
        let start = time(rest[0]).min(duration);
        let (start, end) = match rest.iter().rposition(|&t| t >= tb) {
            Some(i) if i > 0 => (start, time(rest[i]).max(start)),
            _ => (start, duration),
        };
        segments.push((time_offset + start, time_offset + end, rest.to_vec()));
    }
    // The model may place timestamps in the silence that pads the chunk: keep every segment
    // inside the chunk, so that it never overlaps the next one.
    let chunk_end = time_offset + duration;
    for (start, end, _) in &mut segments {
        *start = start.min(chunk_end);
        *end = end.min(chunk_end);
    }
    segments
}

/// Where the model asked to go on: a decode that ends in a timestamp pair opened a segment at
/// the second timestamp that it did not transcribe (the sequential loop seeks there; tiny
/// models do this on dense speech well before 30 s). Its position in timestamp steps, when
/// past the window's start.
fn resume_position(tokens: &[u32], timestamp_begin: u32) -> Option<usize> {
    match tokens {
        [.., a, b] if *a >= timestamp_begin && *b > timestamp_begin => {
            Some((b - timestamp_begin) as usize)
        }
        _ => None,
    }
}

impl Transcriber {
    /// `transcribe_samples` with `batch_size` > 1 (see the module docs).
    pub(super) fn transcribe_batched(
        &mut self,
        samples: &[f32],
        progress: &mut dyn FnMut(f64, f64),
    ) -> Result<Transcript> {
        let start = Instant::now();
        self.timings = Default::default();
        let batch_size = self.options.batch_size.max(1);
        let mel = self.backend.log_mel(samples, self.config.dims.n_mels)?;
        self.timings.mel_ms = start.elapsed().as_secs_f64() * 1e3;
        let content_frames = mel.content_frames();
        let frame_secs = HOP_LENGTH as f64 / crate::audio::SAMPLE_RATE as f64;
        let total_s = content_frames as f64 * frame_secs;

        // On the first 30 s, as the sequential loop does.
        let (mut decode_opts, language, language_probability) = self.resolve_language(&mel)?;
        let initial_prompt_tokens = self.initial_prompt_tokens()?;
        decode_opts.prompt = initial_prompt_tokens;
        let temperatures = self.options.temperatures.clone();
        let Some((&first_t, hotter)) = temperatures.split_first() else {
            return Err(Error::Usage("no temperatures to decode with".into()));
        };
        let first_opts = options_at(&decode_opts, first_t);
        let sot = self
            .tokenizer
            .sot_sequence(decode_opts.language.as_deref(), decode_opts.task)?;

        let chunks = plan_chunks(samples, content_frames);
        tracing::debug!(
            "{} chunk(s): {:?}",
            chunks.len(),
            chunks.iter().map(|c| c.frames).collect::<Vec<_>>()
        );
        // Chunks to decode, in order; continuations (`resume_position`) join at the back.
        let mut pending: std::collections::VecDeque<Chunk> = chunks.into();
        let input_stride = N_FRAMES / self.config.dims.n_audio_ctx;
        let mut rng = Rng::new(self.options.seed);
        let mut segments: Vec<Segment> = Vec::new();
        let tb = self.tokenizer.timestamp_begin;
        while !pending.is_empty() {
            let batch: Vec<Chunk> = (0..batch_size).map_while(|_| pending.pop_front()).collect();
            let windows: Vec<Vec<f32>> = batch
                .iter()
                .map(|&c| chunk_window(&mel, c, MelPadding::Floor))
                .collect();
            let mels: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            let t = Instant::now();
            self.backend.encode_batch(&mels)?;
            let encoder_ms = t.elapsed().as_secs_f64() * 1e3;

            let mut shared = WindowTimings::default();
            let t = Instant::now();
            let task = DecodingTask::new(&self.tokenizer, &self.config, &first_opts)?;
            let ids: Vec<usize> = (0..batch.len()).collect();
            let mut results: Vec<DecodingResult> = {
                let mut metered = Metered {
                    inner: self.backend.as_mut(),
                    t: &mut shared,
                    first: true,
                };
                task.run_windows(&mut metered, &ids, &mut rng)?
            };
            let lockstep_ms = t.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(
                "batch of {}: encoder {encoder_ms:.0} ms, lockstep decoding {lockstep_ms:.0} ms",
                batch.len()
            );

            // The batch's shared figures go evenly to its chunks; the call counts to the first.
            let n = batch.len() as f64;
            let mut timings: Vec<WindowTimings> = (0..batch.len())
                .map(|i| WindowTimings {
                    encoder_ms: encoder_ms / n,
                    decoder_ms: lockstep_ms / n,
                    forward_ms: shared.forward_ms / n,
                    step_ms: shared.step_ms / n,
                    passes: 1,
                    prompt_calls: if i == 0 { shared.prompt_calls } else { 0 },
                    steps: if i == 0 { shared.steps } else { 0 },
                    seq_tokens: if i == 0 { shared.seq_tokens } else { 0 },
                    ..WindowTimings::default()
                })
                .collect();

            for (i, (&chunk, result)) in batch.iter().zip(results.iter_mut()).enumerate() {
                if !hotter.is_empty() && needs_fallback(&self.options, result) {
                    tracing::debug!(
                        "chunk at {:.2} s: compression {:.2}, avg logprob {:.2}: falling back",
                        chunk.start as f64 * frame_secs,
                        result.compression_ratio,
                        result.avg_logprob
                    );
                    let t = Instant::now();
                    let mut on_window = OnWindow {
                        inner: self.backend.as_mut(),
                        window: i,
                        windows: Vec::new(),
                    };
                    *result = decode_with_fallback(
                        &mut on_window,
                        &self.tokenizer,
                        &self.config,
                        &self.options,
                        &decode_opts,
                        hotter,
                        &mut rng,
                        &mut timings[i],
                    )?;
                    timings[i].decoder_ms += t.elapsed().as_secs_f64() * 1e3;
                }
                timings[i].tokens = result.tokens.len();
            }

            for (i, (&chunk, result)) in batch.iter().zip(&results).enumerate() {
                let time_offset = chunk.start as f64 * frame_secs;
                let duration = chunk.frames as f64 * frame_secs;
                if let Some(threshold) = self.options.no_speech_threshold {
                    let confident = self
                        .options
                        .logprob_threshold
                        .is_some_and(|l| result.avg_logprob > l);
                    if result.no_speech_prob > threshold && !confident {
                        continue;
                    }
                }
                // Mel frame (of the audio) to go on from, as the sequential loop's seek.
                let mut resume =
                    resume_position(&result.tokens, tb).map(|pos| chunk.start + pos * input_stride);
                let mut current = chunk_segments(&result.tokens, tb, time_offset, duration);
                let mut words: Vec<Vec<Word>> = vec![Vec::new(); current.len()];
                if self.options.word_timestamps {
                    let mut spans: Vec<SegmentSpan> = current
                        .iter_mut()
                        .zip(words.iter_mut())
                        .map(|((start, end, tokens), words)| SegmentSpan {
                            start,
                            end,
                            tokens,
                            words,
                        })
                        .collect();
                    let t = Instant::now();
                    let mut on_window = OnWindow {
                        inner: self.backend.as_mut(),
                        window: i,
                        windows: Vec::new(),
                    };
                    // Chunks are decoded out of time order (continuations): each starts from
                    // its own start, as after a pause.
                    let mut last_speech_timestamp = time_offset;
                    alignment::add_word_timestamps(
                        &mut on_window,
                        &self.tokenizer,
                        &self.config,
                        &sot,
                        &mut spans,
                        time_offset,
                        chunk.frames,
                        &language,
                        &mut last_speech_timestamp,
                    )?;
                    timings[i].align_ms = t.elapsed().as_secs_f64() * 1e3;
                    if let Some(resume) = resume.as_mut() {
                        // Right after the last word aligned, as the sequential loop resumes.
                        if let Some(end) = words.iter().rev().find_map(|w| w.last()).map(|w| w.end)
                        {
                            if end > time_offset {
                                *resume = (end * 100.0).round() as usize;
                            }
                        }
                    }
                }
                if let Some(resume) = resume.filter(|&r| r > chunk.start) {
                    let end = chunk.start + chunk.frames;
                    if resume < end {
                        tracing::debug!(
                            "chunk at {time_offset:.2} s: continued from {:.2} s",
                            resume as f64 * frame_secs
                        );
                        pending.push_back(Chunk {
                            start: resume,
                            frames: end - resume,
                        });
                    }
                }
                for ((start, end, seg_tokens), words) in current.into_iter().zip(words) {
                    let text = self.tokenizer.decode(&seg_tokens)?;
                    // An instantaneous or empty segment carries nothing.
                    if start == end || text.trim().is_empty() {
                        continue;
                    }
                    segments.push(Segment {
                        id: 0,
                        seek: chunk.start,
                        start: decode::round2(start),
                        end: decode::round2(end.min(total_s.max(start))),
                        text,
                        tokens: seg_tokens,
                        temperature: result.temperature,
                        avg_logprob: result.avg_logprob,
                        compression_ratio: result.compression_ratio,
                        no_speech_prob: result.no_speech_prob,
                        words: self.options.word_timestamps.then_some(words),
                    });
                }
            }
            self.timings.windows.extend(timings);
            let left: usize = pending.iter().map(|c| c.frames).sum();
            progress(
                content_frames.saturating_sub(left) as f64 * frame_secs,
                total_s,
            );
        }
        // Continuations come after the chunks decoded with them: back into time order.
        segments.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut all_tokens: Vec<u32> = Vec::new();
        for (id, s) in segments.iter_mut().enumerate() {
            s.id = id;
            all_tokens.extend(s.tokens.iter().copied());
        }
        let text = self.tokenizer.decode(&all_tokens)?;
        self.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(Transcript {
            text,
            language,
            language_probability,
            segments,
            duration: samples.len() as f64 / crate::audio::SAMPLE_RATE as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_audio_is_one_chunk_and_silence_none() {
        let samples = vec![0.1f32; 16_000 * 5];
        assert_eq!(
            plan_chunks(&samples, 500),
            vec![Chunk {
                start: 0,
                frames: 500
            }]
        );
        assert!(plan_chunks(&vec![0.0f32; 16_000 * 5], 500).is_empty());
        assert!(plan_chunks(&[], 0).is_empty());
    }

    #[test]
    fn cuts_go_in_the_quietest_stretch_before_30_s() {
        // 70 s of loud noise with quiet gaps at 27 s and 55 s (frames 2700 and 5500).
        let n = 16_000 * 70;
        let mut samples: Vec<f32> = (0..n)
            .map(|i| if (i / 7) % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        for gap_s in [27.0f64, 55.0] {
            let at = (gap_s * 16_000.0) as usize;
            samples[at..at + 3_200].fill(0.0);
        }
        let chunks = plan_chunks(&samples, n / HOP_LENGTH);
        let starts: Vec<usize> = chunks.iter().map(|c| c.start).collect();
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        // Each cut in the middle of the latest all-quiet 15-frame stretch of its gap (frames
        // 2700..2720 -> stretch 2705..2720 -> cut at 2712).
        assert_eq!(starts, vec![0, 2712, 5512]);
        assert!(chunks.iter().all(|c| c.frames <= N_FRAMES));
        assert_eq!(
            chunks.iter().map(|c| c.frames).sum::<usize>(),
            n / HOP_LENGTH
        );
    }

    #[test]
    fn without_quiet_the_cut_still_comes_before_30_s() {
        let n = 16_000 * 65;
        let samples: Vec<f32> = (0..n).map(|i| ((i % 100) as f32 / 100.0) - 0.5).collect();
        let chunks = plan_chunks(&samples, n / HOP_LENGTH);
        assert!(chunks.iter().all(|c| c.frames <= N_FRAMES && c.frames > 0));
        assert_eq!(
            chunks.iter().map(|c| c.frames).sum::<usize>(),
            n / HOP_LENGTH
        );
        assert!(chunks[0].frames >= N_FRAMES - CUT_SEARCH_FRAMES);
    }

    #[test]
    fn segments_keep_the_unclosed_tail() {
        let tb = 1000;
        // Segment times to the centisecond, as the transcript reports them.
        let times = |s: &(f64, f64, Vec<u32>)| (decode::round2(s.0), decode::round2(s.1));
        // <0.00> a b <1.00> <1.00> c d  (no closing timestamp)
        let tokens = [tb, 1, 2, tb + 50, tb + 50, 3, 4];
        let segs = chunk_segments(&tokens, tb, 10.0, 20.0);
        assert_eq!(segs.len(), 2);
        assert_eq!(times(&segs[0]), (10.0, 11.0));
        assert_eq!(times(&segs[1]), (11.0, 30.0));
        assert_eq!(segs[1].2, vec![tb + 50, 3, 4]);
        // Closed by a single timestamp: no tail beyond it.
        let tokens = [tb, 1, tb + 50, tb + 50, 3, tb + 100];
        let segs = chunk_segments(&tokens, tb, 0.0, 20.0);
        assert_eq!(segs.len(), 2);
        assert_eq!(times(&segs[1]), (1.0, 2.0));
        // No pair: the whole chunk, or up to the last timestamp.
        let segs = chunk_segments(&[tb, 1, 2], tb, 5.0, 20.0);
        assert_eq!(times(&segs[0]), (5.0, 25.0));
        let segs = chunk_segments(&[tb, 1, 2, tb + 25], tb, 5.0, 20.0);
        assert_eq!(times(&segs[0]), (5.0, 5.5));
        // Timestamps past the chunk's end (in its padding) are cut back to it.
        let segs = chunk_segments(&[tb, 1, tb + 150, tb + 150, 2, tb + 300], tb, 0.0, 4.0);
        assert_eq!(times(&segs[0]), (0.0, 3.0));
        assert_eq!(times(&segs[1]), (3.0, 4.0));
    }
}
