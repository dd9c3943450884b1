//! Logit filters: small composable types, each applied to one sequence's next-token logits
//! before a token is chosen (OpenAI's `LogitFilter`s, same rules and order).

use crate::tokenizer::WhisperTokenizer;

/// A transformation of one sequence's next-token logits, given the tokens it has sampled so far
/// in this window (the prompt excluded).
pub trait LogitFilter: Send + Sync {
    fn apply(&self, sampled: &[u32], logits: &mut [f32]);
}

/// Never sample these ids (`SuppressTokens`).
pub struct SuppressTokens {
    ids: Vec<u32>,
}

impl SuppressTokens {
    pub fn new(mut ids: Vec<u32>, n_vocab: usize) -> Self {
        ids.retain(|&t| (t as usize) < n_vocab);
        ids.sort_unstable();
        ids.dedup();
        SuppressTokens { ids }
    }

    /// The suppressed ids, sorted.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl LogitFilter for SuppressTokens {
    fn apply(&self, _sampled: &[u32], logits: &mut [f32]) {
        for &t in &self.ids {
            logits[t as usize] = f32::NEG_INFINITY;
        }
    }
}

/// At the first sampled position, forbid a blank start (`" "`) and an immediate end-of-text
/// (`SuppressBlank`).
pub struct SuppressBlank {
    ids: Vec<u32>,
}

impl SuppressBlank {
    pub fn new(ids: Vec<u32>) -> Self {
        SuppressBlank { ids }
    }
}

impl LogitFilter for SuppressBlank {
    fn apply(&self, sampled: &[u32], logits: &mut [f32]) {
        if sampled.is_empty() {
            for &t in &self.ids {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// OpenAI's `ApplyTimestampRules`: timestamps come in pairs (except right before end-of-text),
/// never decrease, the first one is at most `max_initial_timestamp`, and a timestamp is forced
/// when the timestamps' total probability beats every single text token.
pub struct ApplyTimestampRules {
    eot: u32,
    no_timestamps: u32,
    timestamp_begin: u32,
    /// Index (in 20-ms steps) of the latest allowed first timestamp; `None`: no limit.
    max_initial_timestamp_index: Option<u32>,
}

impl ApplyTimestampRules {
    pub fn new(tokenizer: &WhisperTokenizer, max_initial_timestamp_index: Option<u32>) -> Self {
        ApplyTimestampRules {
            eot: tokenizer.eot,
            no_timestamps: tokenizer.no_timestamps,
            timestamp_begin: tokenizer.timestamp_begin,
            max_initial_timestamp_index,
        }
    }
}

fn mask(logits: &mut [f32]) {
    logits.iter_mut().for_each(|l| *l = f32::NEG_INFINITY);
}

impl LogitFilter for ApplyTimestampRules {
    fn apply(&self, sampled: &[u32], logits: &mut [f32]) {
        let tb = self.timestamp_begin as usize;
        let is_ts = |t: u32| t >= self.timestamp_begin;
        logits[self.no_timestamps as usize] = f32::NEG_INFINITY;

        let n = sampled.len();
        let last_was_timestamp = n >= 1 && is_ts(sampled[n - 1]);
        let penultimate_was_timestamp = n < 2 || is_ts(sampled[n - 2]);
        if last_was_timestamp {
            if penultimate_was_timestamp {
                // A pair just closed: text must follow.
                mask(&mut logits[tb..]);
            } else {
                // An open timestamp: the pair must close (or the text end).
                mask(&mut logits[..self.eot as usize]);
            }
        }
        if let Some(&last_ts) = sampled.iter().rev().find(|&&t| is_ts(t)) {
            // Timestamps never decrease; a segment never has zero length (so no loop can stall).
            let bound = if last_was_timestamp && !penultimate_was_timestamp {
                last_ts
            } else {
                last_ts + 1
            };
            mask(&mut logits[tb..bound as usize]);
        }
        if n == 0 {
            // The window starts with a timestamp, no later than max_initial_timestamp.
            mask(&mut logits[..tb]);
            if let Some(max) = self.max_initial_timestamp_index {
                let last_allowed = tb + max as usize;
                if last_allowed + 1 < logits.len() {
                    mask(&mut logits[last_allowed + 1..]);
                }
            }
        }
        // If the timestamps together are likelier than any single text token, take a timestamp.
        let (text, ts) = logits.split_at(tb);
        // Both sides share log_softmax's normaliser, so raw logits compare the same way.
        let timestamp_logprob = crate::backend::cpu::ops::log_sum_exp(ts);
        let max_text = text.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if timestamp_logprob > max_text {
            mask(&mut logits[..tb]);
        }
    }
}
