//! How the next token of each sequence is chosen: greedy / temperature sampling (OpenAI's
//! `GreedyDecoder`) and beam search (`BeamSearchDecoder`).

use std::collections::HashMap;

/// A finished sequence: its sampled tokens (end-of-text excluded) and total log-probability.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub tokens: Vec<u32>,
    pub sum_logprob: f64,
}

impl Candidate {
    /// A candidate from a sampled sequence: its tokens up to the first end-of-text.
    fn new(sampled: &[u32], sum_logprob: f64, eot: u32) -> Self {
        Candidate {
            tokens: sampled.iter().copied().take_while(|&t| t != eot).collect(),
            sum_logprob,
        }
    }
}

/// What one search step did besides appending a token to every sequence.
pub struct Step {
    /// The sequences were re-indexed (beam search): the backend's caches must follow.
    pub reorder: Option<Vec<usize>>,
    /// Every sequence is done.
    pub completed: bool,
}

pub trait TokenSearch: Send {
    /// Choose the next token of every sequence from its (filtered) logits, appending it to
    /// `sampled` and its log-probability to `sum_logprobs`.
    fn update(
        &mut self,
        sampled: &mut Vec<Vec<u32>>,
        logits: &[f32],
        n_vocab: usize,
        sum_logprobs: &mut Vec<f64>,
        rng: &mut Rng,
    ) -> Step;

    /// The candidates to rank once the loop ends.
    fn finalize(&mut self, sampled: &[Vec<u32>], sum_logprobs: &[f64]) -> Vec<Candidate>;
}

