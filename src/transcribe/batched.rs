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

use std::collections::VecDeque;
use std::time::Instant;

use super::options::{MelPadding, WindowTimings};
use super::seek::FRAME_SECS;
use super::window::{self, options_at, TailPolicy};
use super::{Hooks, Segment, Transcriber, Transcript};
use crate::backend::Backend;
use crate::decode::alignment::Word;
use crate::decode::search::Rng;
use crate::decode::{CancelHandle, DecodeOptions, DecodeStats, DecodingResult, DecodingTask};
use crate::error::{Error, Result};
use crate::mel::{LogMel, HOP_LENGTH, N_FRAMES};
use crate::model::config::ModelConfig;
use crate::tokenizer::WhisperTokenizer;

/// Mel frames searched for a cut before the 30-s limit (the last 10 s of a full chunk): wide
/// enough to find a pause between sentences, not only between words.
pub const CUT_SEARCH_FRAMES: usize = 1000;

/// Width of the quiet stretch a cut is placed in the middle of (150 ms).
pub const CUT_QUIET_FRAMES: usize = 15;

/// A chunk's samples all below this magnitude (one step of 16-bit audio) are digital silence.
const DIGITAL_SILENCE: f32 = 1.0 / 32768.0;

/// A caller's chunk of 16-kHz samples, `start .. end` (at most 30 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRange {
    pub start: usize,
    pub end: usize,
}

/// Mel frames of the caller's sample ranges: each from the frame its first sample falls in to
/// the frame after its last, kept inside the content; empty ones left out.
pub fn chunks_of_ranges(ranges: &[SampleRange], content_frames: usize) -> Result<Vec<Chunk>> {
    let mut chunks = Vec::with_capacity(ranges.len());
    for r in ranges {
        if r.end < r.start {
            return Err(Error::Usage(format!(
                "chunk {}..{}: its end is before its start",
                r.start, r.end
            )));
        }
        let start = (r.start / HOP_LENGTH).min(content_frames);
        let end = r.end.div_ceil(HOP_LENGTH).min(content_frames);
        if end - start > N_FRAMES {
            return Err(Error::Usage(format!(
                "chunk {}..{}: {:.2} s, longer than a 30-s window",
                r.start,
                r.end,
                (r.end - r.start) as f64 / crate::audio::SAMPLE_RATE as f64
            )));
        }
        if end > start {
            chunks.push(Chunk {
                start,
                frames: end - start,
            });
        }
    }
    Ok(chunks)
}

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

