//! Logit filters: small composable types, each applied to the logits before a token is chosen
//! (OpenAI's `LogitFilter`s).

/// A transformation of the next-token logits given the tokens sampled so far in this window
/// (prompt excluded).
pub trait LogitFilter: Send {
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
