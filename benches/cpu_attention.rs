//! CPU attention benchmark: the encoder's self-attention (1500 queries × 1500 keys, 64-wide
//! heads) of tiny, base and small, through `ops::attention` with each `Products` (f32, bf16,
//! split bf16; the bf16 ones fall back to f32 on a CPU without AVX-512 BF16). One warm-up, then
//! the median of `BENCH_ITERS` (default 5) runs; GFLOP/s counts the two products only
//! (4 · queries · keys · width). Run: `cargo bench --bench cpu_attention`
//! (`BENCH_ONLY=tiny` keeps the rows whose model name contains that text; `BENCH_PRODUCTS=f32`
//! times only the products named, comma-separated: f32, bf16, bf16x3, bf16v).

use dattavani_asr::testing::backend::cpu::ops::{self, KvLayout, Products};

#[path = "common/rand.rs"]
mod rand_data;
use rand_data::rand_vec;

#[path = "common/timing.rs"]
mod timing;

fn seconds(f: impl FnMut()) -> f64 {
    timing::median_seconds(5, f)
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let products = std::env::var("BENCH_PRODUCTS").unwrap_or("f32,bf16,bf16x3,bf16v".into());
    println!("CPU: {} threads", rayon::current_num_threads());
    println!("| model | n_q x n_kv x d | f32 | bf16 | bf16x3 | bf16v |");
    println!("|---|---|---|---|---|---|");
    for &(model, d) in &[("tiny", 384usize), ("base", 512), ("small", 768)] {
        if !model.contains(&only) {
            continue;
        }
        let (n, n_head) = (1500, d / 64);
        let mut seed = 11u64;
        // Scores of a trained encoder span a few units: scale the random queries to match.
        let q: Vec<f32> = rand_vec(&mut seed, n * d).iter().map(|x| x * 4.0).collect();
        let k = rand_vec(&mut seed, n * d);
        let v = rand_vec(&mut seed, n * d);
        let mut out = vec![0.0; n * d];
        let flop = 4.0 * (n * n * d) as f64;
        let cells: Vec<String> = [
            ("f32", Products::F32),
            ("bf16", Products::Bf16),
            ("bf16x3", Products::Bf16x3),
            ("bf16v", Products::Bf16Values),
        ]
        .into_iter()
        .map(|(name, p)| {
            if !products.split(',').any(|x| x == name) {
                return "-".into();
            }
            let t = seconds(|| {
                ops::attention(
                    p,
                    &q,
                    &k,
                    &v,
                    KvLayout::Rows,
                    n,
                    n,
                    d,
                    n_head,
                    None,
                    &mut out,
                )
            });
            format!("{:.2} ms, {:.0} GFLOP/s", t * 1e3, flop / t / 1e9)
        })
        .collect();
        println!("| {model} | {n}x{n}x{d} | {} |", cells.join(" | "));
    }
}
