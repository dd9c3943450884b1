//! Figures `bench` derives from a run, apart so that `benches/end_to_end.rs` shares them
//! (it includes this file by path).

use dattavani_asr::devices::ModelDims;

/// FLOPs of one encoder window (stem convolutions, attention blocks; multiply-add = 2).
pub fn encoder_flops(d: &ModelDims) -> f64 {
    let (n, s, f) = (
        d.n_audio_ctx as f64,
        d.n_audio_state as f64,
        d.n_audio_ffn as f64,
    );
    let conv = 2.0 * (2.0 * n) * s * d.n_mels as f64 * 3.0 + 2.0 * n * s * s * 3.0;
    let block = 8.0 * n * s * s + 4.0 * n * n * s + 4.0 * n * s * f;
    conv + d.n_audio_layer as f64 * block
}

/// FLOPs of one decoder token at cache position `pos` (projections, self- and cross-attention,
/// MLP, the tied logits projection). The cross-attention K/V are per window, not counted here.
pub fn decoder_token_flops(d: &ModelDims, pos: usize) -> f64 {
    let (s, f) = (d.n_text_state as f64, d.n_text_ffn as f64);
    let block = 8.0 * s * s // self q, k, v, out
        + 4.0 * (pos + 1) as f64 * s // self attention
        + 4.0 * s * s // cross q, out
        + 4.0 * d.n_audio_ctx as f64 * s // cross attention
        + 4.0 * s * f; // MLP
    d.n_text_layer as f64 * block + 2.0 * s * d.n_vocab as f64
}

/// Peak and current resident set size, bytes (Linux `/proc/self/status`; `None` elsewhere).
pub fn rss_bytes() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The 1-minute load average (Linux), to judge how noisy the timings are.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
