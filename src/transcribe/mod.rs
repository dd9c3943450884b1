//! The pipeline driver (OpenAI's `transcribe()`): audio -> log-mel -> the seek loop over 30-s
//! windows ([`seek`]) or the batched loop over chunks ([`batched`]), both turning each window's
//! decode into segments the same way ([`window`]). [`Transcriber`] is the library's entry point.

pub mod batched;
pub mod load;
pub mod options;
pub mod seek;
pub mod window;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

pub use self::batched::SampleRange;
pub use self::load::TranscriberBuilder;
pub use self::options::{Device, Dtype, MelPadding, Timings, TranscribeOptions, WindowTimings};
pub use self::seek::{SeekLoop, WindowRequest};
use crate::backend::Backend;
use crate::decode::alignment::Word;
use crate::decode::search::Rng;
use crate::decode::{language, CancelHandle, DecodeOptions};
use crate::error::{Error, Result};
pub use crate::mel::MelSource;
use crate::model::config::ModelConfig;
use crate::progress::{Progress, ProgressUnit};
use crate::tokenizer::WhisperTokenizer;
use window::Model;

/// One decoded span of audio, shaped as openai-whisper's result segments.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub id: usize,
    /// Start of the window this segment was decoded in, in mel frames (10 ms each).
    pub seek: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
    /// Word timings, with `word_timestamps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<Vec<Word>>,
}

/// openai-whisper's `transcribe()` result, plus the detected language's probability.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    /// Probability of `language` when it was detected; absent when given or English-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_probability: Option<f32>,
    pub segments: Vec<Segment>,
    /// Audio duration, seconds.
    pub duration: f64,
}

/// The segment callback of [`Hooks`].
type OnSegment<'a> = Box<dyn FnMut(&Segment) + Send + 'a>;

/// What a caller hears from a transcription while it runs, and how it stops it. All optional:
/// `Hooks::default()` is silent.
#[derive(Default)]
pub struct Hooks<'a> {
    on_segment: Option<OnSegment<'a>>,
    progress: Option<&'a dyn Progress>,
    cancel: Option<CancelHandle>,
}

impl<'a> Hooks<'a> {
    /// Called with each segment as soon as it is final, in transcript order.
    pub fn on_segment(mut self, f: impl FnMut(&Segment) + Send + 'a) -> Self {
        self.on_segment = Some(Box::new(f));
        self
    }

    /// Progress in centiseconds of audio transcribed (one `begin` ... `finish` per call).
    pub fn progress(mut self, progress: &'a dyn Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Stop the work when `cancel` is cancelled: within one decoder step, with
    /// [`Error::Cancelled`].
    pub fn cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// The segment callback, taken out (e.g. to wrap it in one that maps times, as `--vad`
    /// does to report them in the original timeline).
    pub(crate) fn take_on_segment(&mut self) -> Option<OnSegment<'a>> {
        self.on_segment.take()
    }

    fn segment(&mut self, s: &Segment) {
        if let Some(f) = &mut self.on_segment {
            f(s);
        }
    }

    fn begin(&self, total_frames: usize) {
        if let Some(p) = self.progress {
            p.begin(
                "transcribing",
                Some(total_frames as u64),
                ProgressUnit::Centiseconds,
            );
        }
    }

    fn position(&self, frames: usize) {
        if let Some(p) = self.progress {
            p.set_position(frames as u64);
        }
    }

    fn finish(&self) {
        if let Some(p) = self.progress {
            p.finish();
        }
    }

    fn check(&self) -> Result<()> {
        self.cancel.as_ref().map_or(Ok(()), CancelHandle::check)
    }
}

/// The decoding options of an input, its language, the detected language's probability, and
/// window 0's mel when detection left it encoded.
type ResolvedLanguage = (DecodeOptions, String, Option<f32>, Option<Vec<f32>>);

