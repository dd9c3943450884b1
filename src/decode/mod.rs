//! Decoding one 30-s window (OpenAI's `DecodingTask`): the prompt, the token loop over a
//! [`Backend`], logit filters, greedy / sampling / beam search, and the window's result. Nothing
//! here knows which device ran.

pub mod alignment;
pub mod filters;
pub mod language;
pub mod search;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::backend::{self, Backend};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::tokenizer::{Task, WhisperTokenizer};
use filters::{ApplyTimestampRules, LogitFilter, SuppressBlank, SuppressTokens};
use search::{BeamSearch, Hypotheses, Rng, Sampler, TokenSearch};

/// How to decode one window (OpenAI's `DecodingOptions`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DecodeOptions {
    pub task: Task,
    /// Language code; `None` means English on English-only models (multilingual models detect
    /// it before decoding: see `transcribe`).
    pub language: Option<String>,
    /// 0 picks the likeliest token (greedy or beam search); above 0 samples.
    pub temperature: f32,
    /// Most tokens sampled per window (OpenAI: `n_text_ctx / 2`).
    pub sample_len: Option<usize>,
    /// Independent samples at temperature > 0, the best kept.
    pub best_of: Option<usize>,
    /// Beam search at temperature 0 (`None` or 1: greedy).
    pub beam_size: Option<usize>,
    /// Beam search keeps looking until `beam_size * patience` candidates finished.
    pub patience: Option<f32>,
    /// `None`: rank candidates by log-probability / length; `Some(a)`: Google NMT's
    /// `((5 + length) / 6) ^ a`.
    pub length_penalty: Option<f32>,
    /// Previous-context tokens, placed after `<|startofprev|>`.
    pub prompt: Vec<u32>,
    /// Suppress `" "` and end-of-text as the first sampled token.
    pub suppress_blank: bool,
    /// Extra ids never sampled, on top of the checkpoint's `suppress_tokens` and the special
    /// tokens OpenAI always suppresses.
    pub suppress_tokens: Vec<u32>,
    /// `<|notimestamps|>` mode: plain text, no timestamp tokens.
    pub without_timestamps: bool,
    /// Latest allowed first timestamp, seconds.
    pub max_initial_timestamp: Option<f32>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            task: Task::Transcribe,
            language: None,
            temperature: 0.0,
            sample_len: None,
            best_of: None,
            beam_size: None,
            patience: None,
            length_penalty: None,
            prompt: Vec::new(),
            suppress_blank: true,
            suppress_tokens: Vec::new(),
            without_timestamps: false,
            max_initial_timestamp: Some(1.0),
        }
    }
}

/// The outcome of decoding one window.
#[derive(Debug, Clone)]
pub struct DecodingResult {
    /// Sampled tokens (timestamps included), end-of-text excluded.
    pub tokens: Vec<u32>,
    pub text: String,
    /// Sum of the chosen sequence's log-probabilities (end-of-text included) over
    /// `tokens.len() + 1`, as OpenAI computes it.
    pub avg_logprob: f32,
    pub sum_logprob: f64,
    /// Probability of `<|nospeech|>` at the start-of-transcript position.
    pub no_speech_prob: f32,
    pub temperature: f32,
    pub compression_ratio: f32,
}

/// Seconds per timestamp step (the encoder's frame: 2 mel frames of 10 ms).
pub const TIME_PRECISION: f32 = 0.02;

/// Decode the window the backend has encoded.
pub fn decode_window(
    backend: &mut dyn Backend,
    tokenizer: &WhisperTokenizer,
    config: &ModelConfig,
    options: &DecodeOptions,
    rng: &mut Rng,
) -> Result<DecodingResult> {
    DecodingTask::new(tokenizer, config, options)?.run(backend, rng)
}

