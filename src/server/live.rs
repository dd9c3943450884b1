//! What the two live endpoints share ([`super::stream_ws`]: `/v1/audio/stream`,
//! [`super::realtime`]: OpenAI's Realtime transcription sessions): the session count behind
//! `--max-sessions`, raw PCM frames to 16-kHz samples, and [`Live`], the LocalAgreement policy
//! of one stream whose steps run on the device workers.
//!
//! A step never runs on the async runtime: its samples become a [`SpooledMel`] on a blocking
//! thread and go to [`Pool::submit`](super::worker::Pool::submit) as a [`Job`], like an upload;
//! the async side only buffers audio and forwards events. Steps of one session never overlap;
//! a step that falls behind leaves its successor everything pending (the policy's catch-up).

use std::collections::VecDeque;
use std::path::PathBuf;

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::places::{Place, Places};
use super::routes::CancelOnDrop;
use super::worker::{Job, JobEvent, ModelInfo};
use super::{metrics as m, AppState};
use crate::audio::{RawEncoding, SpooledMel, StreamResampler, SAMPLE_RATE};
use crate::decode::CancelHandle;
use crate::error::{Error, Result};
use crate::stream::{LocalAgreement, StepRequest, StreamConfig, StreamEvent};
use crate::transcribe::{TranscribeOptions, Transcript};

/// The largest WebSocket message either endpoint reads (a binary PCM frame, a base64 append):
/// 2 MiB is over 60 s of 16-kHz s16le. Larger ones end the connection (tungstenite refuses
/// them before buffering them whole).
pub(super) const MAX_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// Seconds of audio a session queues beyond its policy's buffer while a step runs; past it
/// the session stops reading its socket until the step is done.
const QUEUE_SECONDS: usize = 30;

/// Steps at most over the audio left at the end (each starts after what the last committed).
const MAX_FINAL_STEPS: usize = 4;

/// Live sessions open now, against `--max-sessions`.
pub(crate) struct Sessions {
    open: Places,
    /// Turns true when the server shuts down: open sessions close (1001).
    stop: tokio::sync::watch::Sender<bool>,
}

/// One open session: its place is given back when dropped.
pub(super) type SessionSlot = Place;

impl Sessions {
    pub(crate) fn new(max: usize) -> Self {
        Sessions {
            open: Places::new(max, m::stream_sessions),
            stop: tokio::sync::watch::channel(false).0,
        }
    }

    /// Close every open session (server shutdown).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves when the server shuts down.
    pub(super) fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// A place for one more session, or `None` when `max` are open.
    pub(super) fn try_open(&self) -> Option<SessionSlot> {
        self.open.try_take()
    }
}

/// Raw little-endian PCM frames (mono) to 16-kHz samples. A sample split between two frames
/// is joined; a partial sample at the very end is dropped.
pub(super) struct PcmFrames {
    encoding: RawEncoding,
    /// Bytes of a sample cut by the end of the previous frame.
    carry: Vec<u8>,
    resampler: Option<StreamResampler>,
}

impl PcmFrames {
    pub(super) fn new(
        encoding: RawEncoding,
        sample_rate: u32,
    ) -> std::result::Result<Self, String> {
        if !(8_000..=192_000).contains(&sample_rate) {
            return Err(format!(
                "sample_rate {sample_rate} Hz is out of range (8000 to 192000)"
            ));
        }
        let resampler = if sample_rate == SAMPLE_RATE {
            None
        } else {
            Some(StreamResampler::new(sample_rate, SAMPLE_RATE)?)
        };
        Ok(PcmFrames {
            encoding,
            carry: Vec::new(),
            resampler,
        })
    }

    fn width(&self) -> usize {
        match self.encoding {
            RawEncoding::S16le => 2,
            RawEncoding::F32le => 4,
        }
    }

