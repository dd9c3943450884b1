//! LocalAgreement-2 (Macháček et al. 2023, ufal whisper_streaming's `OnlineASRProcessor` and
//! `HypothesisBuffer`): every step transcribes the whole buffer; the longest prefix of words that
//! two consecutive hypotheses agree on is committed and never revised.

use std::collections::VecDeque;

use super::{StepRequest, StreamConfig, StreamEvent};
use crate::audio::SAMPLE_RATE;
use crate::decode::alignment::Word;
use crate::transcribe::{TranscribeOptions, Transcript};

/// A hypothesis repeats the committed words it re-transcribes with times that jitter by a few
/// hundred ms: their end is looked for this far around the committed end.
const ANCHOR_WINDOW_S: f64 = 1.5;
/// Committed words matched when looking for them (whisper_streaming's n-gram check: 5).
const MAX_OVERLAP_WORDS: usize = 5;
/// Characters of committed text fed as the prompt (whisper_streaming's 200).
const PROMPT_CHARS: usize = 200;
/// Committed words remembered for the prompt and the overlap check.
const RECENT_WORDS: usize = 256;
/// A hypothesis whose words stop this long before its audio ends has stalled (see `flush`).
const STALL_S: f64 = 3.0;
/// When the buffer must shrink without agreement, words ending this close to the end of the
/// audio are not forced out: the last word of a hypothesis is often cut off mid-word.
const FORCE_MARGIN_S: f64 = 1.0;

/// The LocalAgreement-2 state of one stream. Cheap to keep: the buffer (at most
/// `max_buffer_s` of samples) and a few dozen words.
#[derive(Debug)]
pub struct LocalAgreement {
    config: StreamConfig,
    /// The audio the next step transcribes; `buffer[0]` is sample `buffer_start` of the stream.
    buffer: Vec<f32>,
    buffer_start: u64,
    /// Samples pushed since the start of the stream.
    received: u64,
    /// `received` when the last step was taken.
    looked_at: u64,
    /// The last committed words (times in stream seconds), for the prompt and overlap check.
    recent: VecDeque<Word>,
    /// End of the last committed word, stream seconds.
    committed_end: f64,
    /// Everything committed so far: the `done` text.
    committed_text: String,
    /// The previous hypothesis' words after the committed ones, waiting for a second opinion.
    unconfirmed: Vec<Word>,
    last_partial: String,
    language: Option<String>,
    /// Seconds of audio dropped unseen because no step came while the buffer was full.
    dropped_s: f64,
    /// Steps handed out by `take_step`.
    steps: usize,
    finished: bool,
}