/// One window of a lockstep batch: which encoded window of the backend, and its prompt
/// and options (the prompt is the same for every window of one call: see
/// [`decode_windows`]).
///
/// Decode encoded windows `windows` (indices into the backend's last `encode_batch`) together
/// in lockstep with one set of decoding options (prompt included), one result per window; a
/// result equals decoding that window alone (the `Backend` contract). The engine of the
/// batched loop, and of a scheduler that encodes the next window of several requests at once.
/// Windows with different prompts need separate calls: the backends keep one cache length
/// for all sequences of a pass.
#[allow(clippy::too_many_arguments)]
pub fn decode_windows(
    backend: &mut dyn Backend,
    tokenizer: &WhisperTokenizer,
    config: &ModelConfig,
    options: &DecodeOptions,
    windows: &[usize],
    rng: &mut Rng,
    cancel: Option<&CancelHandle>,
    stats: &mut DecodeStats,
) -> Result<Vec<DecodingResult>> {
    let task = DecodingTask::new(tokenizer, config, options)?.with_cancel(cancel.cloned());
    let r = task.run_windows(backend, windows, rng);
    stats.add(&task.stats());
    r
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
    /// The batched loop over `chunks` of `mel` (see the module docs).
    pub(super) fn run_batched(
        &mut self,
        mel: &LogMel,
        chunks: Vec<Chunk>,
        hooks: &mut Hooks<'_>,
        duration: f64,
    ) -> Result<Transcript> {
        let batch_size = self.options.batch_size.max(1);
        let content_frames = mel.content_frames();
        let total_s = content_frames as f64 * FRAME_SECS;
        hooks.check()?;
        // On the first 30 s, as the sequential loop does.
        let (mut decode_opts, language, language_probability, _) =
            self.resolve_language(|| Ok(mel.window(0)))?;
        decode_opts.prompt = self.initial_prompt_tokens()?;
        let temperatures = self.options.temperatures();
        let Some((&first_t, hotter)) = temperatures.split_first() else {
            return Err(Error::Usage("no temperatures to decode with".into()));
        };
        let first_opts = options_at(&decode_opts, first_t);
        let sot = self
            .tokenizer
            .sot_sequence(decode_opts.language.as_deref(), decode_opts.task)?;
        tracing::debug!(
            "{} chunk(s): {:?}",
            chunks.len(),
            chunks.iter().map(|c| c.frames).collect::<Vec<_>>()
        );
        hooks.begin(content_frames);
        // Chunks to decode, in order; continuations (`resume_position`) join at the back.
        let mut pending: VecDeque<Chunk> = chunks.into();
        let input_stride = N_FRAMES / self.config.dims.n_audio_ctx;
        let mut rng = Rng::new(self.options.seed);
        // Segments decoded but not yet final (a continuation may still come before them).
        let mut unsent: Vec<Segment> = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        let tb = self.tokenizer.timestamp_begin;
        let cancel = hooks.cancel.clone();
        let word_timestamps = self.options.word_timestamps;
        while !pending.is_empty() {
            hooks.check()?;
            let batch: Vec<Chunk> = (0..batch_size).map_while(|_| pending.pop_front()).collect();
            let windows: Vec<Vec<f32>> = batch
                .iter()
                .map(|&c| chunk_window(mel, c, MelPadding::Floor))
                .collect();
            let mels: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
            let t = Instant::now();
            self.backend.encode_batch(&mels)?;
            let encoder_ms = t.elapsed().as_secs_f64() * 1e3;
            let cross_kv_ms = super::encode_cross_kv_ms(self.backend.as_mut());

            let mut shared = DecodeStats::default();
            let t = Instant::now();
            let ids: Vec<usize> = (0..batch.len()).collect();
            let mut results = decode_windows(
                self.backend.as_mut(),
                &self.tokenizer,
                &self.config,
                &first_opts,
                &ids,
                &mut rng,
                cancel.as_ref(),
                &mut shared,
            )?;
            let lockstep_ms = t.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(
                "batch of {}: encoder {encoder_ms:.0} ms, lockstep decoding {lockstep_ms:.0} ms",
                batch.len()
            );

            // The batch's shared figures go evenly to its chunks; the call counts to the first.
            let n = batch.len() as f64;
            let mut timings: Vec<WindowTimings> = (0..batch.len())
                .map(|_| WindowTimings {
                    encoder_ms: encoder_ms / n,
                    cross_kv_ms: cross_kv_ms / n,
                    ..WindowTimings::default()
                })
                .collect();
            window::timings_share(&mut timings, &ids, lockstep_ms, &shared);

            let mut model = self.model(cancel.as_ref());
            for (i, (&chunk, result)) in batch.iter().zip(results.iter_mut()).enumerate() {
                if !hotter.is_empty() && window::needs_fallback(model.options, result) {
                    tracing::debug!(
                        "chunk at {:.2} s: compression {:.2}, avg logprob {:.2}: falling back",
                        chunk.start as f64 * FRAME_SECS,
                        result.compression_ratio,
                        result.avg_logprob
                    );
                    let t = Instant::now();
                    *result = model.decode_with_fallback(
                        &decode_opts,
                        hotter,
                        i,
                        &mut rng,
                        &mut timings[i],
                    )?;
                    timings[i].decoder_ms += t.elapsed().as_secs_f64() * 1e3;
                }
                timings[i].tokens = result.tokens.len();
            }

            for (i, (&chunk, result)) in batch.iter().zip(&results).enumerate() {
                let time_offset = chunk.start as f64 * FRAME_SECS;
                if window::is_no_speech(model.options, result) {
                    continue;
                }
                // Mel frame (of the audio) to go on from, as the sequential loop's seek.
                let mut resume =
                    resume_position(&result.tokens, tb).map(|pos| chunk.start + pos * input_stride);
                let mut cut = window::cut_segments(
                    &result.tokens,
                    tb,
                    time_offset,
                    chunk.frames as f64 * FRAME_SECS,
                    TailPolicy::Keep,
                );
                let mut words: Option<Vec<Vec<Word>>> = None;
                if model.options.word_timestamps {
                    // Chunks are decoded out of time order (continuations): each starts from
                    // its own start, as after a pause.
                    let mut last_speech_timestamp = time_offset;
                    let w = model.align_words(
                        i,
                        &sot,
                        &language,
                        &mut cut.segments,
                        time_offset,
                        chunk.frames,
                        &mut last_speech_timestamp,
                        &mut timings[i],
                    )?;
                    if let Some(resume) = resume.as_mut() {
                        // Right after the last word aligned, as the sequential loop resumes.
                        if let Some(after) = window::resume_after_last_word(&w, time_offset) {
                            *resume = after;
                        }
                    }
                    words = Some(w);
                }
                if let Some(resume) = resume.filter(|&r| r > chunk.start) {
                    let end = chunk.start + chunk.frames;
                    if resume < end {
                        tracing::debug!(
                            "chunk at {time_offset:.2} s: continued from {:.2} s",
                            resume as f64 * FRAME_SECS
                        );
                        pending.push_back(Chunk {
                            start: resume,
                            frames: end - resume,
                        });
                    }
                }
                unsent.extend(window::assemble(
                    model.tokenizer,
                    cut.segments,
                    words,
                    result,
                    chunk.start,
                    total_s,
                    0,
                )?);
            }
            self.timings.windows.extend(timings);
            // Continuations come after the chunks decoded with them: back into time order.
            // What starts before every chunk still pending is final.
            unsent.sort_by(|a, b| a.start.total_cmp(&b.start));
            let bound = pending.iter().map(|c| c.start).min();
            let n_final = match bound {
                Some(frame) => {
                    // A segment starts no earlier than its chunk, except that word timestamps
                    // may pull a first word after a pause back by up to twice the median word
                    // (at most 1.4 s).
                    let margin = if word_timestamps { 1.5 } else { 0.0 };
                    let bound_s = frame as f64 * FRAME_SECS - margin;
                    unsent.partition_point(|s| s.start < bound_s)
                }
                None => unsent.len(),
            };
            for mut s in unsent.drain(..n_final) {
                s.id = segments.len();
                hooks.segment(&s);
                segments.push(s);
            }
            let left: usize = pending.iter().map(|c| c.frames).sum();
            hooks.position(content_frames.saturating_sub(left));
        }
        hooks.finish();
        let all_tokens: Vec<u32> = segments
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        Ok(Transcript {
            text: self.tokenizer.decode(&all_tokens)?,
            language,
            language_probability,
            segments,
            duration,
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
}