/// A loaded model, ready to transcribe any number of inputs, one at a time. `Send`: it may be
/// moved into a worker thread.
pub struct Transcriber {
    backend: Box<dyn Backend + Send>,
    tokenizer: WhisperTokenizer,
    config: ModelConfig,
    options: TranscribeOptions,
    timings: Timings,
    /// The pool of `TranscriberBuilder::threads`; `None`: rayon's global pool.
    pool: Option<rayon::ThreadPool>,
    /// Keeps the checkpoint's "in use" lock while the model is loaded (no eviction meanwhile).
    _model_lock: Option<std::sync::Arc<crate::model::cache::UseLock>>,
}

impl Transcriber {
    pub fn builder() -> TranscriberBuilder {
        TranscriberBuilder::default()
    }

    /// Resolve `model` (alias, repo id or directory) and load it on `device`.
    #[doc(hidden)]
    pub fn new(model: &str, device: Device, options: TranscribeOptions) -> Result<Self> {
        Self::builder()
            .model(model)
            .device(device)
            .options(options)
            .build()
    }

    /// Load resolved model files (tests).
    #[doc(hidden)]
    pub fn from_files(
        files: &crate::model::ModelFiles,
        device: Device,
        options: TranscribeOptions,
    ) -> Result<Self> {
        load::load(files, device, None, options)
    }

    /// The backend, for tests that drive the model directly.
    #[doc(hidden)]
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    /// Device memory, weights storage and the kernel profile of the loaded model, where the
    /// backend reports them (`bench`).
    pub fn diagnostics(&mut self) -> Option<&mut dyn crate::backend::Diagnostics> {
        self.backend.diagnostics()
    }

    /// The device the model runs on, for logs.
    pub fn device_name(&self) -> String {
        self.backend.device_name()
    }

    /// Whether [`log_mel`](Self::log_mel) runs on the device (the GPU backend) instead of the
    /// CPU reference. The streamed mel of `audio_io::SpooledMel` is bit-identical to the CPU
    /// reference only, so a caller that wants this backend's own transcript on a device keeps
    /// the samples in memory and calls [`transcribe_samples`](Self::transcribe_samples).
    pub fn mel_on_device(&self) -> bool {
        self.backend.mel_on_device()
    }

    #[doc(hidden)]
    pub fn tokenizer(&self) -> &WhisperTokenizer {
        &self.tokenizer
    }

    #[doc(hidden)]
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Encoder-side sizes of the loaded model (layers, widths, context).
    pub fn dims(&self) -> &crate::model::config::ModelDims {
        &self.config.dims
    }

    pub fn options(&self) -> &TranscribeOptions {
        &self.options
    }

    /// Options for the following calls. The weights' storage is fixed when the model is
    /// loaded: a different `weights_dtype` here takes no effect.
    pub fn set_options(&mut self, options: TranscribeOptions) -> Result<()> {
        options.validate()?;
        self.options = options;
        Ok(())
    }

    /// Where the last transcription call spent its time.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Start [`timings`](Self::timings) afresh: a long-running driver of
    /// [`step_windows`](Self::step_windows) (which appends one entry per window) calls this so
    /// they do not grow without bound.
    pub fn reset_timings(&mut self) {
        self.timings = Timings::default();
    }

    /// Transcribe an audio file.
    pub fn transcribe_file(&mut self, path: impl AsRef<Path>) -> Result<Transcript> {
        self.transcribe_file_with(path, Hooks::default())
    }

    /// [`transcribe_file`](Self::transcribe_file) with hooks; errors from inside the pipeline
    /// name the file.
    pub fn transcribe_file_with(
        &mut self,
        path: impl AsRef<Path>,
        hooks: Hooks<'_>,
    ) -> Result<Transcript> {
        let path = path.as_ref();
        let samples = crate::audio::load_audio(path)?;
        self.transcribe_samples_with(&samples, crate::audio::SAMPLE_RATE, hooks)
            .map_err(|e| match e {
                Error::Internal(msg) => Error::Internal(format!("{}: {msg}", path.display())),
                other => other,
            })
    }

    /// Transcribe mono samples in [-1, 1] at `sample_rate` Hz (resampled when not 16 kHz).
    pub fn transcribe_samples(&mut self, samples: &[f32], sample_rate: u32) -> Result<Transcript> {
        self.transcribe_samples_with(samples, sample_rate, Hooks::default())
    }