/// Stops a transcription from another thread: clone it, hand a clone to the work (see
/// `Hooks::cancel`), call [`CancelHandle::cancel`]. The decoder checks it before every backend
/// call, so the work ends within one decoder step with [`Error::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the work holding a clone of this handle to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What the decoder's forward calls cost, counted by the decoding loop itself (`bench`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecodeStats {
    /// Time inside `Backend::decode` / `decode_greedy` (the forward passes, read-back included).
    pub forward_ms: f64,
    /// Of `forward_ms`, the one-token-per-sequence steps (the prompt calls excluded).
    pub step_ms: f64,
    /// Forward calls that fed the prompt.
    pub prompt_calls: usize,
    /// One-token steps (each feeds one token to every sequence of the pass).
    pub steps: usize,
    /// Sequence-tokens those steps computed: `steps` x sequences.
    pub seq_tokens: usize,
}

impl DecodeStats {
    pub fn add(&mut self, o: &DecodeStats) {
        self.forward_ms += o.forward_ms;
        self.step_ms += o.step_ms;
        self.prompt_calls += o.prompt_calls;
        self.steps += o.steps;
        self.seq_tokens += o.seq_tokens;
    }
}

/// One window's decoding: built from the options, run once.
pub struct DecodingTask<'a> {
    /// The encoded window (of the backend's batch) `run` decodes.
    window: usize,
    cancel: Option<CancelHandle>,
    /// Behind a lock (uncontended) so that passes stay `Send` for the parallel host step.
    stats: Mutex<DecodeStats>,
    tokenizer: &'a WhisperTokenizer,
    options: &'a DecodeOptions,
    n_vocab: usize,
    n_ctx: usize,
    initial_tokens: Vec<u32>,
    sot_index: usize,
    sample_len: usize,
    filters: Vec<Box<dyn LogitFilter>>,
    /// Without timestamps the filters are plain suppressions: these ids (sorted) at the first
    /// sampled position and at every later one. Greedy decoding then lets the backend choose
    /// the token (`Backend::decode_greedy`).
    suppress_first: Vec<u32>,
    suppress_rest: Vec<u32>,
}

impl<'a> DecodingTask<'a> {
    pub fn new(
        tokenizer: &'a WhisperTokenizer,
        config: &ModelConfig,
        options: &'a DecodeOptions,
    ) -> Result<Self> {
        let n_vocab = config.dims.n_vocab;
        let n_ctx = config.dims.n_text_ctx;
        if options.beam_size.is_some_and(|b| b > 1) && options.best_of.is_some_and(|b| b > 1) {
            return Err(Error::Usage(
                "beam_size and best_of can't be given together".into(),
            ));
        }
        if options.temperature == 0.0 && options.best_of.is_some_and(|b| b > 1) {
            return Err(Error::Usage(
                "best_of with greedy sampling (T=0) is not compatible".into(),
            ));
        }
        if options.patience.is_some() && options.beam_size.is_none() {
            return Err(Error::Usage(
                "patience requires beam_size to be given".into(),
            ));
        }

        // Initial tokens: [<|startofprev|> prompt...] <|startoftranscript|> [lang task] [<|notimestamps|>]
        let mut initial_tokens = Vec::new();
        if !options.prompt.is_empty() {
            initial_tokens.push(tokenizer.sot_prev);
            let keep = (n_ctx / 2 - 1).min(options.prompt.len());
            initial_tokens.extend_from_slice(&options.prompt[options.prompt.len() - keep..]);
        }
        let sot_index = initial_tokens.len();
        initial_tokens.extend(tokenizer.sot_sequence(options.language.as_deref(), options.task)?);
        if options.without_timestamps {
            initial_tokens.push(tokenizer.no_timestamps);
        }
        let sample_len = options.sample_len.unwrap_or(n_ctx / 2);

        let mut filters: Vec<Box<dyn LogitFilter>> = Vec::new();
        let mut blank = Vec::new();
        if options.suppress_blank {
            blank = tokenizer.encode(" ")?;
            blank.push(tokenizer.eot);
            filters.push(Box::new(SuppressBlank::new(blank.clone())));
        }
        // OpenAI's `_get_suppress_tokens`: the checkpoint's non-speech list plus the task, start
        // and no-speech markers, which are never text.
        let mut suppress: Vec<u32> = config.suppress_tokens.clone();
        suppress.extend_from_slice(&options.suppress_tokens);
        suppress.extend([
            tokenizer.transcribe,
            tokenizer.translate,
            tokenizer.sot,
            tokenizer.sot_prev,
            tokenizer.no_speech,
        ]);
        if options.without_timestamps {
            // Timestamp tokens have no meaning in a plain-text decode.
            suppress.extend(tokenizer.no_timestamps..n_vocab as u32);
        }
        let suppress_tokens = SuppressTokens::new(suppress, n_vocab);
        let suppress_rest = suppress_tokens.ids().to_vec();
        let mut suppress_first: Vec<u32> = suppress_rest.iter().chain(&blank).copied().collect();
        suppress_first.sort_unstable();
        suppress_first.dedup();
        filters.push(Box::new(suppress_tokens));
        if !options.without_timestamps {
            let max_initial = options
                .max_initial_timestamp
                .map(|s| (s / TIME_PRECISION).round() as u32);
            filters.push(Box::new(ApplyTimestampRules::new(tokenizer, max_initial)));
        }
        Ok(DecodingTask {
            window: 0,
            cancel: None,
            stats: Mutex::new(DecodeStats::default()),
            tokenizer,
            options,
            n_vocab,
            n_ctx,
            sot_index,
            initial_tokens,
            sample_len,
            filters,
            suppress_first,
            suppress_rest,
        })
    }