    /// The 16-kHz samples of one frame (resampled output lags its input by a few ms).
    pub(super) fn push(&mut self, bytes: &[u8]) -> std::result::Result<Vec<f32>, String> {
        let width = self.width();
        let mut joined;
        let mut bytes = bytes;
        if !self.carry.is_empty() {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(bytes);
            bytes = &joined[..];
        }
        let whole = bytes.len() / width * width;
        let samples: Vec<f32> = match self.encoding {
            RawEncoding::S16le => bytes[..whole]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
                .collect(),
            // Non-finite floats become silence (as the file reader does); others are clamped.
            RawEncoding::F32le => bytes[..whole]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .map(|x| {
                    if x.is_finite() {
                        x.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                })
                .collect(),
        };
        self.carry = bytes[whole..].to_vec();
        match &mut self.resampler {
            Some(r) => r.push(&samples),
            None => Ok(samples),
        }
    }

    /// The end of the stream: the resampler's last samples.
    pub(super) fn finish(&mut self) -> std::result::Result<Vec<f32>, String> {
        if !self.carry.is_empty() {
            tracing::debug!(
                "stream ended {} bytes into a sample; they are dropped",
                self.carry.len()
            );
            self.carry.clear();
        }
        match &mut self.resampler {
            Some(r) => r.finish(),
            None => Ok(Vec::new()),
        }
    }
}

/// When each received sample arrived, for the commit latency: the time from a committed
/// word's last sample reaching the server to its `committed` event.
struct ArrivalClock {
    /// (samples received after this frame, when it arrived), oldest first.
    frames: VecDeque<(u64, Instant)>,
    received: u64,
}

/// Frames remembered; past this the oldest are forgotten (their commits go unmeasured).
const CLOCK_FRAMES: usize = 8192;

impl ArrivalClock {
    fn record(&mut self, samples: usize) {
        if samples == 0 {
            return;
        }
        self.received += samples as u64;
        if self.frames.len() == CLOCK_FRAMES {
            self.frames.pop_front();
        }
        self.frames.push_back((self.received, Instant::now()));
    }

    /// When the sample at stream time `end_s` arrived; forgets the frames before it (commits
    /// only move forward).
    fn arrival_of(&mut self, end_s: f64) -> Option<Instant> {
        let sample = (end_s * SAMPLE_RATE as f64).ceil().max(1.0) as u64;
        while self.frames.front().is_some_and(|&(upto, _)| upto < sample) {
            self.frames.pop_front();
        }
        self.frames.front().map(|&(_, at)| at)
    }
}

/// A step in flight: its request, and its transcript once the worker has run it.
type StepFuture = BoxFuture<'static, (StepRequest, Result<Transcript>)>;

/// One live stream: the policy, the step in flight (at most one), and the model it runs on.
/// Dropping it cancels the step in flight (its job leaves the worker within a decoder step).
pub(super) struct Live {
    state: Arc<AppState>,
    session_id: String,
    model: ModelInfo,
    base: TranscribeOptions,
    /// A client's own prompt (Realtime sessions), for steps before anything is committed.
    prompt: Option<String>,
    policy: LocalAgreement,
    in_flight: Option<StepFuture>,
    /// Audio received and not yet in the policy's buffer (samples: `queued`).
    queue: VecDeque<Vec<f32>>,
    queued: usize,
    steps: u64,
    clock: ArrivalClock,
}

impl Live {
    pub(super) fn new(
        state: Arc<AppState>,
        session_id: String,
        model: ModelInfo,
        base: TranscribeOptions,
        prompt: Option<String>,
        config: StreamConfig,
        beam_size: Option<usize>,
    ) -> Self {
        // Greedy unless the caller asked for beams: a live step must be short.
        let mut base = base;
        if beam_size.is_none_or(|b| b <= 1) {
            base.decode.beam_size = None;
            base.decode.patience = None;
        } else {
            base.decode.beam_size = beam_size;
        }
        base.decode.best_of = None;
        Live {
            state,
            session_id,
            model,
            base,
            prompt,
            policy: LocalAgreement::new(config),
            in_flight: None,
            queue: VecDeque::new(),
            queued: 0,
            steps: 0,
            clock: ArrivalClock {
                frames: VecDeque::new(),
                received: 0,
            },
        }
    }

    pub(super) fn config(&self) -> &StreamConfig {
        self.policy.config()
    }

    /// Seconds of audio received.
    pub(super) fn received_s(&self) -> f64 {
        self.policy.received_s()
    }

    /// Take samples as they arrive: into the policy's buffer while it has room (else queued,
    /// up to [`QUEUE_SECONDS`]), and start a step if one is due and none is running.
    pub(super) fn push(&mut self, samples_16k: &[f32]) {
        if samples_16k.is_empty() {
            return;
        }
        self.clock.record(samples_16k.len());
        self.queued += samples_16k.len();
        self.queue.push_back(samples_16k.to_vec());
        self.feed();
    }

    /// Move queued audio into the policy. While a step runs, only what fits its buffer (more
    /// would push audio no step has seen out of it); with none running, as much as fits, then
    /// a step over all of it; a buffer full before a step is due drops its oldest audio (the
    /// policy's bound, logged).
    fn feed(&mut self) {
        let max = self.config().max_buffer_s as f64;
        while let Some(front) = self.queue.front() {
            let seconds = front.len() as f64 / SAMPLE_RATE as f64;
            let fits = self.policy.buffer_s() + seconds <= max;
            if !fits && self.stepping() {
                break;
            }
            if !fits && self.policy.step_due() {
                self.start_due();
                continue;
            }
            let frame = self.queue.pop_front().expect("front exists");
            self.queued -= frame.len();
            self.policy.push(&frame);
        }
        if !self.stepping() && self.policy.step_due() {
            self.start_due();
        }
    }

