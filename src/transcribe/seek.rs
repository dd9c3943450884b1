//! OpenAI's sequential seek loop as a state machine: `next_window` says which 30-s window to
//! encode next (with its prompt), `finish_window` takes that window's decoding result and
//! advances. The driver (`Transcriber::step_windows`) encodes and decodes in between, and can
//! take the next window of several loops (several requests) and encode them together.

use crate::decode::alignment::Word;
use crate::decode::search::Rng;
use crate::decode::{DecodeOptions, DecodingResult};
use crate::error::Result;
use crate::mel::{MelSource, HOP_LENGTH, N_FRAMES};

use super::options::{MelPadding, WindowTimings};
use super::window::{self, Model, TailPolicy};
use super::Segment;

/// Seconds per mel frame.
pub(crate) const FRAME_SECS: f64 = HOP_LENGTH as f64 / crate::audio::SAMPLE_RATE as f64;

/// The next window to encode and decode.
pub struct WindowRequest {
    /// First mel frame of the window.
    pub seek: usize,
    /// Frames of real audio in it (at most 3000).
    pub frames: usize,
    /// The window's mel, padded to 3000 frames.
    pub mel: Vec<f32>,
    /// The backend may still hold it encoded (language detection encoded window 0 unpadded):
    /// a driver of this loop alone need not encode it again.
    pub encoded: bool,
    /// The decoding options of this window (its prompt: the previous windows' text).
    pub decode: DecodeOptions,
}

/// One transcription's sequential loop: where it is, the prompt, the segments so far. Made by
/// `Transcriber::begin_seek`, advanced by `Transcriber::step_windows`, ended by
/// `Transcriber::finish_seek`.
pub struct SeekLoop {
    /// The sampler's generator at temperatures above 0, seeded per transcription.
    rng: Rng,
    language_probability: Option<f32>,
    duration: f64,
    seek: usize,
    content_frames: usize,
    /// Encoder frames per timestamp step: 3000 mel frames -> `n_audio_ctx` positions.
    input_stride: usize,
    padding: MelPadding,
    decode: DecodeOptions,
    language: String,
    /// `<|startoftranscript|>` and what follows it, for word alignment.
    sot: Vec<u32>,
    condition_on_previous_text: bool,
    all_tokens: Vec<u32>,
    initial_prompt_len: usize,
    prompt_reset_since: usize,
    segments: Vec<Segment>,
    last_speech_timestamp: f64,
    /// The window the backend holds encoded, and its mel when the source gave it already.
    encoded: Option<(usize, Vec<f32>)>,
    /// What a window's unfinished tail becomes ([`keep_tails`](Self::keep_tails)).
    tail: TailPolicy,
}