    pub fn initial_tokens(&self) -> &[u32] {
        &self.initial_tokens
    }

    /// `run` decodes encoded window `window` of the backend's batch (default 0).
    pub fn on_window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Check `cancel` before every backend call.
    pub fn with_cancel(mut self, cancel: Option<CancelHandle>) -> Self {
        self.cancel = cancel;
        self
    }

    /// Forward-call figures of the runs so far.
    pub fn stats(&self) -> DecodeStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One forward call, checked for cancellation first and timed: a prompt call (`prompt`)
    /// or a one-token step over `n_seq` sequences.
    fn forward<T>(
        &self,
        backend: &mut dyn Backend,
        prompt: bool,
        call: impl FnOnce(&mut dyn Backend) -> Result<T>,
    ) -> Result<T> {
        if let Some(c) = &self.cancel {
            c.check()?;
        }
        let n_seq = backend.n_seq();
        let t = Instant::now();
        let r = call(backend);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.forward_ms += ms;
        if prompt {
            s.prompt_calls += 1;
        } else {
            s.steps += 1;
            s.seq_tokens += n_seq;
            s.step_ms += ms;
        }
        r
    }

    /// Start a pass of `n_seq` sequences on this task's window.
    fn begin(&self, backend: &mut dyn Backend, n_seq: usize) -> Result<()> {
        if self.window == 0 {
            backend.begin_decode(n_seq)
        } else {
            backend.begin_decode_windows(&vec![self.window; n_seq])
        }
    }

    /// Feed the initial tokens to one sequence; return (no-speech probability, logits of the
    /// last position) with the backend ready for sampling.
    fn feed_prompt(&self, backend: &mut dyn Backend, logits: &mut [f32]) -> Result<f32> {
        self.begin(backend, 1)?;
        // The no-speech probability is read at the start-of-transcript position, so the prompt
        // is fed in two parts when tokens follow it.
        let (head, tail) = self.initial_tokens.split_at(self.sot_index + 1);
        self.forward(backend, true, |b| b.decode(head, logits))?;
        let no_speech_prob = softmax_at(&logits[..self.n_vocab], self.tokenizer.no_speech as usize);
        if !tail.is_empty() {
            self.forward(backend, true, |b| b.decode(tail, logits))?;
        }
        Ok(no_speech_prob)
    }

    /// Filter each sequence's logits in place.
    fn apply_filters(&self, sampled: &[Vec<u32>], logits: &mut [f32]) {
        for (seq, row) in sampled.iter().zip(logits.chunks_exact_mut(self.n_vocab)) {
            for f in &self.filters {
                f.apply(seq, row);
            }
        }
    }

