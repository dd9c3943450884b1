//! Live transcription: text that appears while audio arrives.
//!
//! The policy ([`LocalAgreement`], ufal whisper_streaming's LocalAgreement-2) owns no model: it
//! buffers audio, says when a step is due, hands out a [`StepRequest`] (the samples to transcribe,
//! their stream time and the prompt), and turns the step's [`Transcript`] into [`StreamEvent`]s.
//! Whoever owns the model runs the steps: [`LiveSession`] on a `&mut Transcriber` (the CLI, library
//! users), the server on its device worker. Committed events are append-only: their texts, in
//! order, concatenate to the final [`StreamEvent::Done`] text.

mod agreement;

use serde::{Deserialize, Serialize};

pub use agreement::LocalAgreement;

use crate::audio::SAMPLE_RATE;
use crate::decode::alignment::Word;
use crate::error::{Error, Result};
use crate::transcribe::{Hooks, SampleRange, TranscribeOptions, Transcriber, Transcript};

/// Steps [`LiveSession::finish`] runs at most on the audio left at the end.
const MAX_FINAL_STEPS: usize = 4;

/// How a stream is cut into steps and when its buffer is trimmed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Minimum new audio between two steps, milliseconds.
    pub step_ms: u32,
    /// Emit [`StreamEvent::Partial`] for the unconfirmed tail after each step.
    pub partials: bool,
    /// Once the buffer is longer than this (seconds), cut it at the end of the last segment
    /// whose words are all committed (whisper_streaming's "segment" trimming; its default 15 s).
    pub trim_after_s: f32,
    /// Most audio kept, seconds (at most 30: one Whisper window). Bounds memory and step cost;
    /// a buffer about to pass it commits what it has and drops the oldest audio.
    pub max_buffer_s: f32,
    /// Word timings in [`StreamEvent::Committed`].
    pub words: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            step_ms: 1000,
            partials: false,
            trim_after_s: 15.0,
            max_buffer_s: 30.0,
            words: false,
        }
    }
}

impl StreamConfig {
    /// Reject settings no stream can run with (a client's config message, CLI flags).
    pub fn validate(&self) -> Result<()> {
        if !(100..=30_000).contains(&self.step_ms) {
            return Err(Error::Usage(format!(
                "step must be 100 to 30000 ms, not {}",
                self.step_ms
            )));
        }
        let max = self.max_buffer_s;
        if !(max.is_finite() && max > 0.0 && max <= 30.0) {
            return Err(Error::Usage(format!(
                "the stream buffer must be more than 0 and at most 30 s, not {max}"
            )));
        }
        let trim = self.trim_after_s;
        if !(trim.is_finite() && trim > 0.0 && trim < max) {
            return Err(Error::Usage(format!(
                "the buffer trim point must be more than 0 s and below the buffer's {max} s, \
                 not {trim}"
            )));
        }
        if self.step_ms as f32 / 1000.0 >= max {
            return Err(Error::Usage(format!(
                "a {} ms step does not fit a {max}-s buffer",
                self.step_ms
            )));
        }
        Ok(())
    }
}

/// What a stream reports. Serialized as JSON objects tagged by `type`: the CLI's lines and the
/// server's WebSocket messages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    /// The unconfirmed tail of the latest hypothesis (with `partials`): may change.
    Partial { start: f64, end: f64, text: String },
    /// Text that will not change. Times are seconds since the stream started.
    Committed {
        start: f64,
        end: f64,
        text: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        words: Option<Vec<Word>>,
    },
    /// The end of the stream: every committed text, concatenated.
    Done { text: String },
}

/// One step's work: transcribe `samples` and give the transcript to
/// [`LocalAgreement::apply`] with this request.
#[derive(Debug, Clone)]
pub struct StepRequest {
    /// The whole buffer, 16 kHz mono.
    pub samples: Vec<f32>,
    /// Stream time of `samples[0]`, seconds.
    pub offset_s: f64,
    /// Committed text before the buffer (its last ~200 characters), to prime the decoder.
    pub prompt: String,
    /// The language an earlier step detected (multilingual models without one), so that later
    /// steps neither detect again nor switch.
    pub language: Option<String>,
}

