//! The pipeline driver: audio file -> samples -> log-mel -> windows -> encoder -> decoder ->
//! segments. `Transcriber` is the library's public entry point.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::backend::{cpu::CpuModel, Backend};
use crate::decode::{DecodeOptions, Decoder};
use crate::error::{Error, Result};
use crate::mel::{self, N_FRAMES};
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

/// One decoded span of audio, shaped as openai-whisper's result segments.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    pub id: usize,
    /// Start of the window, in mel frames (10 ms each).
    pub seek: usize,
    pub start: f64,
    pub end: f64,
    pub text: String,
    pub tokens: Vec<u32>,
    pub temperature: f32,
    pub avg_logprob: f32,
    pub compression_ratio: f32,
    pub no_speech_prob: f32,
}

/// openai-whisper's `transcribe()` result.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub text: String,
    pub language: String,
    pub segments: Vec<Segment>,
}

/// A loaded model, ready to transcribe any number of files.
pub struct Transcriber {
    backend: Box<dyn Backend>,
    tokenizer: WhisperTokenizer,
    config: ModelConfig,
    options: DecodeOptions,
}

impl Transcriber {
    /// Resolve `model` (alias, repo id or directory) and load it on `device`.
    pub fn new(model: &str, device: DeviceChoice, options: DecodeOptions) -> Result<Self> {
        let files = hub::resolve(model)?;
        Self::from_files(&files, device, options)
    }

    pub fn from_files(
        files: &ModelFiles,
        device: DeviceChoice,
        options: DecodeOptions,
    ) -> Result<Self> {
        let t0 = Instant::now();
        let config = ModelConfig::from_dir(&files.dir)?;
        let tokenizer = WhisperTokenizer::from_file(&files.tokenizer(), config.dims.n_vocab)?;
        // Fail on a bad language/task request now, not at the first window.
        tokenizer.sot_sequence(options.language.as_deref(), options.task)?;
        let backend: Box<dyn Backend> = match device {
            DeviceChoice::Gpu => {
                return Err(Error::Device(
                    "the GPU backend is not available yet in this build; use --device cpu".into(),
                ))
            }
            DeviceChoice::Auto | DeviceChoice::Cpu => {
                let weights = Weights::open(&files.weights())?;
                Box::new(CpuModel::load(&weights, &config.dims)?)
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

    /// Transcribe an audio file.
    pub fn transcribe_file(&mut self, path: &Path) -> Result<Transcript> {
        let samples = crate::audio::load_audio(path)?;
        self.transcribe_samples(&samples)
    }

    /// Transcribe 16 kHz mono samples: consecutive 30-s windows, one segment each.
    pub fn transcribe_samples(&mut self, samples: &[f32]) -> Result<Transcript> {
        let mel = mel::log_mel_spectrogram(samples, self.config.dims.n_mels);
        let mut decoder = Decoder::new(
            &self.tokenizer,
            self.config.dims.n_vocab,
            &self.config.suppress_tokens,
            &self.config.begin_suppress_tokens,
            self.options.clone(),
        )?;
        let content_frames = mel.content_frames();
        let frame_secs = mel::HOP_LENGTH as f64 / crate::audio::SAMPLE_RATE as f64;
        let mut segments = Vec::new();
        for w in 0..mel.n_windows() {
            let seek = w * N_FRAMES;
            let window = mel.window(seek);
            let t = Instant::now();
            self.backend.encode(&window)?;
            let enc_ms = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let result = decoder.decode_greedy(self.backend.as_mut())?;
            tracing::debug!(
                "window {w}: encoder {enc_ms:.0} ms, decoder {:.0} ms for {} tokens",
                t.elapsed().as_secs_f64() * 1e3,
                result.tokens.len()
            );
            let end_frame = (seek + N_FRAMES).min(content_frames.max(seek));
            segments.push(Segment {
                id: segments.len(),
                seek,
                start: seek as f64 * frame_secs,
                end: end_frame as f64 * frame_secs,
                text: result.text,
                tokens: result.tokens,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
            });
        }
        let text = segments.iter().map(|s| s.text.as_str()).collect::<String>();
        let language = match (&self.options.language, self.tokenizer.multilingual) {
            (Some(l), _) => l.clone(),
            _ => "en".to_string(),
        };
        Ok(Transcript {
            text,
            language,
            segments,
        })
    }
}