    /// Greedy decoding without timestamps: the backend picks each token (on a GPU, one integer
    /// and one log-probability come back per step instead of the vocabulary's logits).
    fn run_greedy_plain(&self, backend: &mut dyn Backend) -> Result<DecodingResult> {
        let mut logits = vec![0.0f32; self.n_vocab];
        self.begin(backend, 1)?;
        let (head, tail) = self.initial_tokens.split_at(self.sot_index + 1);
        self.forward(backend, true, |b| b.decode(head, &mut logits))?;
        let no_speech_prob = softmax_at(&logits, self.tokenizer.no_speech as usize);
        let (mut next, mut logprob) = if tail.is_empty() {
            backend::masked_argmax(&mut logits, &self.suppress_first)
        } else {
            self.forward(backend, true, |b| {
                b.decode_greedy(tail, &self.suppress_first)
            })?
        };
        let mut tokens = Vec::new();
        let mut sum_logprob = 0.0f64;
        loop {
            sum_logprob += logprob as f64;
            if next == self.tokenizer.eot {
                break;
            }
            tokens.push(next);
            if tokens.len() >= self.sample_len
                || self.initial_tokens.len() + tokens.len() > self.n_ctx
            {
                break;
            }
            (next, logprob) = self.forward(backend, false, |b| {
                b.decode_greedy(&[next], &self.suppress_rest)
            })?;
        }
        let text = self.tokenizer.decode(&tokens)?;
        Ok(DecodingResult {
            avg_logprob: (sum_logprob / (tokens.len() + 1) as f64) as f32,
            sum_logprob,
            compression_ratio: compression_ratio(&text),
            tokens,
            text,
            no_speech_prob,
            temperature: 0.0,
        })
    }

    /// Sequences one pass decodes: the beams, the best-of samples, or 1.
    pub fn n_group(&self) -> usize {
        let o = self.options;
        let beam = o.beam_size.filter(|&b| b > 1 && o.temperature == 0.0);
        beam.or(o.best_of.filter(|_| o.temperature > 0.0))
            .unwrap_or(1)
    }

    /// A pass's search state before its first token; `no_speech_prob` read off the prompt.
    fn begin_pass(&self, no_speech_prob: f32) -> WindowPass<'_, 'a> {
        let o = self.options;
        let search: Box<dyn TokenSearch> =
            match o.beam_size.filter(|&b| b > 1 && o.temperature == 0.0) {
                Some(b) => Box::new(BeamSearch::new(
                    b,
                    self.tokenizer.eot,
                    o.patience.unwrap_or(1.0),
                )),
                None => Box::new(Sampler::new(o.temperature, self.tokenizer.eot)),
            };
        let n_group = self.n_group();
        WindowPass {
            task: self,
            search,
            rows_before_step: n_group,
            hyps: Hypotheses::new(n_group),
            no_speech_prob,
            steps: 0,
            done: self.sample_len == 0,
        }
    }

    pub fn run(&self, backend: &mut dyn Backend, rng: &mut Rng) -> Result<DecodingResult> {
        let o = self.options;
        let greedy = o.temperature == 0.0 && o.beam_size.unwrap_or(1) <= 1;
        if greedy && o.without_timestamps {
            return self.run_greedy_plain(backend);
        }
        let n_group = self.n_group();
        let mut logits = vec![0.0f32; n_group * self.n_vocab];
        let no_speech_prob = self.feed_prompt(backend, &mut logits[..self.n_vocab])?;
        let mut pass = self.begin_pass(no_speech_prob);
        // Fan the decoded prompt out to the group: every sequence starts from the same state.
        if n_group > 1 {
            backend.reorder(&vec![0; n_group])?;
            let (first, rest) = logits.split_at_mut(self.n_vocab);
            for row in rest.chunks_exact_mut(self.n_vocab) {
                row.copy_from_slice(first);
            }
        }
        let mut feed = Vec::with_capacity(n_group);
        while !pass.is_done() {
            if let Some(src) = pass.step(&mut logits, rng) {
                backend.reorder(&src)?;
            }
            if pass.is_done() {
                break;
            }
            // Feed every sequence its newest token (finished ones keep getting end-of-text).
            feed.clear();
            feed.extend(pass.last_tokens());
            self.forward(backend, false, |b| {
                b.decode(&feed, &mut logits[..feed.len() * self.n_vocab])
            })?;
        }
        pass.finish()
    }

