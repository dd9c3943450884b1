//! Decoding one 30-s window: the token loop over a [`Backend`], logit filters, and the
//! per-window result (tokens, text, confidence). Nothing here knows which device ran.

pub mod filters;

use std::io::Write;

use crate::backend::Backend;
use crate::error::Result;
use crate::tokenizer::{Task, WhisperTokenizer};
use filters::{LogitFilter, SuppressBlank, SuppressTokens};

/// How to decode one window (OpenAI's `DecodingOptions`, the parts implemented so far).
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub task: Task,
    /// Language code for multilingual models; `None` means English.
    pub language: Option<String>,
    /// Suppress `" "` and end-of-text as the first sampled token.
    pub suppress_blank: bool,
    /// Extra ids never sampled, on top of the checkpoint's `suppress_tokens` and the special
    /// tokens OpenAI always suppresses.
    pub suppress_tokens: Vec<u32>,
    /// Most tokens sampled per window; `None` fills the text context (448 minus the prompt).
    pub sample_len: Option<usize>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            task: Task::Transcribe,
            language: None,
            suppress_blank: true,
            suppress_tokens: Vec::new(),
            sample_len: None,
        }
    }
}

/// The outcome of decoding one window.
#[derive(Debug, Clone)]
pub struct DecodingResult {
    /// Sampled tokens, end-of-text excluded.
    pub tokens: Vec<u32>,
    pub text: String,
    /// Sum of the sampled tokens' log-probabilities (end-of-text included) over `tokens.len() + 1`,
    /// as OpenAI computes it.
    pub avg_logprob: f32,
    /// Probability of `<|nospeech|>` at the start-of-transcript position.
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f32,
}

/// Decodes windows with one backend and tokenizer; holds the filters and the logits buffer so
/// the token loop allocates nothing per step.
pub struct Decoder<'a> {
    tokenizer: &'a WhisperTokenizer,
    options: DecodeOptions,
    filters: Vec<Box<dyn LogitFilter>>,
    logits: Vec<f32>,
}

impl<'a> Decoder<'a> {
    /// `checkpoint_suppress` is the model's `suppress_tokens`; `begin_suppress` its
    /// `begin_suppress_tokens` (used when `options.suppress_blank`).
    pub fn new(
        tokenizer: &'a WhisperTokenizer,
        n_vocab: usize,
        checkpoint_suppress: &[u32],
        begin_suppress: &[u32],
        options: DecodeOptions,
    ) -> Result<Self> {
        let mut suppress: Vec<u32> = checkpoint_suppress.to_vec();
        suppress.extend_from_slice(&options.suppress_tokens);
        // OpenAI's `_get_suppress_tokens`: task, start and no-speech markers are never text.
        suppress.extend([
            tokenizer.transcribe,
            tokenizer.translate,
            tokenizer.sot,
            tokenizer.sot_prev,
            tokenizer.no_speech,
        ]);
        // Without timestamps, timestamp tokens have no meaning in the output.
        suppress.extend(tokenizer.no_timestamps..n_vocab as u32);
        let mut filters: Vec<Box<dyn LogitFilter>> =
            vec![Box::new(SuppressTokens::new(suppress, n_vocab))];
        if options.suppress_blank {
            let mut blank = begin_suppress.to_vec();
            if blank.is_empty() {
                blank = tokenizer.encode(" ")?;
                blank.push(tokenizer.eot);
            }
            filters.push(Box::new(SuppressBlank::new(blank)));
        }
        Ok(Decoder {
            tokenizer,
            options,
            filters,
            logits: vec![0.0; n_vocab],
        })
    }

    /// The prompt of every window: start-of-transcript (+ language, task) + `<|notimestamps|>`.
    pub fn prompt(&self) -> Result<Vec<u32>> {
        let mut p = self
            .tokenizer
            .sot_sequence(self.options.language.as_deref(), self.options.task)?;
        p.push(self.tokenizer.no_timestamps);
        Ok(p)
    }

    /// The filtered logits for the position after `prompt + sampled` (teacher forcing), for
    /// tests and diagnostics: e.g. showing that a token where two decoders differ is a near-tie.
    pub fn logits_after(&mut self, backend: &mut dyn Backend, sampled: &[u32]) -> Result<&[f32]> {
        let mut seq = self.prompt()?;
        seq.extend_from_slice(sampled);
        backend.reset_decoder();
        backend.decode(&seq, &mut self.logits)?;
        for f in &self.filters {
            f.apply(sampled, &mut self.logits);
        }
        Ok(&self.logits)
    }

    /// Greedy decoding of the window the backend has encoded.
    pub fn decode_greedy(&mut self, backend: &mut dyn Backend) -> Result<DecodingResult> {
        let prompt = self.prompt()?;
        let n_ctx = backend.dims().n_text_ctx;
        let sample_len = self
            .options
            .sample_len
            .unwrap_or(n_ctx)
            .min(n_ctx - prompt.len());
        backend.reset_decoder();

        // The no-speech probability is read at the start-of-transcript position, so the prompt is
        // fed in two parts: up to and including `<|startoftranscript|>`, then the rest.
        let sot_index = prompt
            .iter()
            .position(|&t| t == self.tokenizer.sot)
            .unwrap_or(0);
        backend.decode(&prompt[..=sot_index], &mut self.logits)?;
        let no_speech_prob = softmax_at(&self.logits, self.tokenizer.no_speech as usize);
        backend.decode(&prompt[sot_index + 1..], &mut self.logits)?;

        let mut tokens: Vec<u32> = Vec::with_capacity(sample_len);
        let mut sum_logprob = 0.0f64;
        loop {
            for f in &self.filters {
                f.apply(&tokens, &mut self.logits);
            }
            let next = argmax(&self.logits);
            sum_logprob += log_softmax_at(&self.logits, next as usize) as f64;
            if next == self.tokenizer.eot {
                break;
            }
            tokens.push(next);
            if tokens.len() >= sample_len || backend.cached_len() >= n_ctx {
                break;
            }
            backend.decode(&[next], &mut self.logits)?;
        }
        let text = self.tokenizer.decode(&tokens)?;
        Ok(DecodingResult {
            avg_logprob: (sum_logprob / (tokens.len() + 1) as f64) as f32,
            compression_ratio: compression_ratio(&text),
            tokens,
            text,
            no_speech_prob,
            temperature: 0.0,
        })
    }
}

fn argmax(x: &[f32]) -> u32 {
    crate::backend::cpu::ops::argmax(x) as u32
}

/// `log_softmax(x)[i]`, computed stably in f64.
pub fn log_softmax_at(x: &[f32], i: usize) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    (x[i] as f64 - max - sum.ln()) as f32
}

pub fn softmax_at(x: &[f32], i: usize) -> f32 {
    log_softmax_at(x, i).exp()
}

/// OpenAI's `compression_ratio`: UTF-8 length over zlib-compressed length. Repetitive
/// (hallucinated) text compresses well, so a high ratio flags a failed decode.
pub fn compression_ratio(text: &str) -> f32 {
    if text.is_empty() {
        return 0.0;
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(text.as_bytes())
        .expect("writing to a Vec cannot fail");
    let compressed = enc.finish().expect("writing to a Vec cannot fail");
    text.len() as f32 / compressed.len() as f32
}
