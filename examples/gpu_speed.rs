//! tiny.en (or the model named by the first argument) on `--device gpu`'s adapter: encoder
//! seconds per 30-s window and decoder milliseconds per token (one sequence, and five as beam
//! search runs), after warm-up; and the log-mel on the GPU and the CPU. `cargo run --release --example gpu_speed [model]`.

use std::time::Instant;

use dattavani_asr::backend::gpu::{AdapterSelector, GpuContext, GpuModel};
use dattavani_asr::backend::Backend;
use dattavani_asr::model::{config::ModelConfig, hub, weights::Weights};

fn main() -> dattavani_asr::error::Result<()> {
    let model = std::env::args().nth(1).unwrap_or_else(|| "tiny.en".into());
    let files = hub::resolve(&model)?;
    let config = ModelConfig::from_dir(&files.dir)?;
    let weights = Weights::open(&files.weights())?;
    let ctx = GpuContext::new(&AdapterSelector::AnyGpu)?;
    let mut m = GpuModel::load(ctx, &weights, &config.dims)?;
    println!("{model} on {}", m.device_name());
    let dims = config.dims.clone();
    let samples = dattavani_asr::audio::load_audio(std::path::Path::new("samples/jfk.wav"))?;
    let mel = dattavani_asr::mel::log_mel_spectrogram(&samples, dims.n_mels).window(0);
    // Log-mel of jfk (11 s) and of 30 s, GPU and CPU, after one warm-up call each.
    let s30: Vec<f32> = samples.iter().cycle().take(30 * 16000).copied().collect();
    for (what, s) in [("jfk (11 s)", &samples), ("30 s", &s30)] {
        let _ = m.log_mel(s, dims.n_mels)?;
        let t = Instant::now();
        let _ = m.log_mel(s, dims.n_mels)?;
        let gpu = t.elapsed().as_secs_f64() * 1e3;
        let _ = dattavani_asr::mel::log_mel_spectrogram(s, dims.n_mels);
        let t = Instant::now();
        let _ = dattavani_asr::mel::log_mel_spectrogram(s, dims.n_mels);
        let cpu = t.elapsed().as_secs_f64() * 1e3;
        println!("log-mel of {what}: gpu {gpu:.1} ms, cpu {cpu:.1} ms");
    }
    let mut enc = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        m.encode(&mel)?;
        enc.push(t.elapsed().as_secs_f64());
    }
    println!("encoder: {enc:.2?} s per window");
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
