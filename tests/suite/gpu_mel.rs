//! The GPU log-mel (`shaders/mel.wgsl`, `backend::gpu::GpuMel`) against its CPU twin
//! `mel::log_mel_spectrogram` (f64 rustfft) and OpenAI's reference for jfk.wav. Runs on whatever
//! adapter exists (lavapipe in CI); with none each test prints "skipped: no GPU adapter" and
//! passes, unless DATTAVANI_REQUIRE_GPU=1, where it fails.
//!
//! Tolerance: 2e-4 absolute on the normalised output `(max(log10 P, gmax − 8) + 4) / 4`, and
//! 1e-6 on the mean absolute difference. The GPU's DFT is an f32 sum of 400 products with
//! twiddles rounded to f32 (the CPU's is an f64 FFT): each re/im part carries an absolute error
//! of about √400·ε·Σ|x_i w_i| (ε = 1.2e-7), ~2.4e-6 of the frame's windowed magnitude. A mel
//! band's power then has relative error r ≈ 2·2.4e-6·(frame magnitude / band amplitude): ~1e-5
//! for bands near the frame's level, growing as a band gets quieter. The log turns r into an
//! absolute error r / ln 10, then / 4. Bands more than 8 decades below the loudest one are
//! clamped to the same floor on both sides, so the error is bounded by quiet bands just above
//! the floor. Measured on lavapipe: max 2.1e-5 on jfk (mel band 0, the DC end, in a quiet
//! frame; mean 1.5e-8, 1.1e-7 with 128 bands), 4.2e-7 on the noise signal; the bound keeps a
//! 10x margin. An indexing, padding or window bug, or a frame shifted by one hop, moves speech
//! values by O(0.1–1).

use crate::npy;

use std::path::Path;

use dattavani_asr::testing::audio::load_audio;
use dattavani_asr::testing::backend::gpu::{GpuMel, KernelConfig, Kernels};
use dattavani_asr::testing::mel::{log_mel_spectrogram, LogMel};

const TOL_MAX: f32 = 2e-4;
const TOL_MEAN: f64 = 1e-6;

use crate::gpu_adapter;
use gpu_adapter::gpu;

/// Largest and mean absolute difference.
fn errors(got: &[f32], want: &[f32]) -> (f32, f64, usize) {
    assert_eq!(got.len(), want.len());
    let (mut max, mut at, mut sum) = (0.0f32, 0, 0.0f64);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        sum += e as f64;
        if e > max || e.is_nan() {
            (max, at) = (e, i);
        }
    }
    (max, sum / want.len().max(1) as f64, at)
}

fn check(what: &str, got: &LogMel, want: &LogMel) {
    assert_eq!(
        (got.n_mels, got.n_frames),
        (want.n_mels, want.n_frames),
        "{what}: shape"
    );
    let (max, mean, at) = errors(&got.data, &want.data);
    println!(
        "{what}: max abs error {max:.2e} (mel {}, frame {}: gpu {}, cpu {}), mean {mean:.2e}",
        at / want.n_frames,
        at % want.n_frames,
        got.data[at],
        want.data[at]
    );
    assert!(max <= TOL_MAX, "{what}: max abs error {max}");
    assert!(mean <= TOL_MEAN, "{what}: mean abs error {mean}");
}

/// Deterministic uniform [-1, 1) numbers (64-bit LCG, Knuth's constants).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn jfk_matches_cpu_and_openai_reference() {
    let Some(ctx) = gpu() else { return };
    let k = Kernels::new(&ctx, KernelConfig::for_adapter(&ctx)).unwrap();
    let mut mel = GpuMel::new(&ctx);
    let samples = load_audio(Path::new("tests/data/speech/jfk.wav")).unwrap();
    let got = mel.compute(&ctx, &k, &samples, 80).unwrap();
    check("jfk, 80 mels", &got, &log_mel_spectrogram(&samples, 80));

    // OpenAI's own log-mel of the first window (its f32 torch.stft): same bound.
    let (shape, want) = npy::read_npy_f32("tests/data/reference/jfk_mel.npy");
    assert_eq!(shape, vec![80, 3000]);
    let (max, mean, _) = errors(&got.window(0), &want);
    println!("jfk vs OpenAI reference: max abs error {max:.2e}, mean {mean:.2e}");
    assert!(max <= TOL_MAX && mean <= TOL_MEAN);

    // 128 bands (large-v3) reuse the DFT with a new filterbank.
    check(
        "jfk, 128 mels",
        &mel.compute(&ctx, &k, &samples, 128).unwrap(),
        &log_mel_spectrogram(&samples, 128),
    );
}

#[test]
fn odd_length_noise_chunked_and_split_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // An odd length (not a multiple of the hop, the tile or the chunk) of noise with a quiet
    // stretch, so the max − 8 floor and the reflect padding at both ends are exercised.
    let mut samples = noise(3 * 16000 + 37, 7);
    for x in &mut samples[20_000..30_000] {
        *x *= 1e-4;
    }
    let want = log_mel_spectrogram(&samples, 80);

    // Default chunking: one chunk, one output block.
    let k = Kernels::new(&ctx, KernelConfig::for_adapter(&ctx)).unwrap();
    let mut mel = GpuMel::new(&ctx);
    check(
        "noise, one chunk",
        &mel.compute(&ctx, &k, &samples, 80).unwrap(),
        &want,
    );

    // 64-frame chunks under a 256 KiB binding limit: samples bound in ranges, the DFT matrix
    // split over row ranges by `linear`, the output normalised in column blocks and stitched.
    let config = KernelConfig {
        max_binding_override: Some(256 << 10),
        ..KernelConfig::for_adapter(&ctx)
    };
    let k = Kernels::new(&ctx, config).unwrap();
    let mut mel = GpuMel::new(&ctx);
    mel.set_chunk_frames(64);
    check(
        "noise, 64-frame chunks, split bindings",
        &mel.compute(&ctx, &k, &samples, 80).unwrap(),
        &want,
    );
}

#[test]
fn empty_and_tiny_inputs_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let k = Kernels::new(&ctx, KernelConfig::for_adapter(&ctx)).unwrap();
    let mut mel = GpuMel::new(&ctx);
    for samples in [vec![], vec![0.5, -0.25, 0.125], noise(401, 3)] {
        check(
            &format!("{} samples", samples.len()),
            &mel.compute(&ctx, &k, &samples, 80).unwrap(),
            &log_mel_spectrogram(&samples, 80),
        );
    }
}