    /// [`transcribe_samples`](Self::transcribe_samples) with hooks.
    pub fn transcribe_samples_with(
        &mut self,
        samples: &[f32],
        sample_rate: u32,
        mut hooks: Hooks<'_>,
    ) -> Result<Transcript> {
        let resampled;
        let samples = if sample_rate == crate::audio::SAMPLE_RATE {
            samples
        } else {
            resampled = crate::audio::resample(samples, sample_rate, crate::audio::SAMPLE_RATE)?;
            &resampled
        };
        let duration = samples.len() as f64 / crate::audio::SAMPLE_RATE as f64;
        self.in_pool(|t| {
            let start = Instant::now();
            t.timings = Timings::default();
            let mut mel = t.backend.log_mel(samples, t.config.dims.n_mels)?;
            t.timings.mel_ms = start.elapsed().as_secs_f64() * 1e3;
            let r = if t.options.batch_size > 1 {
                let chunks = batched::plan_chunks(samples, mel.content_frames());
                t.run_batched(&mel, chunks, &mut hooks, duration)
            } else {
                t.run_seek(&mut mel, &mut hooks, duration)
            };
            t.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
            r
        })
    }

    /// OpenAI's sequential seek loop over a mel source (an in-memory [`crate::mel::LogMel`]
    /// or a streaming one), whatever `batch_size` says.
    pub fn transcribe_mel(
        &mut self,
        src: &mut (dyn MelSource + Send),
        mut hooks: Hooks<'_>,
    ) -> Result<Transcript> {
        if src.n_mels() != self.config.dims.n_mels {
            return Err(Error::Usage(format!(
                "the mel source has {} mel bins; the model takes {}",
                src.n_mels(),
                self.config.dims.n_mels
            )));
        }
        let duration = src.content_frames() as f64 / 100.0;
        self.in_pool(|t| {
            let start = Instant::now();
            t.timings = Timings::default();
            let r = t.run_seek(src, &mut hooks, duration);
            t.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
            r
        })
    }

    /// Batched transcription of the caller's chunks of 16-kHz `samples` (e.g. speech found by
    /// a voice-activity detector, merged up to 30 s): each at most 30 s, decoded independently,
    /// `batch_size` at a time (1 is taken as 1 at a time).
    pub fn transcribe_chunks(
        &mut self,
        samples: &[f32],
        chunks: &[SampleRange],
        mut hooks: Hooks<'_>,
    ) -> Result<Transcript> {
        let duration = samples.len() as f64 / crate::audio::SAMPLE_RATE as f64;
        self.in_pool(|t| {
            let start = Instant::now();
            t.timings = Timings::default();
            let mel = t.backend.log_mel(samples, t.config.dims.n_mels)?;
            t.timings.mel_ms = start.elapsed().as_secs_f64() * 1e3;
            let chunks = batched::chunks_of_ranges(chunks, mel.content_frames())?;
            let r = t.run_batched(&mel, chunks, &mut hooks, duration);
            t.timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
            r
        })
    }

    /// Run `f` in this transcriber's thread pool (rayon's global one without).
    fn in_pool<R: Send>(&mut self, f: impl FnOnce(&mut Self) -> R + Send) -> R {
        match self.pool.take() {
            Some(pool) => {
                let r = pool.install(|| f(self));
                self.pool = Some(pool);
                r
            }
            None => f(self),
        }
    }

    fn model<'a>(&'a mut self, cancel: Option<&'a CancelHandle>) -> Model<'a> {
        Model {
            backend: self.backend.as_mut(),
            tokenizer: &self.tokenizer,
            config: &self.config,
            options: &self.options,
            cancel,
        }
    }