impl SeekLoop {
    /// A loop over `content_frames` frames; `encoded` is window 0's mel when language
    /// detection left it encoded in the backend.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        content_frames: usize,
        n_audio_ctx: usize,
        padding: MelPadding,
        decode: DecodeOptions,
        language: String,
        sot: Vec<u32>,
        condition_on_previous_text: bool,
        initial_prompt: Vec<u32>,
        encoded: Option<Vec<f32>>,
        seed: u64,
    ) -> Self {
        SeekLoop {
            rng: Rng::new(seed),
            language_probability: None,
            duration: content_frames as f64 / 100.0,
            seek: 0,
            content_frames,
            input_stride: N_FRAMES / n_audio_ctx,
            padding,
            decode,
            language,
            sot,
            condition_on_previous_text,
            initial_prompt_len: initial_prompt.len(),
            all_tokens: initial_prompt,
            prompt_reset_since: 0,
            segments: Vec::new(),
            last_speech_timestamp: 0.0,
            encoded: encoded.map(|m| (0, m)),
            tail: TailPolicy::Redecode,
        }
    }

    /// Keep each window's unfinished tail as a segment and move on by the whole window (the
    /// batched loop's rule) instead of decoding the tail again: a live step's audio (at most
    /// 30 s) is then one window, and the next step sees the tail anyway.
    pub fn keep_tails(&mut self) {
        self.tail = TailPolicy::Keep;
    }

    /// Frames transcribed so far.
    pub fn position(&self) -> usize {
        self.seek.min(self.content_frames)
    }

    pub fn content_frames(&self) -> usize {
        self.content_frames
    }

    /// The language decoded in (given, or detected on the first window).
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The next window, or `None` when the audio is done.
    pub(crate) fn next_window(&mut self, src: &mut dyn MelSource) -> Result<Option<WindowRequest>> {
        if self.seek >= self.content_frames {
            return Ok(None);
        }
        let seek = self.seek;
        let frames = N_FRAMES.min(self.content_frames - seek);
        let zero_padded = frames < N_FRAMES && self.padding == MelPadding::Zeros;
        let held = match self.encoded.take() {
            Some((s, mel)) if s == seek => Some(mel),
            _ => None,
        };
        // Language detection encoded this very window, unpadded: still right unless the
        // window is to be zero-padded.
        let encoded = held.is_some() && !zero_padded;
        let mut mel = match held {
            Some(mel) => mel,
            None => src.window(seek)?,
        };
        if zero_padded {
            zero_pad(&mut mel, frames);
        }
        let mut decode = self.decode.clone();
        decode.prompt = self.all_tokens[self.prompt_reset_since..].to_vec();
        Ok(Some(WindowRequest {
            seek,
            frames,
            mel,
            encoded,
            decode,
        }))
    }

    /// Take the decoding `result` of `request` (encoded as window `window` of the backend's
    /// batch), cut and align its segments, advance. Returns the segments that became final.
    pub(crate) fn finish_window(
        &mut self,
        model: &mut Model<'_>,
        window: usize,
        request: &WindowRequest,
        result: &DecodingResult,
        timings: &mut WindowTimings,
    ) -> Result<&[Segment]> {
        let first_new = self.segments.len();
        let time_offset = request.seek as f64 * FRAME_SECS;
        let total_s = self.content_frames as f64 * FRAME_SECS;
        if window::is_no_speech(model.options, result) {
            self.seek += request.frames;
            return Ok(&self.segments[first_new..]);
        }
        let mut cut = window::cut_segments(
            &result.tokens,
            model.tokenizer.timestamp_begin,
            time_offset,
            request.frames as f64 * FRAME_SECS,
            self.tail,
        );
        self.seek += match cut.redecode_from {
            Some(pos) => pos * self.input_stride,
            None => request.frames,
        };
        let mut words: Option<Vec<Vec<Word>>> = None;
        if model.options.word_timestamps {
            let w = model.align_words(
                window,
                &self.sot,
                &self.language,
                &mut cut.segments,
                time_offset,
                request.frames,
                &mut self.last_speech_timestamp,
                timings,
            )?;
            if !cut.single_timestamp_ending && self.tail == TailPolicy::Redecode {
                if let Some(resume) = window::resume_after_last_word(&w, time_offset) {
                    self.seek = resume;
                }
            }
            words = Some(w);
        }
        let new = window::assemble(
            model.tokenizer,
            cut.segments,
            words,
            result,
            request.seek,
            total_s,
            first_new,
        )?;
        for s in &new {
            self.all_tokens.extend_from_slice(&s.tokens);
        }
        self.segments.extend(new);
        if !self.condition_on_previous_text || result.temperature > 0.5 {
            // A hot decode is not a trustworthy prompt for the next window.
            self.prompt_reset_since = self.all_tokens.len();
        }
        Ok(&self.segments[first_new..])
    }

    /// The segments, and the tokens of the whole text (the initial prompt left out).
    pub(crate) fn into_parts(self) -> (Vec<Segment>, Vec<u32>) {
        let text_tokens = self.all_tokens[self.initial_prompt_len..].to_vec();
        (self.segments, text_tokens)
    }

    pub(crate) fn set_origin(&mut self, language_probability: Option<f32>, duration: f64) {
        self.language_probability = language_probability;
        self.duration = duration;
    }

    pub(crate) fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub(crate) fn origin(&self) -> (Option<f32>, f64) {
        (self.language_probability, self.duration)
    }

    /// Whether the audio is done.
    pub fn is_done(&self) -> bool {
        self.seek >= self.content_frames
    }

    /// Forget that the backend holds this loop's next window encoded (language detection left
    /// it so): a driver that ran the backend on other work since `begin_seek` calls this, and
    /// the window is then encoded again with the next step.
    pub fn forget_encoded(&mut self) {
        self.encoded = None;
    }

    /// The segments final so far.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

/// Zeros past the window's `frames` frames of content, in every mel row.
fn zero_pad(mel: &mut [f32], frames: usize) {
    for row in mel.chunks_exact_mut(N_FRAMES) {
        row[frames..].fill(0.0);
    }
}
