//! How the next token of each sequence is chosen: greedy / temperature sampling (OpenAI's
//! `GreedyDecoder`) and beam search (`BeamSearchDecoder`).

use std::collections::HashMap;
use std::slice::ChunksExact;

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
    /// Choose the next token of every sequence from its row of (filtered) logits, appending it
    /// to the sequence and its log-probability to the sequence's sum.
    fn update(&mut self, hyps: &mut Hypotheses, rows: ChunksExact<'_, f32>, rng: &mut Rng) -> Step;

    /// The candidates to rank once the loop ends.
    fn finalize(&mut self, hyps: &Hypotheses) -> Vec<Candidate>;
}

/// The sequences of a pass: each one's sampled tokens and summed log-probability.
#[derive(Debug, Clone, Default)]
pub struct Hypotheses {
    pub tokens: Vec<Vec<u32>>,
    pub sum_logprobs: Vec<f64>,
}

impl Hypotheses {
    /// `n` empty sequences.
    pub fn new(n: usize) -> Self {
        Hypotheses {
            tokens: vec![Vec::new(); n],
            sum_logprobs: vec![0.0; n],
        }
    }
}

/// The log-sum-exp of one row, in f64 (the ranking sums hundreds of log-probabilities): its
/// log-softmax is `v as f64 - lse`. Every beam of every window takes one per step over the
/// whole vocabulary, so the sum runs [`LANES`] wide on the widest instruction set the CPU has
/// ([`exp_nonpositive`] instead of libm's scalar `exp`); every version computes the same bits
/// (no fused multiply-adds, a fixed order of the lanes).
fn log_sum_exp_f64(row: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::backend::cpu::isa::{isa, Isa};
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(row: &[f32]) -> f64 {
            log_sum_exp_lanes(row)
        }
        #[target_feature(enable = "avx2,avx512f,avx512dq,avx512vl")]
        unsafe fn avx512(row: &[f32]) -> f64 {
            log_sum_exp_lanes(row)
        }
        match isa() {
            // SAFETY: the CPU has the instruction set (`isa()` detected it).
            Isa::Avx512 => return unsafe { avx512(row) },
            Isa::Avx2 => return unsafe { avx2(row) },
            Isa::Portable => {}
        }
    }
    log_sum_exp_lanes(row)
}

/// Lanes of [`log_sum_exp_lanes`]' partial sums.
const LANES: usize = 8;

#[inline(always)]
fn log_sum_exp_lanes(row: &[f32]) -> f64 {
    // The maximum does not depend on the order it is taken in.
    let mut top = [f32::NEG_INFINITY; 2 * LANES];
    let chunks = row.chunks_exact(2 * LANES);
    let mut max = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for (t, &v) in top.iter_mut().zip(c) {
            *t = t.max(v);
        }
    }
    max = top.iter().copied().fold(max, f32::max);
    let max = max as f64;
    let mut acc = [0.0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut x = [0.0f64; LANES];
    for c in chunks {
        for (x, &v) in x.iter_mut().zip(c) {
            *x = v as f64 - max;
        }
        let e = exp_nonpositive(x);
        for (a, e) in acc.iter_mut().zip(e) {
            *a += e;
        }
    }
    let mut sum = 0.0;
    for a in acc {
        sum += a;
    }
    for &v in tail {
        let mut x = [f64::NEG_INFINITY; LANES];
        x[0] = v as f64 - max;
        sum += exp_nonpositive(x)[0];
    }
    max + sum.ln()
}