impl StepRequest {
    /// Stream time of the end of `samples`, seconds.
    pub fn end_s(&self) -> f64 {
        self.offset_s + self.samples.len() as f64 / SAMPLE_RATE as f64
    }
}

/// The policy and a transcriber together: each [`push`](Self::push) buffers audio and runs a
/// step when one is due, on the caller's thread.
pub struct LiveSession<'t> {
    transcriber: &'t mut Transcriber,
    policy: LocalAgreement,
    /// The transcriber's own options, restored after each step.
    base: TranscribeOptions,
}

impl<'t> LiveSession<'t> {
    pub fn new(transcriber: &'t mut Transcriber, config: StreamConfig) -> Self {
        let base = transcriber.options().clone();
        LiveSession {
            transcriber,
            policy: LocalAgreement::new(config),
            base,
        }
    }

    /// Buffer 16-kHz mono samples and run a step if one is due.
    pub fn push(&mut self, samples_16k: &[f32]) -> Result<Vec<StreamEvent>> {
        self.policy.push(samples_16k);
        self.step_if_due()
    }

    /// Buffer samples without running a step: a caller that receives audio in small pieces
    /// feeds all that has arrived, then calls [`step_if_due`](Self::step_if_due) once, so a
    /// step that fell behind takes everything pending at once.
    pub fn feed(&mut self, samples_16k: &[f32]) {
        self.policy.push(samples_16k);
    }

    /// Run a step if at least `step_ms` of new audio is buffered.
    pub fn step_if_due(&mut self) -> Result<Vec<StreamEvent>> {
        if !self.policy.step_due() {
            return Ok(Vec::new());
        }
        match self.policy.take_step() {
            Some(req) => {
                let hypothesis = self.run(&req)?;
                Ok(self.policy.apply(&req, &hypothesis))
            }
            None => Ok(Vec::new()),
        }
    }

    /// The policy (stream time, buffer length).
    pub fn policy(&self) -> &LocalAgreement {
        &self.policy
    }

    /// Transcribe what is left, commit the rest, and end with [`StreamEvent::Done`].
    pub fn finish(mut self) -> Result<Vec<StreamEvent>> {
        self.end()
    }

    /// [`finish`](Self::finish) keeping the session, to read its policy's figures after;
    /// later calls return nothing.
    pub fn end(&mut self) -> Result<Vec<StreamEvent>> {
        let mut events = Vec::new();
        // Each further step starts after words the previous one committed (bounded anyway).
        for _ in 0..MAX_FINAL_STEPS {
            let Some(req) = self.policy.take_step() else {
                break;
            };
            let hypothesis = self.run(&req)?;
            events.extend(self.policy.flush(&req, &hypothesis));
        }
        events.extend(self.policy.finish(None));
        Ok(events)
    }

    fn run(&mut self, req: &StepRequest) -> Result<Transcript> {
        transcribe_step(self.transcriber, &self.base, req)
    }
}

/// Run one step on `transcriber`: `req`'s samples as a single window (the buffer is at most
/// 30 s) with [`LocalAgreement::options_for_step`] of `base`, the transcriber's options
/// restored after. One window, with the unfinished tail kept as a segment (the batched loop's
/// rule): the sequential seek loop would decode that tail again in a second window, doubling
/// a step's cost for words the next step sees anyway.
pub fn transcribe_step(
    transcriber: &mut Transcriber,
    base: &TranscribeOptions,
    req: &StepRequest,
) -> Result<Transcript> {
    transcriber.set_options(LocalAgreement::options_for_step(base, req))?;
    let whole = [SampleRange {
        start: 0,
        end: req.samples.len(),
    }];
    let result = transcriber.transcribe_chunks(&req.samples, &whole, Hooks::default());
    transcriber.set_options(base.clone())?;
    let timings = transcriber.timings();
    tracing::debug!(
        "stream step at {:.2} s: {:.2} s of audio, {} window(s), {:.0} ms",
        req.offset_s,
        req.samples.len() as f64 / SAMPLE_RATE as f64,
        timings.windows.len(),
        timings.total_ms
    );
    result
}
