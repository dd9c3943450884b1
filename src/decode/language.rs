//! Language identification from one encoded window (OpenAI's `detect_language`): the decoder
//! reads `<|startoftranscript|>` and the distribution over language tokens is the answer.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tokenizer::WhisperTokenizer;

/// Every language the vocabulary knows, with its probability, likeliest first.
pub fn detect_language(
    backend: &mut dyn Backend,
    tokenizer: &WhisperTokenizer,
) -> Result<Vec<(&'static str, f32)>> {
    if !tokenizer.multilingual || tokenizer.languages.is_empty() {
        return Err(Error::Usage(
            "this model is English-only: it cannot detect languages".into(),
        ));
    }
    let mut logits = vec![0.0f32; backend.dims().n_vocab];
    backend.begin_decode(1)?;
    backend.decode(&[tokenizer.sot], &mut logits)?;
    // Softmax over the language tokens only (everything else masked out).
    let max = tokenizer
        .languages
        .iter()
        .map(|&(_, t)| logits[t as usize])
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    let total: f64 = tokenizer
        .languages
        .iter()
        .map(|&(_, t)| (logits[t as usize] as f64 - max).exp())
        .sum();
    let mut probs: Vec<(&'static str, f32)> = tokenizer
        .languages
        .iter()
        .map(|&(code, t)| {
            (
                code,
                ((logits[t as usize] as f64 - max).exp() / total) as f32,
            )
        })
        .collect();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(probs)
}