    /// Decode several encoded windows in lockstep, one pass each (`windows[i]`: the backend's
    /// window of pass `i`): every backend call carries the live sequences of every pass, in
    /// pass order, and each pass filters and searches its own rows exactly as `run` does. A
    /// pass that finishes leaves the batch (`Backend::reorder` drops its sequences). With a
    /// backend whose rows do not depend on each other (the `Backend` contract), each result
    /// equals decoding that window alone, except at temperatures above 0, where the passes
    /// draw from the one `rng` in turn. Greedy plain-text passes take the logits path here
    /// (`run` lets the backend pick their tokens): the same choices from the same logits.
    pub fn run_windows(
        &self,
        backend: &mut dyn Backend,
        windows: &[usize],
        rng: &mut Rng,
    ) -> Result<Vec<DecodingResult>> {
        self.lockstep(backend, windows, PassRngs::Shared(rng))
    }

    /// [`run_windows`](Self::run_windows) where pass `i` draws from `rngs[i]` alone (one per
    /// window), so that at any temperature each result equals decoding that window alone with
    /// its own sampler: e.g. the temperature fallback of several requests' windows.
    pub fn run_windows_each(
        &self,
        backend: &mut dyn Backend,
        windows: &[usize],
        rngs: &mut [Rng],
    ) -> Result<Vec<DecodingResult>> {
        if rngs.len() != windows.len() {
            return Err(Error::Internal(format!(
                "{} samplers for {} windows",
                rngs.len(),
                windows.len()
            )));
        }
        self.lockstep(backend, windows, PassRngs::Each(rngs))
    }

