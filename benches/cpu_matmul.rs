//! CPU matrix-product benchmark: f32 (`ops::linear`, the `gemm` crate or the few-row kernel)
//! against int8 (`int8::linear`: VNNI where the CPU has it, else the portable kernel), at the
//! linear-layer shapes of tiny, base, small and large-v3: encoder (1500 rows), a greedy decoder
//! step (1 row), a beam-5 step (5 rows) and the logits projection. One warm-up, then the median
//! of `BENCH_ITERS` (default 5) runs. Run: `cargo bench --bench cpu_matmul`
//! (`BENCH_ONLY=tiny` keeps the rows whose model name contains that text).

use dattavani_asr::testing::backend::cpu::{int8, ops};

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
    println!(
        "CPU: {} threads, int8 kernel: {}",
        rayon::current_num_threads(),
        if int8::has_amx() {
            "amx (16-row blocks) + avx512vnni"
        } else if int8::has_vnni() {
            "avx512vnni"
        } else {
            "portable"
        }
    );
    println!("| model | product | m x k x n | f32 | int8 | int8 vs f32 |");
    println!("|---|---|---|---|---|---|");
    // (model, d_model, vocab)
    for &(model, d, vocab) in &[
        ("tiny", 384usize, 51864usize),
        ("base", 512, 51865),
        ("small", 768, 51865),
        ("large-v3", 1280, 51866),
    ] {
        if !model.contains(&only) {
            continue;
        }
        let mut seed = 7u64;
        for (what, m, k, n) in [
            ("encoder fc1", 1500, d, 4 * d),
            ("encoder fc2", 1500, 4 * d, d),
            ("decoder step fc1", 1, d, 4 * d),
            ("beam-5 step fc1", 5, d, 4 * d),
            ("logits", 1, d, vocab),
            ("beam-5 logits", 5, d, vocab),
        ] {
            // Large-v3's encoder products take seconds per call at f32 on 2 cores; one is enough.
            let what_only = std::env::var("BENCH_WHAT").unwrap_or_default();
            if !what.contains(&what_only)
                || model == "large-v3" && m == 1500 && what.ends_with("fc2")
            {
                continue;
            }
            let x = rand_vec(&mut seed, m * k);
            let w = rand_vec(&mut seed, n * k);
            let b = rand_vec(&mut seed, n);
            let q = int8::Int8Matrix::quantize(&w, n, k);
            let mut o = vec![0.0; m * n];
            let t32 = seconds(|| ops::linear(&x, m, k, &w, n, Some(&b), false, &mut o));
            let t8 = seconds(|| int8::linear(&x, m, &q, Some(&b), &mut o));
            // Few-row products are bound by reading the weights: report GB/s of weights read;
            // many-row ones by arithmetic: GFLOP/s.
            let (f32s, i8s) = if m <= 8 {
                (
                    format!("{:.1} GB/s", (n * k * 4) as f64 / t32 / 1e9),
                    format!("{:.1} GB/s", q.bytes() as f64 / t8 / 1e9),
                )
            } else {
                let flop = 2.0 * (m * n * k) as f64;
                (
                    format!("{:.0} GFLOP/s", flop / t32 / 1e9),
                    format!("{:.0} GFLOP/s", flop / t8 / 1e9),
                )
            };
            println!(
                "| {model} | {what} | {m}x{k}x{n} | {:.3} ms, {f32s} | {:.3} ms, {i8s} | {:.2}x |",
                t32 * 1e3,
                t8 * 1e3,
                t32 / t8
            );
        }
    }
}
