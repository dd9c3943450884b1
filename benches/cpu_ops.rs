//! CPU element-wise and row ops at the encoder's shapes (tiny: 1500 rows of 384, MLP hidden
//! 1536): layer norm, GELU, the residual add. One warm-up, then the median of `BENCH_ITERS`
//! (default 7) runs. Run: `cargo bench --bench cpu_ops`.

use dattavani_asr::testing::backend::cpu::ops;

#[path = "common/rand.rs"]
mod rand_data;
use rand_data::rand_vec;

#[path = "common/timing.rs"]
mod timing;

fn ms(f: impl FnMut()) -> f64 {
    timing::median_seconds(7, f) * 1e3
}

fn main() {
    println!("CPU: {} threads", rayon::current_num_threads());
    let (n, d, ffn) = (1500, 384, 1536);
    let mut seed = 3u64;
    let x = rand_vec(&mut seed, n * d);
    let (gamma, beta) = (rand_vec(&mut seed, d), rand_vec(&mut seed, d));
    let mut out = vec![0.0; n * d];
    let t = ms(|| ops::layer_norm(&x, d, &gamma, &beta, &mut out));
    println!("| layer norm | {n}x{d} | {t:.3} ms |");
    let mut hidden = rand_vec(&mut seed, n * ffn);
    let t = ms(|| ops::gelu(&mut hidden));
    println!("| GELU | {n}x{ffn} | {t:.3} ms |");
    let t = ms(|| ops::add_assign(&mut out, &x));
    println!("| add | {n}x{d} | {t:.3} ms |");
}
