//! End-to-end stage benchmarks on a real model (default tiny.en) and samples/jfk.wav: model load,
//! log-mel, one encoder window, one decoder step with 1 and with 5 sequences (beam search's
//! shape), on the CPU and, when there is an adapter, the GPU (whatever `--device gpu` would take,
//! lavapipe included). Median of N after one warm-up; GFLOP/s where the work is known
//! (`bench::encoder_flops`, `bench::decoder_token_flops`).
//!
//! Run: `cargo bench --bench end_to_end`. Knobs: `BENCH_ITERS` (load, mel, encoder; default 5,
//! 3 for the GPU encoder), `BENCH_STEPS` (decoder steps; default 20), `BENCH_MODEL` (default
//! tiny.en), `BENCH_DEVICE` (`cpu` or `gpu`: only that one). The model is fetched on first use.

use std::path::Path;
use std::time::Instant;

use dattavani_asr::testing::backend::cpu::CpuModel;
use dattavani_asr::testing::backend::gpu::{AdapterSelector, GpuContext, GpuModel};
use dattavani_asr::testing::backend::Backend;
#[path = "../src/cli/measure.rs"]
#[allow(dead_code)]
mod measure;
use dattavani_asr::testing::model::config::ModelConfig;
use dattavani_asr::testing::model::weights::Weights;
use dattavani_asr::testing::model::{hub, ModelFiles};
use dattavani_asr::testing::tokenizer::WhisperTokenizer;
use measure::{decoder_token_flops, encoder_flops, load_average, median};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds per call of `f`: one warm-up, then the median of `n`.
fn time_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..n.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

/// Median ms of one decoder step with `n_seq` sequences, after the start-of-transcript prompt.
fn step_ms(b: &mut dyn Backend, sot: u32, n_seq: usize, steps: usize) -> f64 {
    let n_vocab = b.dims().n_vocab;
    let mut logits = vec![0.0f32; n_seq * n_vocab];
    b.begin_decode(1).unwrap();
    b.decode(&[sot], &mut logits[..n_vocab]).unwrap();
    if n_seq > 1 {
        b.reorder(&vec![0; n_seq]).unwrap();
    }
    // " the" and friends: any text tokens do; the cost depends only on the position.
    let feed: Vec<u32> = (0..n_seq as u32).map(|i| 262 + i).collect();
    b.decode(&feed, &mut logits).unwrap(); // warm-up
    let times: Vec<f64> = (0..steps)
        .map(|_| {
            let t = Instant::now();
            b.decode(&feed, &mut logits).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

struct Row {
    stage: String,
    cpu: Option<String>,
    gpu: Option<String>,
}

fn fmt(ms: f64, gflop: Option<f64>) -> String {
    match gflop {
        Some(g) => format!("{ms:.2} ms ({:.1} GFLOP/s)", g / ms * 1e3),
        None => format!("{ms:.2} ms"),
    }
}

/// The figures of one device, in `Row` order.
fn run_device(
    gpu: bool,
    files: &ModelFiles,
    config: &ModelConfig,
    sot: u32,
    window: &[f32],
) -> Option<(String, Vec<String>)> {
    let dims = &config.dims;
    let iters = env_usize("BENCH_ITERS", 5);
    let steps = env_usize("BENCH_STEPS", 20);
    let load = || -> dattavani_asr::Result<Box<dyn Backend>> {
        let w = Weights::open(&files.weights())?;
        Ok(if gpu {
            Box::new(GpuModel::load(
                GpuContext::new(&AdapterSelector::AnyGpu)?,
                &w,
                dims,
            )?)
        } else {
            Box::new(CpuModel::load(&w, dims)?)
        })
    };
    let mut b = match load() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: skipped ({e})", if gpu { "gpu" } else { "cpu" });
            return None;
        }
    };
    let name = b.device_name();
    let load_ms = time_ms(iters, || drop(load().unwrap()));
    let enc_iters = if gpu {
        env_usize("BENCH_ITERS", 3)
    } else {
        iters
    };
    let enc_ms = time_ms(enc_iters, || b.encode(window).unwrap());
    let pos = 2 + steps / 2;
    let s1 = step_ms(b.as_mut(), sot, 1, steps);
    let s5 = step_ms(b.as_mut(), sot, 5, steps);
    let tok = decoder_token_flops(dims, pos) / 1e9;
    Some((
        name,
        vec![
            fmt(load_ms, None),
            fmt(enc_ms, Some(encoder_flops(dims) / 1e9)),
            fmt(s1, Some(tok)),
            format!("{} = {:.2} ms/seq", fmt(s5, Some(5.0 * tok)), s5 / 5.0),
        ],
    ))
}

fn main() {
    let model = std::env::var("BENCH_MODEL").unwrap_or_else(|_| "tiny.en".into());
    let only = std::env::var("BENCH_DEVICE").unwrap_or_default();
    let files = hub::resolve(&model).expect("model resolves");
    let config = ModelConfig::from_dir(&files.dir).expect("config");
    let tok = WhisperTokenizer::from_file(&files.tokenizer(), config.dims.n_vocab).expect("tok");
    let audio = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/jfk.wav");
    let samples = dattavani_asr::testing::audio::load_audio(&audio).expect("jfk.wav");
    let n_mels = config.dims.n_mels;
    let mel_ms = time_ms(env_usize("BENCH_ITERS", 5), || {
        std::hint::black_box(dattavani_asr::testing::mel::log_mel_spectrogram(
            &samples, n_mels,
        ));
    });
    let window = dattavani_asr::testing::mel::log_mel_spectrogram(&samples, n_mels).window(0);

    let d = &config.dims;
    let steps = env_usize("BENCH_STEPS", 20);
    println!(
        "{model}: encoder {:.1} GFLOP/window, decoder {:.1} MFLOP/token at position {}; \
         {} threads; load average {}",
        encoder_flops(d) / 1e9,
        decoder_token_flops(d, 2 + steps / 2) / 1e6,
        2 + steps / 2,
        rayon::current_num_threads(),
        load_average().map_or("-".into(), |l| format!("{l:.2}")),
    );
    let cpu = (only.is_empty() || only == "cpu")
        .then(|| run_device(false, &files, &config, tok.sot, &window))
        .flatten();
    let gpu = (only.is_empty() || only == "gpu")
        .then(|| run_device(true, &files, &config, tok.sot, &window))
        .flatten();
    let stages = [
        "model load",
        "encoder, 1 window",
        "decoder step, 1 seq",
        "decoder step, 5 seq",
    ];
    let mut rows = vec![Row {
        stage: format!("log-mel, {:.1} s audio", samples.len() as f64 / 16000.0),
        cpu: Some(fmt(mel_ms, None)),
        gpu: None,
    }];
    for (i, s) in stages.iter().enumerate() {
        rows.push(Row {
            stage: s.to_string(),
            cpu: cpu.as_ref().map(|(_, v)| v[i].clone()),
            gpu: gpu.as_ref().map(|(_, v)| v[i].clone()),
        });
    }
    println!(
        "| stage | {} | {} |",
        cpu.as_ref().map_or("CPU".into(), |(n, _)| n.clone()),
        gpu.as_ref().map_or("GPU".into(), |(n, _)| n.clone()),
    );
    println!("|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} |",
            r.stage,
            r.cpu.unwrap_or_else(|| "-".into()),
            r.gpu.unwrap_or_else(|| "-".into())
        );
    }
}
