//! The pipeline driver (OpenAI's `transcribe()`): audio -> log-mel -> the seek loop over 30-s
//! windows (decode with temperature fallback, cut segments at timestamp pairs, advance to the
//! last complete timestamp) -> segments. `Transcriber` is the library's public entry point.
//! With `batch_size` > 1 the audio is cut into chunks up front and decoded several at a time
//! instead ([`batched`]).

pub mod batched;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::cpu::{model::CpuWeights, CpuModel};
use crate::backend::gpu::{AdapterSelector, GpuContext, GpuModel, KernelConfig, WeightType};
use crate::backend::Backend;
use crate::decode::alignment::{self, SegmentSpan, Word};
use crate::decode::search::Rng;
use crate::decode::{self, language, DecodeOptions, DecodingResult, TIME_PRECISION};
use crate::error::{Error, Result};
use crate::mel::{HOP_LENGTH, N_FRAMES};
use crate::model::config::ModelConfig;
use crate::model::weights::Weights;
use crate::model::{hub, ModelFiles};
use crate::tokenizer::WhisperTokenizer;

/// Which compute device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A hardware GPU when there is one, else the CPU.
    #[default]
    Auto,
    Cpu,
    Gpu,
}

/// Everything `transcribe()` takes besides the audio (OpenAI's CLI options and defaults).
#[derive(Debug, Clone)]
pub struct TranscribeOptions {
    /// Per-window decoding options (language, task, beam size, best-of, ...). Its `temperature`
    /// and `prompt` are set by the seek loop.
    pub decode: DecodeOptions,
    /// Temperatures tried in order until a decode passes the thresholds below.
    pub temperatures: Vec<f32>,
    /// A decode whose text compresses better than this (gzip) is repetitive: retry hotter.
    pub compression_ratio_threshold: Option<f32>,
    /// A decode whose average log-probability is below this is unreliable: retry hotter.
    pub logprob_threshold: Option<f32>,
    /// A window whose `<|nospeech|>` probability is above this and whose average log-probability
    /// is below `logprob_threshold` is silence: skipped.
    pub no_speech_threshold: Option<f32>,
    /// Feed the previous window's text as the prompt of the next one.
    pub condition_on_previous_text: bool,
    /// Text to prime the first window with (spelling, names, style).
    pub initial_prompt: Option<String>,
    /// Seed of the sampler used at temperatures above 0.
    pub seed: u64,
    /// What fills a window past the end of the audio.
    pub mel_padding: MelPadding,
    /// Word-level timestamps from the alignment heads' cross-attention.
    pub word_timestamps: bool,
    /// How matrix weights are stored; `None`: the backend's default (f32 on the CPU, f16 on the
    /// GPU). Arithmetic is f32 either way.
    pub weights_dtype: Option<WeightsDtype>,
    /// 1: OpenAI's sequential seek loop. Above 1: batched long-form transcription (see
    /// [`batched`]): chunks of at most 30 s cut at quiet points, decoded independently, this
    /// many at a time (`condition_on_previous_text` does not apply).
    pub batch_size: usize,
}

/// Storage precision of the matrix weights (`--dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsDtype {
    F32,
    F16,
    /// Per-row scaled int8 (CTranslate2's layout, `model::quant`); on the CPU activations are
    /// quantized per row too and products summed in i32; the GPU dequantizes the weights in its
    /// matmul kernels and computes in f32.
    Int8,
}

/// What fills the mel frames of a window that lie past the end of the audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MelPadding {
    /// Zeros, as OpenAI's `transcribe()` pads each mel segment (`pad_or_trim`).
    Zeros,
    /// The log-mel of silence (the spectrogram's floor), as decoding a 30-s-padded clip gives
    /// (OpenAI's `decode()` on `log_mel_spectrogram(pad_or_trim(audio))`, CTranslate2's tests).
    Floor,
}

impl Default for TranscribeOptions {
    /// OpenAI's CLI defaults: beam 5, best-of 5, fallback 0.0..1.0 by 0.2, thresholds
    /// 2.4 / -1.0 / 0.6, conditioning on previous text, timestamps on.
    fn default() -> Self {
        TranscribeOptions {
            decode: DecodeOptions {
                beam_size: Some(5),
                best_of: Some(5),
                ..DecodeOptions::default()
            },
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            initial_prompt: None,
            seed: 0,
            mel_padding: MelPadding::Zeros,
            word_timestamps: false,
            weights_dtype: None,
            batch_size: 1,
        }
    }
}