    fn lockstep(
        &self,
        backend: &mut dyn Backend,
        windows: &[usize],
        mut rngs: PassRngs<'_>,
    ) -> Result<Vec<DecodingResult>> {
        let v = self.n_vocab;
        let (n_win, n_group) = (windows.len(), self.n_group());
        if n_win == 0 {
            return Ok(Vec::new());
        }
        backend.begin_decode_windows(windows)?;
        // The prompt, in two parts as in `feed_prompt` (no-speech at start-of-transcript).
        let (head, tail) = self.initial_tokens.split_at(self.sot_index + 1);
        let mut logits = vec![0.0f32; n_win * n_group * v];
        let mut feed: Vec<u32> = Vec::with_capacity(n_win * n_group.max(head.len()));
        feed.extend((0..n_win).flat_map(|_| head.iter().copied()));
        self.forward(backend, true, |b| b.decode(&feed, &mut logits[..n_win * v]))?;
        let mut passes: Vec<WindowPass<'_, 'a>> = logits
            .chunks_exact(v)
            .take(n_win)
            .map(|row| self.begin_pass(softmax_at(row, self.tokenizer.no_speech as usize)))
            .collect();
        if !tail.is_empty() {
            feed.clear();
            feed.extend((0..n_win).flat_map(|_| tail.iter().copied()));
            self.forward(backend, true, |b| b.decode(&feed, &mut logits[..n_win * v]))?;
        }
        if n_group > 1 {
            // Fan each pass's prompt out to its group; rows move back to front so that no
            // source row is overwritten before it is copied.
            let src: Vec<usize> = (0..n_win).flat_map(|p| [p].repeat(n_group)).collect();
            backend.reorder(&src)?;
            for p in (0..n_win).rev() {
                for j in (0..n_group).rev() {
                    logits.copy_within(p * v..(p + 1) * v, (p * n_group + j) * v);
                }
            }
        }
        let mut live: Vec<usize> = (0..n_win).filter(|&p| !passes[p].is_done()).collect();
        let mut still_live = Vec::with_capacity(n_win);
        let mut src = Vec::with_capacity(n_win * n_group);
        // At temperature 0 no pass draws from `rng`, and passes with samplers of their own do
        // not share one, so the passes' host-side work (filters, search: a log-softmax of
        // every row in beam search, a softmax per row in sampling) runs in parallel.
        let independent = self.options.temperature == 0.0 || matches!(rngs, PassRngs::Each(_));
        let parallel = independent && rayon::current_num_threads() > 1;
        let mut reorders: Vec<Option<Vec<usize>>> = vec![None; n_win];
        while !live.is_empty() {
            src.clear();
            still_live.clear();
            if parallel && live.len() > 1 {
                use rayon::prelude::*;
                // `live` is increasing and holds exactly the passes not done, so the passes
                // not done, in order, own consecutive row blocks of `logits`.
                let mut rest = &mut logits[..];
                let mut work = Vec::with_capacity(live.len());
                for (p, (pass, reorder)) in passes.iter_mut().zip(reorders.iter_mut()).enumerate() {
                    if !pass.is_done() {
                        let (rows, tail) = std::mem::take(&mut rest).split_at_mut(pass.n_seq() * v);
                        rest = tail;
                        let rng = match &rngs {
                            PassRngs::Each(r) => r[p].clone(),
                            // Not drawn from at temperature 0.
                            PassRngs::Shared(_) => Rng::new(0),
                        };
                        work.push((p, pass, reorder, rows, rng));
                    }
                }
                let drawn: Vec<(usize, Rng)> = work
                    .into_par_iter()
                    .map(|(p, pass, reorder, rows, mut rng)| {
                        *reorder = pass.step(rows, &mut rng);
                        (p, rng)
                    })
                    .collect();
                if let PassRngs::Each(r) = &mut rngs {
                    for (p, rng) in drawn {
                        r[p] = rng;
                    }
                }
            } else {
                let mut row = 0;
                for &p in &live {
                    let n = passes[p].n_seq();
                    let rng = match &mut rngs {
                        PassRngs::Shared(r) => &mut **r,
                        PassRngs::Each(r) => &mut r[p],
                    };
                    reorders[p] = passes[p].step(&mut logits[row * v..(row + n) * v], rng);
                    row += n;
                }
            }
            let mut changed = false;
            let mut row = 0;
            for &p in &live {
                let pass = &passes[p];
                // Rows of the pass before this step (the search may change their number).
                let n = pass.rows_before_step;
                let reorder = reorders[p].take();
                if pass.is_done() {
                    changed = true;
                } else {
                    match reorder {
                        Some(r) => {
                            changed = true;
                            src.extend(r.iter().map(|&i| row + i));
                        }
                        None => src.extend(row..row + n),
                    }
                    still_live.push(p);
                }
                row += n;
            }
            std::mem::swap(&mut live, &mut still_live);
            if live.is_empty() {
                break;
            }
            if changed {
                backend.reorder(&src)?;
            }
            feed.clear();
            for &p in &live {
                feed.extend(passes[p].last_tokens());
            }
            if logits.len() < feed.len() * v {
                logits.resize(feed.len() * v, 0.0);
            }
            self.forward(backend, false, |b| {
                b.decode(&feed, &mut logits[..feed.len() * v])
            })?;
        }
        passes.into_iter().map(WindowPass::finish).collect()
    }

    /// The filtered logits for the position after `initial tokens + sampled` (teacher forcing),
    /// for tests and diagnostics: e.g. showing that a token where two decoders differ is a
    /// near-tie.
    pub fn logits_after(&self, backend: &mut dyn Backend, sampled: &[u32]) -> Result<Vec<f32>> {
        let mut seq = self.initial_tokens.clone();
        seq.extend_from_slice(sampled);
        let mut logits = vec![0.0; self.n_vocab];
        backend.begin_decode(1)?;
        backend.decode(&seq, &mut logits)?;
        self.apply_filters(&[sampled.to_vec()], &mut logits);
        Ok(logits)
    }
}

