//! The speech clips and references the tests read: `tests/data/` paths, the reference texts of
//! `speech/refs.tsv` and the CTranslate2 greedy token ids of `speech/reference_ct2_greedy.tsv`.
//!
//! Use with `#[path = "common/clips.rs"] mod clips;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `tests/data/<rel>`.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// `samples/jfk.wav`.
pub fn jfk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/jfk.wav")
}

/// The non-comment lines of a TSV under `tests/data/`, split at tabs.
fn tsv_rows(rel: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(data(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// file -> reference text of every clip of `speech/refs.tsv`.
pub fn reference_texts() -> HashMap<String, String> {
    tsv_rows("speech/refs.tsv")
        .into_iter()
        .filter(|f| f.len() >= 2)
        .map(|f| (f[0].clone(), f[1].clone()))
        .collect()
}

/// file -> reference text, for the clips of `speech/refs.tsv` of kind 'real'.
pub fn real_references() -> HashMap<String, String> {
    tsv_rows("speech/refs.tsv")
        .into_iter()
        .filter(|f| f.len() >= 5 && f[4].trim() == "real")
        .map(|f| (f[0].clone(), f[1].clone()))
        .collect()
}

/// One clip of `speech/reference_ct2_greedy.tsv`: CTranslate2 float32's greedy text tokens.
pub struct Ct2Clip {
    pub file: String,
    pub ids: Vec<u32>,
    /// CTranslate2's transcript.
    pub text: String,
}

/// Every clip of `speech/reference_ct2_greedy.tsv`.
pub fn ct2_greedy() -> Vec<Ct2Clip> {
    tsv_rows("speech/reference_ct2_greedy.tsv")
        .into_iter()
        .map(|f| Ct2Clip {
            ids: f[1]
                .split_whitespace()
                .map(|t| t.parse().unwrap())
                .collect(),
            text: f.get(2).cloned().unwrap_or_default(),
            file: f[0].clone(),
        })
        .collect()
}

/// The first and last 10 ms frame (in seconds) whose RMS is within 30 dB of the loudest.
pub fn energy_span(samples: &[f32]) -> (f64, f64) {
    let rms: Vec<f32> = samples
        .chunks(160)
        .map(|f| (f.iter().map(|x| x * x).sum::<f32>() / f.len() as f32).sqrt())
        .collect();
    let loudest = rms.iter().copied().fold(0.0, f32::max);
    let loud = |r: &f32| *r >= 0.0316 * loudest;
    let first = rms.iter().position(loud).unwrap();
    let last = rms.iter().rposition(loud).unwrap();
    (first as f64 * 0.01, (last + 1) as f64 * 0.01)
}
