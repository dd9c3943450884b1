//! Silero VAD from the command line, until the CLI grows `--vad` (see src/vad/mod.rs).
//!
//! ```text
//! cargo run --release --example vad -- pull                 # fetch the weights into the cache
//! cargo run --release --example vad -- segments FILE.wav    # speech segments, seconds
//! cargo run --release --example vad -- bench FILE.wav [RUNS] # time the forward pass (JSON line)
//! cargo run --release --example vad -- transcribe MODEL FILE.wav [--no-vad]  # JSON, CPU, greedy
//! ```
//! `bench` runs on one thread and prints the best of RUNS (default 3) full passes;
//! tools/vad_speed.py runs it next to onnxruntime.

use std::path::Path;
use std::time::Instant;

use dattavani_asr::vad::{self, VadModel, VadOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args.first().map(String::as_str) {
        Some("pull") => {
            println!("{}", vad::fetch::resolve()?.display());
        }
        Some("segments") if args.len() == 2 => {
            let samples = dattavani_asr::testing::audio::load_audio(Path::new(&args[1]))?;
            let model = VadModel::load()?;
            let chunks = vad::speech_chunks(&samples, &model, &VadOptions::default());
            for c in &chunks {
                println!("{:.3}\t{:.3}", c.start as f64 / 16e3, c.end as f64 / 16e3);
            }
        }
        Some("bench") if (2..=3).contains(&args.len()) => {
            let samples = dattavani_asr::testing::audio::load_audio(Path::new(&args[1]))?;
            let runs: usize = args.get(2).map(|r| r.parse()).transpose()?.unwrap_or(3);
            let model = VadModel::load()?;
            let mut best = f64::INFINITY;
            let mut probs = Vec::new();
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                probs = model.speech_probabilities(&samples);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let speech = probs.iter().filter(|&&p| p >= 0.5).count();
            println!(
                "{{\"engine\":\"dattavani-asr\",\"audio_s\":{:.2},\"windows\":{},\"best_s\":{:.4},\"us_per_window\":{:.2},\"speech_windows\":{}}}",
                samples.len() as f64 / 16e3,
                probs.len(),
                best,
                best * 1e6 / probs.len() as f64,
                speech
            );
        }
        Some("transcribe") if (3..=4).contains(&args.len()) => {
            use dattavani_asr::{Device, TranscribeOptions, Transcriber};
            let samples = dattavani_asr::audio_io::load_audio(Path::new(&args[2]))?;
            let mut options = TranscribeOptions::default();
            options.decode.beam_size = None;
            options.decode.best_of = None;
            let mut whisper = Transcriber::builder()
                .model(&args[1])
                .device(Device::Cpu)
                .options(options)
                .build()?;
            let t = Instant::now();
            let json = if args.get(3).map(String::as_str) == Some("--no-vad") {
                serde_json::to_string(&whisper.transcribe_samples(&samples, 16_000)?)?
            } else {
                let model = VadModel::load()?;
                let out = vad::transcribe_with_vad(
                    &mut whisper,
                    &samples,
                    &model,
                    &VadOptions::default(),
                    None,
                )?;
                serde_json::to_string(&out)?
            };
            eprintln!("wall {:.1} s", t.elapsed().as_secs_f64());
            println!("{json}");
        }
        _ => {
            return Err(
                "usage: vad pull | vad segments FILE | vad bench FILE [RUNS] | vad transcribe MODEL FILE [--no-vad]"
                    .into(),
            )
        }
    }
    Ok(())
}