/// `exp(x)` of [`LANES`] values `x <= 0` (a logit less the row's maximum) within about an ulp
/// of libm's, each step a loop over the lanes (so that it vectorises): `x = k·ln 2 + r` with
/// `|r| <= ln 2 / 2`, `exp(r)` by its Taylor series to degree 13 (the remainder below 1e-17),
/// times `2^k` built in the exponent bits. Below -708 (and at -inf, a suppressed token) it is
/// 0, where libm's is at most 3e-308.
#[inline(always)]
fn exp_nonpositive(x: [f64; LANES]) -> [f64; LANES] {
    const INV_LN2: f64 = std::f64::consts::LOG2_E;
    // ln 2 in two parts: k·LN2_HI is exact for the k that occur (|k| <= 1022).
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    // Adding 1.5·2^52 rounds to an integer (ties to even), left in the low bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    // 1/13! .. 1/2!: Horner from the highest degree.
    const C: [f64; 12] = [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ];
    let mut k = [0.0f64; LANES];
    let mut scale = [0.0f64; LANES];
    let mut r = [0.0f64; LANES];
    for l in 0..LANES {
        let xc = if x[l] < -708.0 { -708.0 } else { x[l] };
        let t = xc * INV_LN2 + SHIFTER;
        k[l] = t - SHIFTER;
        let ki = t.to_bits().wrapping_sub(SHIFTER.to_bits());
        scale[l] = f64::from_bits(ki.wrapping_add(1023) << 52);
        r[l] = (xc - k[l] * LN2_HI) - k[l] * LN2_LO;
    }
    let mut p = [C[0]; LANES];
    for &c in &C[1..] {
        for l in 0..LANES {
            p[l] = p[l] * r[l] + c;
        }
    }
    let mut out = [0.0f64; LANES];
    for l in 0..LANES {
        let e = ((p[l] * r[l] + 1.0) * r[l] + 1.0) * scale[l];
        out[l] = if x[l] < -708.0 { 0.0 } else { e };
    }
    out
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
    fn update(&mut self, hyps: &mut Hypotheses, rows: ChunksExact<'_, f32>, rng: &mut Rng) -> Step {
        for (i, row) in rows.enumerate().take(hyps.tokens.len()) {
            let seq = &mut hyps.tokens[i];
            if seq.last() == Some(&self.eot) {
                seq.push(self.eot);
                continue;
            }
            let next = if self.temperature == 0.0 {
                crate::backend::cpu::ops::argmax(row) as u32
            } else {
                sample(row, self.temperature, rng, &mut self.weights)
            };
            hyps.sum_logprobs[i] +=
                (row[next as usize] - crate::backend::cpu::ops::log_sum_exp(row)) as f64;
            seq.push(next);
        }
        let completed = hyps.tokens.iter().all(|s| s.last() == Some(&self.eot));
        Step {
            reorder: None,
            completed,
        }
    }

    fn finalize(&mut self, hyps: &Hypotheses) -> Vec<Candidate> {
        hyps.tokens
            .iter()
            .zip(&hyps.sum_logprobs)
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
    fn update(&mut self, hyps: &mut Hypotheses, rows: ChunksExact<'_, f32>, _: &mut Rng) -> Step {
        let Hypotheses {
            tokens: sampled,
            sum_logprobs,
        } = hyps;
        // Step 1: every beam's top tokens as candidate sequences. Identical sequences (all
        // beams are equal at the first step) collapse into one, keeping the first position.
        let mut order: Vec<Vec<u32>> = Vec::new();
        let mut scores: HashMap<Vec<u32>, (f64, usize)> = HashMap::new();
        for (idx, row) in rows.enumerate().take(sampled.len()) {
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

    fn finalize(&mut self, hyps: &Hypotheses) -> Vec<Candidate> {
        let (sampled, sum_logprobs) = (&hyps.tokens, &hyps.sum_logprobs);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorised_exp_is_libms_to_an_ulp_or_two() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -(i as f64) * 708.0 / 200_000.0 - (i % 7) as f64 * 1e-9;
            let (got, want) = (exp_nonpositive([x; LANES])[i % LANES], x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 4.5e-16, "relative error {worst:e}");
        let e = exp_nonpositive([0.0, f64::NEG_INFINITY, -800.0, -708.0, -1.0, 0.0, 0.0, 0.0]);
        assert_eq!(e[..3], [1.0, 0.0, 0.0]);
        assert!(e[3] > 0.0 && (e[4] - (-1.0f64).exp()).abs() < 2e-16);
    }

    #[test]
    fn log_sum_exp_is_the_sequential_ones_to_rounding_on_every_isa() {
        use crate::backend::cpu::isa::isa;
        let row: Vec<f32> = (0..51_865)
            .map(|i| match i % 97 {
                0 => f32::NEG_INFINITY,
                m => ((i * 7919) % 1000) as f32 * 0.02 - 12.0 + m as f32 * 1e-3,
            })
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let want = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let got = log_sum_exp_f64(&row);
        assert!((got - want).abs() < 1e-13, "{got} vs {want}");
        // The portable loop gives the very bits of the dispatched one.
        assert_eq!(
            log_sum_exp_lanes(&row).to_bits(),
            got.to_bits(),
            "{:?}",
            isa()
        );
    }
}