impl TranscribeOptions {
    /// Greedy, no timestamps, no fallback: one plain decode per consecutive 30-s window (the
    /// setting the token-level reference transcripts were made with).
    pub fn greedy_plain() -> Self {
        TranscribeOptions {
            decode: DecodeOptions {
                without_timestamps: true,
                ..DecodeOptions::default()
            },
            temperatures: vec![0.0],
            compression_ratio_threshold: None,
            logprob_threshold: None,
            no_speech_threshold: None,
            condition_on_previous_text: false,
            initial_prompt: None,
            seed: 0,
            mel_padding: MelPadding::Floor,
            word_timestamps: false,
            weights_dtype: None,
            batch_size: 1,
        }
    }
}

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
    /// Word timings, with `--word-timestamps`.
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

/// Where the last `transcribe_samples` call spent its time (`Transcriber::timings`; the `bench`
/// command prints it). Filled on every call: a few clock reads per window and per decoder call,
/// nothing on the hot path.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Log-mel spectrogram of the whole input.
    pub mel_ms: f64,
    /// Language detection (multilingual models without `--language`), its encoder run included.
    pub language_ms: f64,
    /// One entry per 30-s window decoded (the seek loop's iterations).
    pub windows: Vec<WindowTimings>,
    /// The whole call.
    pub total_ms: f64,
}

/// One window of [`Timings`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct WindowTimings {
    /// Encoder plus the cross-attention K/V; 0 when language detection already encoded it.
    pub encoder_ms: f64,
    /// All decoding passes of the window (temperature fallback included): the forward passes
    /// plus the host-side logit filters and search.
    pub decoder_ms: f64,
    /// Of `decoder_ms`, the time inside `Backend::decode` (the forward passes, read-back included).
    pub forward_ms: f64,
    /// Of `forward_ms`, the time in the one-token-per-sequence steps (the prompt calls excluded).
    pub step_ms: f64,
    /// Decoding passes (1 + temperature fallbacks).
    pub passes: usize,
    /// `Backend::decode` calls that fed the prompt.
    pub prompt_calls: usize,
    /// One-token steps (each feeds one token to every sequence of the pass).
    pub steps: usize,
    /// Sequence-tokens those steps computed: `steps` × sequences (beam search: 5 per step).
    pub seq_tokens: usize,
    /// Tokens of the kept result.
    pub tokens: usize,
    /// Word-timestamp alignment (with `word_timestamps`).
    pub align_ms: f64,
}

/// A `Backend` that forwards every call and meters `decode` (for [`WindowTimings`]).
struct Metered<'a> {
    inner: &'a mut dyn Backend,
    t: &'a mut WindowTimings,
    /// The next `decode` call is the first of a pass (the prompt).
    first: bool,
}

impl Metered<'_> {
    /// Time one forward call of `n_tokens` tokens, counted as a prompt call or a step.
    fn meter<T>(
        &mut self,
        n_tokens: usize,
        call: impl FnOnce(&mut dyn Backend) -> Result<T>,
    ) -> Result<T> {
        let n_seq = self.inner.n_seq();
        let t = Instant::now();
        let r = call(&mut *self.inner);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.t.forward_ms += ms;
        if self.first || n_tokens != n_seq {
            self.t.prompt_calls += 1;
        } else {
            self.t.steps += 1;
            self.t.seq_tokens += n_seq;
            self.t.step_ms += ms;
        }
        self.first = false;
        r
    }
}

impl Backend for Metered<'_> {
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
        self.first = true;
        self.inner.begin_decode(n_seq)
    }
    fn begin_decode_windows(&mut self, windows: &[usize]) -> Result<()> {
        self.first = true;
        self.inner.begin_decode_windows(windows)
    }
    fn cached_len(&self) -> usize {
        self.inner.cached_len()
    }
    fn n_seq(&self) -> usize {
        self.inner.n_seq()
    }
    fn decode(&mut self, tokens: &[u32], logits: &mut [f32]) -> Result<()> {
        self.meter(tokens.len(), |b| b.decode(tokens, logits))
    }
    fn decode_greedy(&mut self, tokens: &[u32], suppress: &[u32]) -> Result<(u32, f32)> {
        self.meter(tokens.len(), |b| b.decode_greedy(tokens, suppress))
    }
    fn reorder(&mut self, src: &[usize]) -> Result<()> {
        self.inner.reorder(src)
    }
    fn cross_attention_weights_in(
        &mut self,
        window: usize,
        tokens: &[u32],
        heads: &[(usize, usize)],
    ) -> Result<Vec<f32>> {
        self.inner.cross_attention_weights_in(window, tokens, heads)
    }
    fn device_memory_bytes(&self) -> Option<u64> {
        self.inner.device_memory_bytes()
    }
    fn weights_dtype(&self) -> &'static str {
        self.inner.weights_dtype()
    }
}