impl LocalAgreement {
    /// A new stream. Settings out of range are clamped (`StreamConfig::validate` reports them).
    pub fn new(mut config: StreamConfig) -> Self {
        config.step_ms = config.step_ms.clamp(100, 30_000);
        if !(config.max_buffer_s.is_finite() && config.max_buffer_s > 0.0) {
            config.max_buffer_s = 30.0;
        }
        let floor = (2.0 * config.step_ms as f32 / 1e3).min(30.0);
        config.max_buffer_s = config.max_buffer_s.clamp(floor, 30.0);
        if !(config.trim_after_s.is_finite() && config.trim_after_s > 0.0) {
            config.trim_after_s = 15.0;
        }
        config.trim_after_s = config.trim_after_s.min(config.max_buffer_s * 0.75);
        LocalAgreement {
            config,
            buffer: Vec::new(),
            buffer_start: 0,
            received: 0,
            looked_at: 0,
            recent: VecDeque::new(),
            committed_end: 0.0,
            committed_text: String::new(),
            unconfirmed: Vec::new(),
            last_partial: String::new(),
            language: None,
            dropped_s: 0.0,
            steps: 0,
            finished: false,
        }
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Buffer 16-kHz mono samples. Only copies: steps are [`take_step`](Self::take_step)'s.
    /// A buffer past `max_buffer_s` (no step taken for that long) drops its oldest audio.
    pub fn push(&mut self, samples_16k: &[f32]) {
        if self.finished {
            return;
        }
        self.buffer.extend_from_slice(samples_16k);
        self.received += samples_16k.len() as u64;
        let max = self.max_samples();
        if self.buffer.len() > max {
            let excess = self.buffer.len() - max;
            self.drop_front(excess);
            if self.dropped_s == 0.0 {
                tracing::warn!(
                    "stream: no step for {:.1} s of audio; dropping the oldest",
                    self.config.max_buffer_s
                );
            }
            self.dropped_s += excess as f64 / SAMPLE_RATE as f64;
        }
    }

    /// At least `step_ms` of audio arrived since the last step.
    pub fn step_due(&self) -> bool {
        !self.finished
            && self.received - self.looked_at
                >= self.config.step_ms as u64 * SAMPLE_RATE as u64 / 1000
    }

    /// The next step: the whole buffer with everything that arrived since the last step (a
    /// step that fell behind catches up in one go). None when no audio arrived since.
    pub fn take_step(&mut self) -> Option<StepRequest> {
        if self.finished || self.received == self.looked_at || self.buffer.is_empty() {
            return None;
        }
        self.looked_at = self.received;
        self.steps += 1;
        Some(StepRequest {
            samples: self.buffer.clone(),
            offset_s: self.buffer_start_s(),
            prompt: self.prompt(),
            language: self.language.clone(),
        })
    }

    /// The options of a step: `base` with the step's prompt and language, word timings on
    /// (agreement is by word), one deterministic decode (no temperature fallback: a sampled
    /// retry would make consecutive hypotheses disagree at random) and the sequential loop.
    pub fn options_for_step(base: &TranscribeOptions, req: &StepRequest) -> TranscribeOptions {
        let mut options = base.clone();
        options.word_timestamps = true;
        options.decode.without_timestamps = false;
        options.temperature = 0.0;
        options.temperature_increment_on_fallback = 0.0;
        options.batch_size = 1;
        options.initial_prompt = (!req.prompt.trim().is_empty()).then(|| req.prompt.clone());
        if options.decode.language.is_none() {
            options.decode.language = req.language.clone();
        }
        options
    }

    /// Take a step's hypothesis: commit what it agrees on with the previous one, report the
    /// rest as a partial, and trim the buffer.
    pub fn apply(&mut self, req: &StepRequest, hypothesis: &Transcript) -> Vec<StreamEvent> {
        if self.finished {
            return Vec::new();
        }
        if self.language.is_none() {
            self.language = Some(hypothesis.language.clone());
        }
        let new = self.fresh_words(req, hypothesis);
        let agreed = new
            .iter()
            .zip(&self.unconfirmed)
            .take_while(|(a, b)| same_word(&a.word, &b.word))
            .count();
        let mut events = Vec::new();
        let mut new = new;
        let rest = new.split_off(agreed);
        self.commit(new, &mut events);
        self.unconfirmed = rest;
        self.trim(req, hypothesis, &mut events);
        // The decoder stopped at the committed words although audio went on: start the next
        // window right after them (a window that starts mid-sentence may stop early again).
        if self.unconfirmed.is_empty()
            && self.committed_end > self.buffer_start_s()
            && req.end_s() - self.committed_end > STALL_S
        {
            self.cut_at(self.committed_end);
        }
        tracing::debug!(
            "stream: committed to {:.2} s, {} words unconfirmed, buffer {:.2} s from {:.2} s",
            self.committed_end,
            self.unconfirmed.len(),
            self.buffer_s(),
            self.buffer_start_s()
        );
        if self.config.partials {
            let text: String = self.unconfirmed.iter().map(|w| w.word.as_str()).collect();
            if !text.is_empty() && text != self.last_partial {
                events.push(StreamEvent::Partial {
                    start: self.unconfirmed[0].start,
                    end: self.unconfirmed[self.unconfirmed.len() - 1].end,
                    text: text.clone(),
                });
            }
            self.last_partial = text;
        }
        events
    }

    /// End the stream: commit the words of `last` (the step over the audio left, if any was)
    /// after the committed ones, or else the unconfirmed tail, then [`StreamEvent::Done`].
    /// (To also transcribe what `last` left out, call [`flush`](Self::flush) while
    /// [`take_step`](Self::take_step) has steps, then `finish(None)`, as
    /// [`LiveSession::finish`](super::LiveSession::finish) does.)
    pub fn finish(&mut self, last: Option<(&StepRequest, &Transcript)>) -> Vec<StreamEvent> {
        if self.finished {
            return Vec::new();
        }
        let mut events = match last {
            Some((req, hypothesis)) => self.flush(req, hypothesis),
            None => Vec::new(),
        };
        let tail = std::mem::take(&mut self.unconfirmed);
        self.commit(tail, &mut events);
        self.buffer = Vec::new();
        self.finished = true;
        events.push(StreamEvent::Done {
            text: self.committed_text.clone(),
        });
        events
    }

    /// At the end of the input: commit every word of a step's hypothesis after the committed
    /// ones, without waiting for agreement. A hypothesis that stops more than
    /// `STALL_S` before the audio does (the decoder ended early, as tiny models do on a window
    /// that starts mid-sentence) leaves the rest pending again, from its last word: the next
    /// [`take_step`](Self::take_step) returns it.
    pub fn flush(&mut self, req: &StepRequest, hypothesis: &Transcript) -> Vec<StreamEvent> {
        if self.finished {
            return Vec::new();
        }
        let mut events = Vec::new();
        let words = self.fresh_words(req, hypothesis);
        let progress = !words.is_empty();
        self.commit(words, &mut events);
        self.unconfirmed.clear();
        if progress && req.end_s() - self.committed_end > STALL_S {
            self.cut_at(self.committed_end);
            self.looked_at = self.looked_at.min(self.buffer_start);
        } else {
            // All of it was seen: nothing is pending.
            self.looked_at = self.received;
        }
        events
    }

    /// The audio since the last step holds no speech (a voice-activity detector said so):
    /// take it as seen without a step, and drop the buffer up to its last `keep_s` seconds
    /// (room for a speech onset the detector is late on), so the next step starts near the
    /// next speech with the committed text as its prompt. Does nothing, and returns false,
    /// while words wait for confirmation: the next step's hypothesis settles them.
    pub fn skip_silence(&mut self, keep_s: f64) -> bool {
        if self.finished || !self.unconfirmed.is_empty() || self.received == self.looked_at {
            return false;
        }
        self.looked_at = self.received;
        let end = self.buffer_start_s() + self.buffer_s();
        self.cut_at(end - keep_s.max(0.0));
        true
    }

    /// Stream time of everything pushed, seconds.
    pub fn received_s(&self) -> f64 {
        self.received as f64 / SAMPLE_RATE as f64
    }

    /// Seconds of audio buffered for the next step.
    pub fn buffer_s(&self) -> f64 {
        self.buffer.len() as f64 / SAMPLE_RATE as f64
    }

    /// Everything committed so far.
    pub fn committed_text(&self) -> &str {
        &self.committed_text
    }

    /// Steps handed out so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Seconds of audio dropped before any step saw them (a driver that fell 30 s behind).
    pub fn dropped_s(&self) -> f64 {
        self.dropped_s
    }

    fn buffer_start_s(&self) -> f64 {
        self.buffer_start as f64 / SAMPLE_RATE as f64
    }

    fn max_samples(&self) -> usize {
        (self.config.max_buffer_s as f64 * SAMPLE_RATE as f64) as usize
    }

    /// The hypothesis' words in stream time, without those already committed. Times of the
    /// same word move between hypotheses, so the committed tail is found by its spelling first
    /// (the longest run of the last committed words that the hypothesis repeats, ending near
    /// the committed end); a hypothesis that spells them differently is cut by time: words
    /// whose middle lies past the committed end are new.
    fn fresh_words(&self, req: &StepRequest, hypothesis: &Transcript) -> Vec<Word> {
        let words: Vec<Word> = hypothesis
            .segments
            .iter()
            .flat_map(|s| match &s.words {
                Some(words) => words.clone(),
                // A transcript without word timings: each segment counts as one word.
                None => vec![Word {
                    word: s.text.clone(),
                    start: s.start,
                    end: s.end,
                    probability: 1.0,
                }],
            })
            .filter(|w| !w.word.trim().is_empty())
            .map(|mut w| {
                w.start = millis(w.start + req.offset_s);
                w.end = millis(w.end + req.offset_s);
                w
            })
            .collect();
        match self.anchor(&words) {
            Some(last_committed) => words[last_committed + 1..].to_vec(),
            None => words
                .into_iter()
                .filter(|w| (w.start + w.end) / 2.0 > self.committed_end)
                .collect(),
        }
    }

    /// The index of the hypothesis word that repeats the last committed word, if the
    /// hypothesis repeats the committed tail near where it ended.
    fn anchor(&self, words: &[Word]) -> Option<usize> {
        // (words matched, distance from the committed end, index)
        let mut best: Option<(usize, f64, usize)> = None;
        for (i, w) in words.iter().enumerate() {
            let distance = (w.end - self.committed_end).abs();
            if distance > ANCHOR_WINDOW_S {
                continue;
            }
            let matched = (0..=i)
                .zip(self.recent.iter().rev())
                .take(MAX_OVERLAP_WORDS)
                .take_while(|&(k, c)| same_word(&words[i - k].word, &c.word))
                .count();
            // One common word alone ("the") anchors only close to where it was committed.
            if matched == 0 || matched == 1 && distance > 0.5 {
                continue;
            }
            if best.is_none_or(|(n, d, _)| matched > n || matched == n && distance < d) {
                best = Some((matched, distance, i));
            }
        }
        best.map(|(_, _, i)| i)
    }

    fn commit(&mut self, mut words: Vec<Word>, events: &mut Vec<StreamEvent>) {
        // Times never run backwards across committed events: a later hypothesis may place the
        // first new word's start a little before the end the previous commit reported.
        let floor = self.committed_end;
        for w in &mut words {
            w.start = w.start.max(floor);
            w.end = w.end.max(w.start);
        }
        let (Some(first), Some(last)) = (words.first(), words.last()) else {
            return;
        };
        let (start, end) = (first.start, last.end.max(first.start));
        let text: String = words.iter().map(|w| w.word.as_str()).collect();
        self.committed_text.push_str(&text);
        self.committed_end = self.committed_end.max(end);
        for w in &words {
            self.recent.push_back(w.clone());
        }
        while self.recent.len() > RECENT_WORDS {
            self.recent.pop_front();
        }
        events.push(StreamEvent::Committed {
            start,
            end,
            text,
            words: self.config.words.then_some(words),
        });
    }

    /// Past `trim_after_s`, cut the buffer at the last segment end that is committed (else at
    /// a committed clause or word end). A buffer
    /// that would pass `max_buffer_s` at the next step commits its hypothesis up to the last
    /// second without agreement and is cut there (the price of bounded memory; logged).
    fn trim(&mut self, req: &StepRequest, hypothesis: &Transcript, events: &mut Vec<StreamEvent>) {
        if self.buffer_s() > self.config.trim_after_s as f64 {
            let cut = hypothesis
                .segments
                .iter()
                .map(|s| s.end + req.offset_s)
                .filter(|&end| end <= self.committed_end + 1e-3 && end > self.buffer_start_s())
                .fold(None, |best: Option<f64>, end| {
                    Some(best.map_or(end, |b| b.max(end)))
                });
            // One long segment (tiny models write whole paragraphs as one): cut after the
            // last committed word that ends a clause, else after the last committed word. The
            // prompt carries the text before the cut.
            let start = self.buffer_start_s();
            let clause_end = self
                .recent
                .iter()
                .rev()
                .filter(|w| w.end > start)
                .find(|w| w.word.trim_end().ends_with(['.', ',', '?', '!', ';', ':']))
                .map(|w| w.end);
            let fallback = (self.committed_end > start).then_some(self.committed_end);
            if let Some(cut) = cut.or(clause_end).or(fallback) {
                self.cut_at(cut);
            }
        }
        let step_s = self.config.step_ms as f64 / 1e3;
        if self.buffer_s() + step_s > self.config.max_buffer_s as f64 {
            let limit = req.end_s() - FORCE_MARGIN_S;
            let keep_from = self
                .unconfirmed
                .iter()
                .position(|w| w.end > limit)
                .unwrap_or(self.unconfirmed.len());
            let rest = self.unconfirmed.split_off(keep_from);
            let forced = std::mem::replace(&mut self.unconfirmed, rest);
            if !forced.is_empty() {
                tracing::debug!(
                    "stream: buffer full; committing {} words without agreement",
                    forced.len()
                );
            }
            self.commit(forced, events);
            self.cut_at(self.committed_end);
            // Still full (no words: silence, music): keep the last trim_after_s.
            if self.buffer_s() + step_s > self.config.max_buffer_s as f64 {
                let end = self.buffer_start_s() + self.buffer_s();
                self.cut_at(end - self.config.trim_after_s as f64);
            }
        }
    }

    /// Drop the buffered audio before stream time `t` (and unconfirmed words ending there).
    fn cut_at(&mut self, t: f64) {
        let n = ((t - self.buffer_start_s()) * SAMPLE_RATE as f64).round();
        if n >= 1.0 {
            self.drop_front((n as usize).min(self.buffer.len()));
            let start = self.buffer_start_s();
            self.unconfirmed.retain(|w| w.end > start);
        }
    }

    fn drop_front(&mut self, n: usize) {
        self.buffer.drain(..n);
        self.buffer_start += n as u64;
    }

    /// The committed words before the buffer, their last ~200 characters: text the step will
    /// not transcribe again (whisper_streaming's `prompt()`).
    fn prompt(&self) -> String {
        let start = self.buffer_start_s();
        let mut parts = Vec::new();
        let mut len = 0;
        for w in self.recent.iter().rev().filter(|w| w.end <= start + 1e-3) {
            if len + w.word.len() > PROMPT_CHARS {
                break;
            }
            len += w.word.len();
            parts.push(w.word.as_str());
        }
        parts.reverse();
        parts.concat().trim().to_string()
    }
}

/// Seconds rounded to the millisecond: events read `23.2`, not `23.200000000000003`.
fn millis(seconds: f64) -> f64 {
    (seconds * 1e3).round() / 1e3
}

/// Two hypotheses' spellings of a word agree when they differ at most in case and punctuation
/// ("you," and "You" are one word; the later spelling is the one committed).
fn same_word(a: &str, b: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let (na, nb) = (norm(a), norm(b));
    if na.is_empty() && nb.is_empty() {
        a.trim() == b.trim()
    } else {
        na == nb
    }
}