    /// The decoding options of one input and its language: the one asked for, or
    /// (multilingual checkpoints) the one detected on the first 30 s as OpenAI's
    /// `transcribe()` does, with its probability. Detection leaves window 0 encoded in the
    /// backend, and returns its mel.
    fn resolve_language(
        &mut self,
        first_window: impl FnOnce() -> Result<Vec<f32>>,
    ) -> Result<ResolvedLanguage> {
        let mut decode_opts = self.options.decode.clone();
        let mut language_probability = None;
        let mut encoded = None;
        if decode_opts.language.is_none() && self.tokenizer.multilingual {
            let t = Instant::now();
            let mel = first_window()?;
            self.backend.encode(&mel)?;
            let probs = language::detect_language(self.backend.as_mut(), &self.tokenizer)?;
            let (code, p) = probs[0];
            tracing::info!("detected language: {code} (p = {p:.2})");
            decode_opts.language = Some(code.to_string());
            language_probability = Some(p);
            encoded = Some(mel);
            self.timings.language_ms = t.elapsed().as_secs_f64() * 1e3;
        }
        let language = decode_opts
            .language
            .clone()
            .unwrap_or_else(|| "en".to_string());
        Ok((decode_opts, language, language_probability, encoded))
    }

    /// The initial prompt as tokens (with the leading space OpenAI adds), empty without one.
    fn initial_prompt_tokens(&self) -> Result<Vec<u32>> {
        match &self.options.initial_prompt {
            Some(p) => self.tokenizer.encode(&format!(" {}", p.trim())),
            None => Ok(Vec::new()),
        }
    }

    /// The log-mel spectrogram of 16-kHz mono `samples` for this model (on its device), with
    /// 30 s of silence appended as Whisper expects: a [`MelSource`] for
    /// [`begin_seek`](Self::begin_seek) or [`transcribe_mel`](Self::transcribe_mel).
    pub fn log_mel(&mut self, samples: &[f32]) -> Result<crate::mel::LogMel> {
        self.backend.log_mel(samples, self.config.dims.n_mels)
    }

    /// Start OpenAI's sequential seek loop over `src` (language detection, on multilingual
    /// models without a language, reads and encodes its first window). Advance it with
    /// [`step_windows`](Self::step_windows), end it with [`finish_seek`](Self::finish_seek).
    /// Several loops (e.g. several requests) may be in progress on one transcriber at a time.
    pub fn begin_seek(&mut self, src: &mut dyn MelSource) -> Result<SeekLoop> {
        let content_frames = src.content_frames();
        let (decode, language, language_probability, encoded) =
            self.resolve_language(|| src.window(0))?;
        let sot = self
            .tokenizer
            .sot_sequence(decode.language.as_deref(), decode.task)?;
        let mut seek = SeekLoop::new(
            content_frames,
            self.config.dims.n_audio_ctx,
            self.options.mel_padding(),
            decode,
            language,
            sot,
            self.options.condition_on_previous_text,
            self.initial_prompt_tokens()?,
            encoded,
            self.options.seed,
        );
        // Seconds as frames / 100 (not frames x 0.01, which is inexact in binary).
        seek.set_origin(language_probability, content_frames as f64 / 100.0);
        Ok(seek)
    }