/// Why `--device auto` fell back to the CPU, for its one log line.
fn auto_reason(e: &Error) -> String {
    let m = match e {
        Error::Device(m) => m.clone(),
        other => other.to_string(),
    };
    if m.starts_with("no hardware GPU adapter") {
        format!("{m}; software adapters run only with --device gpu")
    } else {
        m
    }
}

/// `decode` at temperature `t`: beam search only at 0, best-of sampling only above.
fn options_at(decode: &DecodeOptions, t: f32) -> DecodeOptions {
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

/// Whether a decode failed the thresholds and is retried at the next temperature: too
/// repetitive or too unlikely, unless it is silence (likely no speech and unlikely text).
fn needs_fallback(o: &TranscribeOptions, r: &DecodingResult) -> bool {
    let too_repetitive = o
        .compression_ratio_threshold
        .is_some_and(|c| r.compression_ratio > c);
    let too_unlikely = o.logprob_threshold.is_some_and(|l| r.avg_logprob < l);
    let silence = o.no_speech_threshold.is_some_and(|n| r.no_speech_prob > n) && too_unlikely;
    (too_repetitive || too_unlikely) && !silence
}

/// Decode the window the backend has encoded at each of `temperatures` in turn until a result
/// passes the thresholds (OpenAI's `decode_with_fallback`); the last result otherwise.
#[allow(clippy::too_many_arguments)]
fn decode_with_fallback(
    backend: &mut dyn Backend,
    tokenizer: &WhisperTokenizer,
    config: &ModelConfig,
    o: &TranscribeOptions,
    decode: &DecodeOptions,
    temperatures: &[f32],
    rng: &mut Rng,
    timings: &mut WindowTimings,
) -> Result<DecodingResult> {
    let mut result = None;
    for &t in temperatures {
        let opts = options_at(decode, t);
        timings.passes += 1;
        let mut metered = Metered {
            inner: &mut *backend,
            t: timings,
            first: true,
        };
        let r = decode::decode_window(&mut metered, tokenizer, config, &opts, rng)?;
        let retry = needs_fallback(o, &r);
        if retry {
            tracing::debug!(
                "temperature {t}: compression {:.2}, avg logprob {:.2}: falling back",
                r.compression_ratio,
                r.avg_logprob
            );
        }
        result = Some(r);
        if !retry {
            break;
        }
    }
    result.ok_or_else(|| Error::Usage("no temperatures to decode with".into()))
}

/// A loaded model, ready to transcribe any number of files.
pub struct Transcriber {
    backend: Box<dyn Backend>,
    tokenizer: WhisperTokenizer,
    config: ModelConfig,
    options: TranscribeOptions,
    timings: Timings,
    /// Keeps the checkpoint's "in use" lock while the model is loaded (no eviction meanwhile).
    _model_lock: Option<std::sync::Arc<crate::model::cache::UseLock>>,
}

impl Transcriber {
    /// Resolve `model` (alias, repo id or directory) and load it on `device`.
    pub fn new(model: &str, device: DeviceChoice, options: TranscribeOptions) -> Result<Self> {
        Self::new_on(model, device, None, options)
    }

    /// `new` with an adapter choice for the GPU (`--adapter N|NAME`, see `from_files_on`).
    pub fn new_on(
        model: &str,
        device: DeviceChoice,
        adapter: Option<&str>,
        options: TranscribeOptions,
    ) -> Result<Self> {
        let files = hub::resolve(model)?;
        Self::from_files_on(&files, device, adapter, options)
    }

    pub fn from_files(
        files: &ModelFiles,
        device: DeviceChoice,
        options: TranscribeOptions,
    ) -> Result<Self> {
        Self::from_files_on(files, device, None, options)
    }

    /// Load on `device`. `adapter` (an index into `dattavani-asr devices` or part of a name)
    /// picks the GPU adapter and implies the GPU; without it, `Gpu` takes the best adapter,
    /// software ones included, and `Auto` a hardware adapter if there is one, else the CPU.
    pub fn from_files_on(
        files: &ModelFiles,
        device: DeviceChoice,
        adapter: Option<&str>,
        options: TranscribeOptions,
    ) -> Result<Self> {
        let t0 = Instant::now();
        let config = ModelConfig::from_dir(&files.dir)?;
        let tokenizer = WhisperTokenizer::from_file(&files.tokenizer(), config.dims.n_vocab)?;
        // Fail on a bad language/task request now, not at the first window.
        tokenizer.sot_sequence(options.decode.language.as_deref(), options.decode.task)?;
        let weights = Weights::open(&files.weights())?;
        let dtype = options.weights_dtype;
        // The GPU stores f16 unless f32 or int8 is asked for; the CPU holds f32 or int8.
        let load_gpu = |ctx: GpuContext| {
            let mut kc = KernelConfig::for_adapter(&ctx);
            match dtype {
                Some(WeightsDtype::F32) => kc.weights = WeightType::F32,
                Some(WeightsDtype::Int8) => kc.weights = WeightType::Int8,
                Some(WeightsDtype::F16) | None => {}
            }
            GpuModel::load_with_config(ctx, &weights, &config.dims, kc)
        };
        let load_cpu = || {
            if dtype == Some(WeightsDtype::F16) {
                return Err(Error::Usage(
                    "--dtype f16 is a GPU storage format; the CPU path holds f32 weights".into(),
                ));
            }
            let cpu_dtype = match dtype {
                Some(WeightsDtype::Int8) => CpuWeights::Int8,
                _ => CpuWeights::F32,
            };
            CpuModel::load_with(&weights, &config.dims, cpu_dtype)
        };
        let backend: Box<dyn Backend> = match (device, adapter) {
            (DeviceChoice::Cpu, Some(_)) => {
                return Err(Error::Usage(
                    "--adapter selects a GPU: not with --device cpu".into(),
                ))
            }
            (DeviceChoice::Cpu, None) => Box::new(load_cpu()?),
            (DeviceChoice::Gpu, _) | (DeviceChoice::Auto, Some(_)) => {
                let sel =
                    adapter.map_or(AdapterSelector::AnyGpu, AdapterSelector::from_adapter_arg);
                let ctx = GpuContext::new(&sel)?;
                Box::new(load_gpu(ctx)?)
            }
            (DeviceChoice::Auto, None) => {
                let gpu = GpuContext::new(&AdapterSelector::Auto).and_then(|ctx| {
                    let name = ctx.describe();
                    Ok((name, load_gpu(ctx)?))
                });
                match gpu {
                    Ok((name, model)) => {
                        tracing::info!("device: gpu {name} (a hardware adapter)");
                        Box::new(model)
                    }
                    Err(e) => {
                        tracing::info!("device: cpu ({})", auto_reason(&e));
                        Box::new(load_cpu()?)
                    }
                }
            }
        };
        tracing::info!(
            "model {} loaded on {} in {:.0} ms",
            files.name,
            backend.device_name(),
            t0.elapsed().as_secs_f64() * 1e3
        );
        Ok(Transcriber {
            backend,
            tokenizer,
            config,
            options,
            timings: Timings::default(),
            _model_lock: files.lock.clone(),
        })
    }

    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend.as_mut()
    }

    pub fn tokenizer(&self) -> &WhisperTokenizer {
        &self.tokenizer
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn options(&self) -> &TranscribeOptions {
        &self.options
    }

    pub fn set_options(&mut self, options: TranscribeOptions) {
        self.options = options;
    }

    /// Where the last `transcribe_samples` (or `transcribe_file`) call spent its time.
    /// The decoding options of one file and its language: the one asked for, or (multilingual
    /// checkpoints) the one detected on the first 30 s as OpenAI's `transcribe()` does, with
    /// its probability; detection leaves window 0 encoded in the backend.
    fn resolve_language(
        &mut self,
        mel: &crate::mel::LogMel,
    ) -> Result<(DecodeOptions, String, Option<f32>)> {
        let mut decode_opts = self.options.decode.clone();
        let mut language_probability = None;
        if decode_opts.language.is_none() && self.tokenizer.multilingual {
            let t = Instant::now();
            self.backend.encode(&mel.window(0))?;
            let probs = language::detect_language(self.backend.as_mut(), &self.tokenizer)?;
            let (code, p) = probs[0];
            tracing::info!("detected language: {code} (p = {p:.2})");
            decode_opts.language = Some(code.to_string());
            language_probability = Some(p);
            self.timings.language_ms = t.elapsed().as_secs_f64() * 1e3;
        }
        let language = decode_opts
            .language
            .clone()
            .unwrap_or_else(|| "en".to_string());
        Ok((decode_opts, language, language_probability))
    }

    /// `--initial-prompt` as tokens (with the leading space OpenAI adds), empty without one.
    fn initial_prompt_tokens(&self) -> Result<Vec<u32>> {
        match &self.options.initial_prompt {
            Some(p) => self.tokenizer.encode(&format!(" {}", p.trim())),
            None => Ok(Vec::new()),
        }
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Transcribe an audio file.
    pub fn transcribe_file(&mut self, path: &Path) -> Result<Transcript> {
        let samples = crate::audio::load_audio(path)?;
        self.transcribe_samples(&samples, &mut |_, _| {})
    }

    /// Decode the encoded window with temperature fallback (OpenAI's `decode_with_fallback`).
    fn decode_with_fallback(
        &mut self,
        decode: &DecodeOptions,
        rng: &mut Rng,
        timings: &mut WindowTimings,
    ) -> Result<DecodingResult> {
        decode_with_fallback(
            self.backend.as_mut(),
            &self.tokenizer,
            &self.config,
            &self.options,
            decode,
            &self.options.temperatures,
            rng,
            timings,
        )
    }

    /// Transcribe 16 kHz mono samples. `progress(done_s, total_s)` is called after each window
    /// (each batch with `batch_size` > 1).
    pub fn transcribe_samples(
        &mut self,
        samples: &[f32],
        progress: &mut dyn FnMut(f64, f64),
    ) -> Result<Transcript> {
        if self.options.batch_size > 1 {
            return self.transcribe_batched(samples, progress);
        }
        let start = Instant::now();
        self.timings = Timings::default();
        let mel = self.backend.log_mel(samples, self.config.dims.n_mels)?;
        self.timings.mel_ms = start.elapsed().as_secs_f64() * 1e3;
        let content_frames = mel.content_frames();
        let frame_secs = HOP_LENGTH as f64 / crate::audio::SAMPLE_RATE as f64;
        let total_s = content_frames as f64 * frame_secs;
        // Encoder frames per timestamp step: 3000 mel frames -> 1500 positions.
        let input_stride = N_FRAMES / self.config.dims.n_audio_ctx;

        let (mut decode_opts, language, language_probability) = self.resolve_language(&mel)?;
        // Window start (mel frame) of what the backend holds encoded: language detection
        // leaves window 0 there.
        let mut last_encoded: Option<usize> = language_probability.map(|_| 0);

        let mut rng = Rng::new(self.options.seed);
        let initial_prompt_tokens = self.initial_prompt_tokens()?;
        let mut all_tokens: Vec<u32> = initial_prompt_tokens.clone();
        let mut prompt_reset_since = 0;
        let mut segments: Vec<Segment> = Vec::new();
        let mut seek = 0usize;
        let mut last_speech_timestamp = 0.0f64;
        while seek < content_frames {
            // The window's first mel frame, kept for its segments' `seek` (the loop moves `seek`).
            let window_seek = seek;
            let time_offset = seek as f64 * frame_secs;
            let segment_size = N_FRAMES.min(content_frames - seek);
            let segment_duration = segment_size as f64 * frame_secs;
            // The window: mel frames [seek, seek + segment_size), padded to 3000 frames.
            let mut window = mel.window(seek);
            let zero_padded =
                segment_size < N_FRAMES && self.options.mel_padding == MelPadding::Zeros;
            if zero_padded {
                for row in window.chunks_exact_mut(N_FRAMES) {
                    row[segment_size..].fill(0.0);
                }
            }
            let mut wt = WindowTimings::default();
            // Language detection may already have encoded this very window.
            if last_encoded != Some(seek) || zero_padded {
                let t = Instant::now();
                self.backend.encode(&window)?;
                wt.encoder_ms = t.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(
                    "window at {time_offset:.2} s: encoder {:.0} ms",
                    wt.encoder_ms
                );
            }
            last_encoded = Some(seek);

            decode_opts.prompt = all_tokens[prompt_reset_since..].to_vec();
            let t = Instant::now();
            let result = self.decode_with_fallback(&decode_opts, &mut rng, &mut wt)?;
            wt.decoder_ms = t.elapsed().as_secs_f64() * 1e3;
            wt.tokens = result.tokens.len();
            tracing::debug!(
                "window at {time_offset:.2} s: {} tokens in {:.0} ms (T={})",
                result.tokens.len(),
                wt.decoder_ms,
                result.temperature
            );
            self.timings.windows.push(wt);

            if let Some(threshold) = self.options.no_speech_threshold {
                let mut skip = result.no_speech_prob > threshold;
                if self
                    .options
                    .logprob_threshold
                    .is_some_and(|l| result.avg_logprob > l)
                {
                    // Confident text despite the no-speech probability: keep it.
                    skip = false;
                }
                if skip {
                    seek += segment_size;
                    progress(seek.min(content_frames) as f64 * frame_secs, total_s);
                    continue;
                }
            }

            let tokens = &result.tokens;
            let tb = self.tokenizer.timestamp_begin;
            let is_ts: Vec<bool> = tokens.iter().map(|&t| t >= tb).collect();
            let single_timestamp_ending =
                is_ts.len() >= 2 && !is_ts[is_ts.len() - 2] && is_ts[is_ts.len() - 1];
            let mut consecutive: Vec<usize> = (1..tokens.len())
                .filter(|&i| is_ts[i - 1] && is_ts[i])
                .collect();
            let mut current: Vec<(f64, f64, Vec<u32>)> = Vec::new();
            if !consecutive.is_empty() {
                // Segments between timestamp pairs.
                if single_timestamp_ending {
                    consecutive.push(tokens.len());
                }
                let mut last_slice = 0;
                for &cut in &consecutive {
                    let sliced = &tokens[last_slice..cut];
                    let start = (sliced[0].saturating_sub(tb)) as f64 * TIME_PRECISION as f64;
                    let end = (sliced[sliced.len() - 1].saturating_sub(tb)) as f64
                        * TIME_PRECISION as f64;
                    current.push((time_offset + start, time_offset + end, sliced.to_vec()));
                    last_slice = cut;
                }
                if single_timestamp_ending {
                    // No speech after the last timestamp: the window is done.
                    seek += segment_size;
                } else {
                    // Re-decode the unfinished last segment from its start in the next window.
                    let last_timestamp_pos = (tokens[last_slice - 1] - tb) as usize;
                    seek += last_timestamp_pos * input_stride;
                }
            } else {
                let mut duration = segment_duration;
                if let Some(&last) = tokens.iter().rev().find(|&&t| t >= tb) {
                    if last != tb {
                        duration = (last - tb) as f64 * TIME_PRECISION as f64;
                    }
                }
                current.push((time_offset, time_offset + duration, tokens.clone()));
                seek += segment_size;
            }

            let mut words: Vec<Vec<Word>> = vec![Vec::new(); current.len()];
            if self.options.word_timestamps {
                let sot = self
                    .tokenizer
                    .sot_sequence(decode_opts.language.as_deref(), decode_opts.task)?;
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
                alignment::add_word_timestamps(
                    self.backend.as_mut(),
                    &self.tokenizer,
                    &self.config,
                    &sot,
                    &mut spans,
                    time_offset,
                    segment_size,
                    &language,
                    &mut last_speech_timestamp,
                )?;
                if let Some(w) = self.timings.windows.last_mut() {
                    w.align_ms = t.elapsed().as_secs_f64() * 1e3;
                }
                if !single_timestamp_ending {
                    // Resume right after the last word the window finished.
                    if let Some(last_word_end) =
                        words.iter().rev().find_map(|w| w.last()).map(|w| w.end)
                    {
                        if last_word_end > time_offset {
                            seek = (last_word_end * 100.0).round() as usize;
                        }
                    }
                }
            }

            for ((start, end, seg_tokens), words) in current.into_iter().zip(words) {
                let text = self.tokenizer.decode(&seg_tokens)?;
                // An instantaneous or empty segment carries nothing.
                if start == end || text.trim().is_empty() {
                    continue;
                }
                all_tokens.extend_from_slice(&seg_tokens);
                segments.push(Segment {
                    id: segments.len(),
                    seek: window_seek,
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
            if !self.options.condition_on_previous_text || result.temperature > 0.5 {
                // A hot decode is not a trustworthy prompt for the next window.
                prompt_reset_since = all_tokens.len();
            }
            progress(seek.min(content_frames) as f64 * frame_secs, total_s);
        }
        let text = self
            .tokenizer
            .decode(&all_tokens[initial_prompt_tokens.len()..])?;
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
