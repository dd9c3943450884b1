//! tiny.en (or the model named by the first argument) on `--device gpu`'s adapter: encoder
//! seconds per 30-s window and decoder milliseconds per token (one sequence, and five as beam
//! search runs), after warm-up; and the log-mel on the GPU and the CPU.
//! `cargo run --release --example gpu_speed [model]`; GPU_SPEED_ATTN=fused|unfused and
//! GPU_SPEED_ATTN_CHUNK=ROWS override the encoder attention's configuration, GPU_SPEED_WEIGHTS=
//! f32|f16|int8 the linear weights' storage.

use std::time::Instant;

use dattavani_asr::testing::backend::gpu::{
    AdapterSelector, GpuContext, GpuModel, KernelConfig, WeightType,
};
use dattavani_asr::testing::backend::Backend;
use dattavani_asr::testing::model::{config::ModelConfig, hub, weights::Weights};

/// CPU seconds this process has used (user + system, all threads: lavapipe's workers run in
/// process), from /proc/self/stat; None elsewhere. On a shared machine, CPU time per window is a
/// steadier measure of the work than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() -> dattavani_asr::testing::error::Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tiny.en".into());
    let files = hub::resolve(&model)?;
    let config = ModelConfig::from_dir(&files.dir)?;
    let weights = Weights::open(&files.weights())?;
    let ctx = GpuContext::new(&AdapterSelector::AnyGpu)?;
    // GPU_SPEED_ATTN=fused|unfused overrides the adapter's default encoder attention.
    let mut kc = KernelConfig::for_adapter(&ctx);
    match std::env::var("GPU_SPEED_ATTN").as_deref() {
        Ok("fused") => kc.attn_unfused = false,
        Ok("unfused") => kc.attn_unfused = true,
        _ => {}
    }
    if let Some(c) = std::env::var("GPU_SPEED_ATTN_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        kc.attn_chunk = c;
    }
    match std::env::var("GPU_SPEED_WEIGHTS").as_deref() {
        Ok("f32") => kc.weights = WeightType::F32,
        Ok("f16") => kc.weights = WeightType::F16,
        Ok("int8") => kc.weights = WeightType::Int8,
        _ => {}
    }
    println!("linear weights: {:?}", kc.weights);
    let unfused = kc.attn_unfused;
    let mut m = GpuModel::load_with_config(ctx, &weights, &config.dims, kc)?;
    println!(
        "encoder attention: {}",
        if unfused {
            "unfused (scores, softmax, ·V)"
        } else {
            "fused"
        }
    );
    println!("{model} on {}", m.device_name());
    let dims = config.dims.clone();
    let samples =
        dattavani_asr::testing::audio::load_audio(std::path::Path::new("samples/jfk.wav"))?;
    let mel = dattavani_asr::testing::mel::log_mel_spectrogram(&samples, dims.n_mels).window(0);
    // Log-mel of jfk (11 s) and of 30 s, GPU and CPU, after one warm-up call each.
    let s30: Vec<f32> = samples.iter().cycle().take(30 * 16000).copied().collect();
    for (what, s) in [("jfk (11 s)", &samples), ("30 s", &s30)] {
        let _ = m.log_mel(s, dims.n_mels)?;
        let t = Instant::now();
        let _ = m.log_mel(s, dims.n_mels)?;
        let gpu = t.elapsed().as_secs_f64() * 1e3;
        let _ = dattavani_asr::testing::mel::log_mel_spectrogram(s, dims.n_mels);
        let t = Instant::now();
        let _ = dattavani_asr::testing::mel::log_mel_spectrogram(s, dims.n_mels);
        let cpu = t.elapsed().as_secs_f64() * 1e3;
        println!("log-mel of {what}: gpu {gpu:.1} ms, cpu {cpu:.1} ms");
    }
    let mut enc = Vec::new();
    m.encode(&mel)?; // warm-up
    let cpu0 = cpu_seconds();
    for _ in 0..4 {
        let t = Instant::now();
        m.encode(&mel)?;
        enc.push(t.elapsed().as_secs_f64());
    }
    let min = enc.iter().copied().fold(f64::MAX, f64::min);
    println!("encoder: {enc:.2?} s per window after one warm-up (min {min:.2})");
    if let (Some(a), Some(b)) = (cpu0, cpu_seconds()) {
        println!(
            "encoder: {:.2} CPU s per window",
            (b - a) / enc.len() as f64
        );
    }
    for n_seq in [1usize, 5] {
        let mut logits = vec![0.0; n_seq * dims.n_vocab];
        m.begin_decode(1)?;
        m.decode(&[50257, 50362], &mut logits[..dims.n_vocab])?;
        if n_seq > 1 {
            m.reorder(&vec![0; n_seq])?;
        }
        let steps = 40;
        let mut times = Vec::new();
        for i in 0..steps {
            let t = Instant::now();
            m.decode(&vec![(400 + i) as u32; n_seq], &mut logits)?;
            if n_seq > 1 {
                let src: Vec<usize> = (0..n_seq).map(|s| (s + 1) % n_seq).collect();
                m.reorder(&src)?;
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let warm = &mut times[5..];
        warm.sort_by(f64::total_cmp);
        println!(
            "decoder, {n_seq} sequence(s): median {:.1} ms per step ({} steps after 5 warm-up; min {:.1}, max {:.1})",
            warm[warm.len() / 2],
            warm.len(),
            warm[0],
            warm[warm.len() - 1]
        );
    }
    Ok(())
}