    fn start_due(&mut self) {
        if let Some(req) = self.policy.take_step() {
            self.in_flight = Some(self.start(req));
        }
    }

    pub(super) fn stepping(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether to read more audio now: not while the queue is full, so a client sending
    /// faster than the steps go is held back by TCP (memory stays bounded) rather than
    /// losing audio.
    pub(super) fn wants_audio(&self) -> bool {
        self.queued < QUEUE_SECONDS * SAMPLE_RATE as usize
    }

    /// Wait for the step in flight (pending forever when there is none: poll it only when
    /// [`stepping`](Self::stepping)), apply it, and start the next if one is due.
    pub(super) async fn step_done(&mut self) -> Result<Vec<StreamEvent>> {
        let Some(step) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let (req, result) = step.await;
        self.in_flight = None;
        let transcript = result?;
        let events = self.policy.apply(&req, &transcript);
        self.observe(&events);
        self.feed();
        Ok(events)
    }

    /// The end of the stream: the steps over what is queued, then (as
    /// [`LiveSession::finish`](crate::stream::LiveSession::finish)) a few over what is left,
    /// each committing all it hears, then `done`.
    pub(super) async fn finish(&mut self) -> Result<Vec<StreamEvent>> {
        let mut events = Vec::new();
        while self.stepping() {
            events.extend(self.step_done().await?);
        }
        for _ in 0..MAX_FINAL_STEPS {
            let Some(req) = self.policy.take_step() else {
                break;
            };
            let (req, result) = self.start(req).await;
            let flushed = self.policy.flush(&req, &result?);
            self.observe(&flushed);
            events.extend(flushed);
        }
        events.extend(self.policy.finish(None));
        Ok(events)
    }

    /// Metrics of the events a step produced: the commit latency of each committed piece.
    fn observe(&mut self, events: &[StreamEvent]) {
        let now = Instant::now();
        for event in events {
            if let StreamEvent::Committed { end, .. } = event {
                if let Some(at) = self.clock.arrival_of(*end) {
                    m::stream_commit_latency(now.saturating_duration_since(at).as_secs_f64());
                }
            }
        }
    }

    /// The step's job on a worker: the mel off the async threads, then the pool's queue.
    fn start(&mut self, req: StepRequest) -> StepFuture {
        self.steps += 1;
        m::stream_step();
        let mut options = LocalAgreement::options_for_step(&self.base, &req);
        if options.initial_prompt.is_none() {
            options.initial_prompt = self.prompt.clone();
        }
        let request_id = format!("{}-step{}", self.session_id, self.steps);
        let pool = self.state.pool.clone();
        let model = self.model.clone();
        async move {
            let result = run_step(pool, request_id, model, options, &req).await;
            (req, result)
        }
        .boxed()
    }
}

/// One step on a worker: a spooled mel of the step's samples, a [`Job`], its transcript.
/// Dropped before the end (the session is gone), the job is cancelled.
async fn run_step(
    pool: Arc<super::worker::Pool>,
    request_id: String,
    model: ModelInfo,
    options: TranscribeOptions,
    req: &StepRequest,
) -> Result<Transcript> {
    let started = Instant::now();
    let samples = req.samples.clone();
    let n_mels = model.n_mels;
    let name = PathBuf::from(format!("{request_id}.pcm"));
    let mel =
        tokio::task::spawn_blocking(move || SpooledMel::from_samples(&samples, n_mels, &name))
            .await
            .map_err(|e| Error::Internal(format!("mel task: {e}")))??;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let cancel = CancelHandle::new();
    let step = pool.submit(Job {
        request_id: request_id.clone(),
        model: model.name,
        options,
        mel,
        events: events_tx,
        cancel: cancel.clone(),
        keep_tails: true,
    })?;
    let _guard = CancelOnDrop {
        cancel,
        request_id: request_id.clone(),
        step,
    };
    while let Some(event) = events.recv().await {
        match event {
            JobEvent::Segment(_) => {}
            JobEvent::Done(t) => {
                m::stream_step_seconds(started.elapsed().as_secs_f64());
                tracing::debug!(
                    request_id = %request_id,
                    "step over {:.1} s in {:.2} s",
                    req.samples.len() as f64 / SAMPLE_RATE as f64,
                    started.elapsed().as_secs_f64()
                );
                return Ok(t);
            }
            JobEvent::Failed(e) => return Err(e),
        }
    }
    Err(Error::Internal("the worker dropped the step".into()))
}

/// The message of a stream's failure, in OpenAI's error shape.
pub(super) fn error_body(e: &ApiError) -> serde_json::Value {
    e.body()["error"].clone()
}
