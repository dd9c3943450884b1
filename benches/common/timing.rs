//! Timing shared by the CPU bench binaries.

/// Seconds `f` takes: one warm-up call, then the median of `BENCH_ITERS` calls (default
/// `default_iters`).
pub fn median_seconds(default_iters: usize, mut f: impl FnMut()) -> f64 {
    let iters = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_iters);
    f();
    let mut v: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