/// The samplers of a lockstep decode: one that the passes draw from in turn, or one per pass.
enum PassRngs<'r> {
    Shared(&'r mut Rng),
    Each(&'r mut [Rng]),
}

/// One decoding pass over one window between backend calls: the sequences sampled so far,
/// their log-probabilities and the search. `DecodingTask::run` drives one; `run_windows` drives
/// several in lockstep. Each `step` takes the logits of this pass's sequences (one row each).
pub struct WindowPass<'t, 'a> {
    task: &'t DecodingTask<'a>,
    search: Box<dyn TokenSearch>,
    hyps: Hypotheses,
    /// Sequences (rows of logits) the last `step` was given.
    rows_before_step: usize,
    no_speech_prob: f32,
    steps: usize,
    done: bool,
}

impl WindowPass<'_, '_> {
    /// Sequences of the pass now (a row of logits each).
    pub fn n_seq(&self) -> usize {
        self.hyps.tokens.len()
    }

    /// No more tokens are wanted (all sequences ended, the sample length or the context is
    /// reached).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Filter `logits` (one row per sequence, in place) and choose every sequence's next
    /// token. Returns the re-indexing of the sequences (beam search) that the backend's caches
    /// must follow, in this pass's own indices.
    pub fn step(&mut self, logits: &mut [f32], rng: &mut Rng) -> Option<Vec<usize>> {
        let task = self.task;
        self.rows_before_step = self.hyps.tokens.len();
        task.apply_filters(&self.hyps.tokens, logits);
        let rows = logits.chunks_exact(task.n_vocab);
        let step = self.search.update(&mut self.hyps, rows, rng);
        self.steps += 1;
        self.done = step.completed
            || task.initial_tokens.len() + self.hyps.tokens[0].len() > task.n_ctx
            || self.steps >= task.sample_len;
        step.reorder
    }

    /// Every sequence's newest token, to feed next (finished ones keep getting end-of-text).
    pub fn last_tokens(&self) -> impl Iterator<Item = u32> + '_ {
        self.hyps
            .tokens
            .iter()
            .map(|s| *s.last().expect("a step samples one token per sequence"))
    }

    /// Rank the candidates (OpenAI's MaximumLikelihoodRanker: sum log-probability over a length
    /// penalty) and return the best as the window's result.
    pub fn finish(mut self) -> Result<DecodingResult> {
        let task = self.task;
        let o = task.options;
        let candidates = self.search.finalize(&self.hyps);
        let score = |c: &search::Candidate| {
            let len = c.tokens.len() as f64;
            let penalty = match o.length_penalty {
                None => len,
                Some(a) => ((5.0 + len) / 6.0).powf(a as f64),
            };
            c.sum_logprob / penalty
        };
        let best = candidates
            .iter()
            .enumerate()
            .fold(None::<(usize, f64)>, |acc, (i, c)| match acc {
                Some((_, s)) if s >= score(c) => acc,
                _ => Some((i, score(c))),
            })
            .map(|(i, _)| i)
            .ok_or_else(|| Error::Internal("decoding produced no candidate".into()))?;
        let chosen = &candidates[best];
        let text = task.tokenizer.decode(&chosen.tokens)?;
        Ok(DecodingResult {
            avg_logprob: (chosen.sum_logprob / (chosen.tokens.len() + 1) as f64) as f32,
            sum_logprob: chosen.sum_logprob,
            compression_ratio: compression_ratio(&text),
            tokens: chosen.tokens.clone(),
            text,
            no_speech_prob: self.no_speech_prob,
            temperature: o.temperature,
        })
    }
}

/// Times are reported to the centisecond, as the timestamp tokens resolve 20 ms.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `log_softmax(x)[i]`.
pub fn log_softmax_at(x: &[f32], i: usize) -> f32 {
    x[i] - crate::backend::cpu::ops::log_sum_exp(x)
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