    /// One window of each loop that is not done: the windows encoded together (one
    /// `encode_batch`), then decoded with temperature fallback, cut, aligned; each loop
    /// advanced. Windows with the same decoding options (the same prompt: e.g. the first
    /// windows of requests without an initial prompt) take each temperature's pass together,
    /// in lockstep: the first temperature's of all of them, then each hotter one's of those
    /// that failed the thresholds at the one before
    /// (`Model::decode_together_with_fallback`), which gives each the tokens it gets alone.
    /// Returns each loop's segments that became final (empty for loops already done). `cancel` stops the step within one decoder step. The temperature schedule and
    /// seed are the transcriber's options; each loop keeps its own prompt.
    pub fn step_windows(
        &mut self,
        loops: &mut [(&mut SeekLoop, &mut dyn MelSource)],
        cancel: Option<&CancelHandle>,
    ) -> Result<Vec<Vec<Segment>>> {
        let mut requests = Vec::with_capacity(loops.len());
        for (seek, src) in loops.iter_mut() {
            requests.push(seek.next_window(&mut **src)?);
        }
        let live: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].is_some())
            .collect();
        let mut new = vec![Vec::new(); loops.len()];
        if live.is_empty() {
            return Ok(new);
        }
        let reqs: Vec<&WindowRequest> = live.iter().filter_map(|&i| requests[i].as_ref()).collect();
        let mut wts: Vec<WindowTimings> = vec![WindowTimings::default(); reqs.len()];
        // A loop alone whose window language detection left encoded skips the encoder.
        if !(reqs.len() == 1 && reqs[0].encoded) {
            let mels: Vec<&[f32]> = reqs.iter().map(|r| r.mel.as_slice()).collect();
            let t = Instant::now();
            self.backend.encode_batch(&mels)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let cross_kv_ms = encode_cross_kv_ms(self.backend.as_mut());
            for (w, r) in wts.iter_mut().zip(&reqs) {
                w.encoder_ms = ms / reqs.len() as f64;
                w.cross_kv_ms = cross_kv_ms / reqs.len() as f64;
                tracing::debug!(
                    "window at {:.2} s: encoder {:.0} ms",
                    r.seek as f64 * seek::FRAME_SECS,
                    w.encoder_ms
                );
            }
        }
        let temperatures = self.options.temperatures();
        let decodes: Vec<&DecodeOptions> = reqs.iter().map(|r| &r.decode).collect();
        // The loops' samplers, given back only when every window decoded: a cancelled window
        // leaves its loop as it was (the sampler too), so a driver that interrupts a step and
        // runs it again gets the same tokens.
        let mut rngs: Vec<Rng> = live.iter().map(|&i| loops[i].0.rng().clone()).collect();
        let t = Instant::now();
        let results = self.model(cancel).decode_together_with_fallback(
            &decodes,
            &temperatures,
            &mut rngs,
            &mut wts,
        )?;
        tracing::debug!(
            "{} window(s) decoded in {:.0} ms",
            reqs.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        for (&i, rng) in live.iter().zip(rngs) {
            *loops[i].0.rng() = rng;
        }
        for (window, ((&i, wt), result)) in live.iter().zip(wts.iter_mut()).zip(results).enumerate()
        {
            let request = requests[i].as_ref().expect("live");
            let seek = &mut *loops[i].0;
            let mut model = self.model(cancel);
            wt.tokens = result.tokens.len();
            tracing::debug!(
                "window at {:.2} s: {} tokens in {:.0} ms (T={})",
                request.seek as f64 * seek::FRAME_SECS,
                result.tokens.len(),
                wt.decoder_ms,
                result.temperature
            );
            new[i] = seek
                .finish_window(&mut model, window, request, &result, wt)?
                .to_vec();
        }
        self.timings.windows.extend(wts);
        Ok(new)
    }

    /// The transcript of a finished (or abandoned) loop.
    pub fn finish_seek(&self, seek: SeekLoop) -> Result<Transcript> {
        let language = seek.language().to_string();
        let (language_probability, duration) = seek.origin();
        let (segments, text_tokens) = seek.into_parts();
        Ok(Transcript {
            text: self.tokenizer.decode(&text_tokens)?,
            language,
            language_probability,
            segments,
            duration,
        })
    }

    /// The sequential seek loop, driven window by window.
    fn run_seek(
        &mut self,
        src: &mut dyn MelSource,
        hooks: &mut Hooks<'_>,
        duration: f64,
    ) -> Result<Transcript> {
        hooks.check()?;
        let mut seek = self.begin_seek(src)?;
        let (language_probability, _) = seek.origin();
        seek.set_origin(language_probability, duration);
        hooks.begin(seek.content_frames());
        let cancel = hooks.cancel.clone();
        while !seek.is_done() {
            hooks.check()?;
            let new = self.step_windows(&mut [(&mut seek, &mut *src)], cancel.as_ref())?;
            for s in &new[0] {
                hooks.segment(s);
            }
            hooks.position(seek.position());
        }
        hooks.finish();
        self.finish_seek(seek)
    }
}

/// Of the last `encode_batch`, the ms the backend spent in the cross-attention K/V (0 where it
/// does not time them apart): [`WindowTimings::cross_kv_ms`].
fn encode_cross_kv_ms(backend: &mut (dyn Backend + Send)) -> f64 {
    backend
        .diagnostics()
        .and_then(|d| d.cross_kv_ms())
        .unwrap_or(0.0)
}