/// The log-sum-exp of one row, in f64 (the ranking sums hundreds of log-probabilities): its
/// log-softmax is `v as f64 - lse`.
fn log_sum_exp_f64(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// A small, seedable PRNG (SplitMix64) for temperature sampling: reproducible runs without a
/// dependency. Cloned to rewind a window whose decoding was interrupted.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Greedy at temperature 0, else sampling from `softmax(logits / T)`, for independent
/// sequences (best-of). A sequence that ended keeps receiving end-of-text.
pub struct Sampler {
    temperature: f32,
    eot: u32,
    /// A row's unnormalised probabilities, computed once for the total and the draw.
    weights: Vec<f64>,
}

impl Sampler {
    pub fn new(temperature: f32, eot: u32) -> Self {
        Sampler {
            temperature,
            eot,
            weights: Vec::new(),
        }
    }
}

impl TokenSearch for Sampler {
    fn update(
        &mut self,
        sampled: &mut Vec<Vec<u32>>,
        logits: &[f32],
        n_vocab: usize,
        sum_logprobs: &mut Vec<f64>,
        rng: &mut Rng,
    ) -> Step {
        for (i, row) in logits.chunks_exact(n_vocab).enumerate().take(sampled.len()) {
            let seq = &mut sampled[i];
            if seq.last() == Some(&self.eot) {
                seq.push(self.eot);
                continue;
            }
            let next = if self.temperature == 0.0 {
                crate::backend::cpu::ops::argmax(row) as u32
            } else {
                sample(row, self.temperature, rng, &mut self.weights)
            };
            sum_logprobs[i] +=
                (row[next as usize] - crate::backend::cpu::ops::log_sum_exp(row)) as f64;
            seq.push(next);
        }
        let completed = sampled.iter().all(|s| s.last() == Some(&self.eot));
        Step {
            reorder: None,
            completed,
        }
    }

    fn finalize(&mut self, sampled: &[Vec<u32>], sum_logprobs: &[f64]) -> Vec<Candidate> {
        sampled
            .iter()
            .zip(sum_logprobs)
            .map(|(s, &lp)| Candidate::new(s, lp, self.eot))
            .collect()
    }
}

/// Draw from `softmax(logits / temperature)` (`weights`: scratch).
fn sample(row: &[f32], temperature: f32, rng: &mut Rng, weights: &mut Vec<f64>) -> u32 {
    let t = temperature as f64;
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    weights.clear();
    weights.extend(row.iter().map(|&v| ((v as f64 - max) / t).exp()));
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    let mut last_possible = 0;
    for (i, &p) in weights.iter().enumerate() {
        if p > 0.0 {
            last_possible = i;
            if u < p {
                return i as u32;
            }
            u -= p;
        }
    }
    last_possible as u32
}

/// Beam search as OpenAI's `BeamSearchDecoder`: each step extends every live beam by its
/// `beam_size + 1` likeliest tokens, keeps the `beam_size` best unfinished sequences, and sets
/// finished ones aside until `beam_size * patience` have finished.
pub struct BeamSearch {
    beam_size: usize,
    eot: u32,
    max_candidates: usize,
    finished: Vec<(Vec<u32>, f64)>,
}

impl BeamSearch {
    pub fn new(beam_size: usize, eot: u32, patience: f32) -> Self {
        BeamSearch {
            beam_size,
            eot,
            max_candidates: ((beam_size as f32 * patience).round() as usize).max(1),
            finished: Vec::new(),
        }
    }
}

impl TokenSearch for BeamSearch {
    fn update(
        &mut self,
        sampled: &mut Vec<Vec<u32>>,
        logits: &[f32],
        n_vocab: usize,
        sum_logprobs: &mut Vec<f64>,
        _rng: &mut Rng,
    ) -> Step {
        // Step 1: every beam's top tokens as candidate sequences. Identical sequences (all
        // beams are equal at the first step) collapse into one, keeping the first position.
        let mut order: Vec<Vec<u32>> = Vec::new();
        let mut scores: HashMap<Vec<u32>, (f64, usize)> = HashMap::new();
        for (idx, row) in logits.chunks_exact(n_vocab).enumerate().take(sampled.len()) {
            // The log-softmax is read only at the top tokens, not written out for the row.
            let lse = log_sum_exp_f64(row);
            let logprob = |i: usize| row[i] as f64 - lse;
            for token in top_k(row.len(), logprob, self.beam_size + 1) {
                let mut seq = sampled[idx].clone();
                seq.push(token as u32);
                let score = sum_logprobs[idx] + logprob(token);
                match scores.get_mut(&seq) {
                    Some(entry) => *entry = (score, idx),
                    None => {
                        scores.insert(seq.clone(), (score, idx));
                        order.push(seq);
                    }
                }
            }
        }
        // Step 2: best first (stable, so ties keep insertion order); keep `beam_size` live.
        order.sort_by(|a, b| scores[b].0.total_cmp(&scores[a].0));
        let mut next = Vec::with_capacity(self.beam_size);
        let mut next_logprobs = Vec::with_capacity(self.beam_size);
        let mut sources = Vec::with_capacity(self.beam_size);
        let mut newly_finished = Vec::new();
        for seq in order {
            let (score, src) = scores[&seq];
            if seq.last() == Some(&self.eot) {
                newly_finished.push((seq, score));
            } else {
                next.push(seq);
                next_logprobs.push(score);
                sources.push(src);
                if next.len() == self.beam_size {
                    break;
                }
            }
        }
        for f in newly_finished {
            if self.finished.len() >= self.max_candidates {
                break;
            }
            self.finished.push(f);
        }
        *sampled = next;
        *sum_logprobs = next_logprobs;
        Step {
            reorder: Some(sources),
            completed: self.finished.len() >= self.max_candidates,
        }
    }

    fn finalize(&mut self, sampled: &[Vec<u32>], sum_logprobs: &[f64]) -> Vec<Candidate> {
        // Not enough finished: add the live beams, best first.
        if self.finished.len() < self.beam_size {
            let mut live: Vec<usize> = (0..sampled.len()).collect();
            live.sort_by(|&a, &b| sum_logprobs[b].total_cmp(&sum_logprobs[a]));
            for i in live {
                self.finished.push((sampled[i].clone(), sum_logprobs[i]));
                if self.finished.len() >= self.beam_size {
                    break;
                }
            }
        }
        self.finished
            .iter()
            .map(|(seq, lp)| Candidate::new(seq, *lp, self.eot))
            .collect()
    }
}

/// Indices of the `k` largest of `x(0) .. x(n - 1)`, largest first (ties: the lower index).
fn top_k(n: usize, x: impl Fn(usize) -> f64, k: usize) -> Vec<usize> {
    let mut best: Vec<(usize, f64)> = Vec::with_capacity(k + 1);
    for i in 0..n {
        let v = x(i);
        if best.len() < k || v > best[best.len() - 1].1 {
            let pos = best.partition_point(|&(_, b)| b >= v);
            best.insert(pos, (i, v));
            best.truncate(k);
        }
    }
    best.into_iter().map(|(i, _)| i).collect()
}
