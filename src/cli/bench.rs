//! `dattavani-asr bench`: where the time of one transcription goes, on this machine.
//!
//! Loads the model twice (the first load in the process, "cold", and a second, "warm", once the
//! checkpoint is in the page cache), transcribes the file once to warm up and then `--runs` times,
//! and reports the median of each figure over the timed runs: mel, encoder per window, decoder
//! per window, ms per decoder step and per sequence-token, the host-side share of decoding (logit
//! filters and search), total wall and real-time factor; then peak RSS and, on a GPU, the device
//! memory the model holds. Figures come from [`Timings`], which every transcription fills.
//! On a GPU whose adapter has timestamp queries inside passes, one more run after the timed ones
//! (so the medians are not disturbed) records every dispatch's device time: a per-kernel table
//! (calls, total ms, GFLOP/s, GB/s), largest total first.
//! A table by default, one JSON object with `--json`.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;

use dattavani_asr::devices::KernelProfile;
use dattavani_asr::{
    Device, Error, Result, Timings, TranscribeOptions, Transcriber, WindowTimings, DEFAULT_MODEL,
};

use super::measure::{decoder_token_flops, encoder_flops, load_average, median, rss_bytes};
use super::stdout::outln;
use super::DtypeArg;

/// The clip `bench` times when no FILE is given (relative to the working directory).
const DEFAULT_BENCH_FILE: &str = "samples/jfk.wav";

#[derive(Clone, Copy, ValueEnum)]
pub enum BenchDevice {
    Auto,
    Cpu,
    Gpu,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Audio file (default: samples/jfk.wav, which a source checkout has).
    #[arg(default_value = DEFAULT_BENCH_FILE)]
    file: PathBuf,
    /// Model: alias, Hugging Face repo id, or directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    model: String,
    /// Compute device (as `transcribe --device`).
    #[arg(long, value_enum, default_value = "auto")]
    device: BenchDevice,
    /// GPU adapter: an index or part of a name from `dattavani-asr devices` (implies the GPU).
    #[arg(long, value_name = "N|NAME")]
    adapter: Option<String>,
    #[arg(long, value_enum, default_value = "auto", help = super::DTYPE_HELP)]
    dtype: DtypeArg,
    /// Timed runs after one warm-up run; each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Beams (1: greedy). Default 5, as `transcribe`.
    #[arg(long, default_value_t = 5)]
    beam_size: usize,
    /// Chunks decoded together (as `transcribe --batch-size`; 1: the sequential seek loop).
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One run's figures, summed over its windows.
#[derive(Debug, Clone, Serialize)]
struct Run {
    total_ms: f64,
    mel_ms: f64,
    language_ms: f64,
    windows: usize,
    windows_encoded: usize,
    encoder_ms: f64,
    cross_kv_ms: f64,
    decoder_ms: f64,
    forward_ms: f64,
    step_ms: f64,
    passes: usize,
    prompt_calls: usize,
    steps: usize,
    seq_tokens: usize,
    tokens: usize,
}

impl Run {
    fn from(t: &Timings) -> Self {
        let w = &t.windows;
        let sum = |f: fn(&WindowTimings) -> f64| w.iter().map(f).sum::<f64>();
        let count = |f: fn(&WindowTimings) -> usize| w.iter().map(f).sum();
        Run {
            total_ms: t.total_ms,
            mel_ms: t.mel_ms,
            language_ms: t.language_ms,
            windows: w.len(),
            windows_encoded: w.iter().filter(|w| w.encoder_ms > 0.0).count(),
            encoder_ms: sum(|w| w.encoder_ms),
            cross_kv_ms: sum(|w| w.cross_kv_ms),
            decoder_ms: sum(|w| w.decoder_ms),
            forward_ms: sum(|w| w.forward_ms),
            step_ms: sum(|w| w.step_ms),
            passes: count(|w| w.passes),
            prompt_calls: count(|w| w.prompt_calls),
            steps: count(|w| w.steps),
            seq_tokens: count(|w| w.seq_tokens),
            tokens: count(|w| w.tokens),
        }
    }
}

/// The report (`--json` prints it as is; times in ms, sizes in bytes; medians over the runs).
#[derive(Debug, Serialize)]
struct Report {
    file: String,
    audio_s: f64,
    model: String,
    device: String,
    dtype: String,
    beam_size: usize,
    batch_size: usize,
    threads: usize,
    /// The CPU's model name and the code path (instruction set) of each CPU op family.
    cpu_model: String,
    cpu_paths: std::collections::BTreeMap<&'static str, String>,
    runs: usize,
    load_average: Option<f64>,
    /// Model resolution (cache look-up, metadata) plus load, first time in this process.
    load_cold_ms: f64,
    /// The same again, the checkpoint now in the page cache.
    load_warm_ms: f64,
    audio_ms: f64,
    warmup_total_ms: f64,
    mel_ms: f64,
    language_ms: f64,
    windows: usize,
    /// The encoder call: the network, then (on the CPU) every decoder layer's cross-attention
    /// keys and values from its output.
    encoder_ms_per_window: f64,
    /// Of it, the cross-attention K/V (0 where the backend does not time them apart).
    cross_kv_ms_per_window: f64,
    /// The network alone (`encoder_ms_per_window` less the cross-attention K/V): what
    /// CTranslate2's `Whisper.encode` times.
    encoder_network_ms_per_window: f64,
    /// The network's FLOPs over its time.
    encoder_gflops: f64,
    decoder_ms_per_window: f64,
    /// Decoder time outside the forward passes: logit filters, search, bookkeeping.
    decoder_host_ms_per_window: f64,
    prompt_ms_per_window: f64,
    passes: usize,
    tokens: usize,
    steps: usize,
    seq_tokens: usize,
    /// Per decoder step (one token for every sequence of the pass: 5 with beam 5).
    ms_per_step: f64,
    /// Per sequence-token: `ms_per_step` over the sequences a step computes.
    ms_per_seq_token: f64,
    decoder_step_gflops: f64,
    total_ms: f64,
    real_time_factor: f64,
    peak_rss_bytes: Option<u64>,
    rss_bytes: Option<u64>,
    gpu_bytes: Option<u64>,
    text: String,
    per_run: Vec<Run>,
    /// Device time per kernel over one extra, profiled run (GPU with timestamp queries).
    kernel_profile: Option<KernelProfile>,
}

/// The `bench` command; returns the exit code.
pub fn bench_command(args: BenchArgs) -> Result<i32> {
    if args.threads == Some(0) {
        return Err(Error::Usage("--threads must be at least 1".into()));
    }
    if args.runs == 0 || args.beam_size == 0 || args.batch_size == 0 {
        return Err(Error::Usage(
            "--runs, --beam-size and --batch-size must be at least 1".into(),
        ));
    }
    let device = match args.device {
        BenchDevice::Auto => Device::Auto,
        BenchDevice::Cpu => Device::Cpu,
        BenchDevice::Gpu => Device::Gpu,
    };
    let mut options = TranscribeOptions::default();
    options.decode.beam_size = Some(args.beam_size);
    options.weights_dtype = Some(args.dtype.dtype());
    options.batch_size = args.batch_size;

    let t = Instant::now();
    if args.file.as_os_str() == DEFAULT_BENCH_FILE && !args.file.exists() {
        return Err(Error::Usage(format!(
            "bench needs an audio file: give one (`dattavani-asr bench FILE`); the default \
             {DEFAULT_BENCH_FILE} exists only in a source checkout of dattavani-asr"
        )));
    }
    let samples = dattavani_asr::audio_io::load_audio(&args.file)?;
    let audio_ms = ms(t);
    let rate = dattavani_asr::audio_io::SAMPLE_RATE;
    let audio_s = samples.len() as f64 / rate as f64;

    let load = || -> Result<Transcriber> {
        let mut b = Transcriber::builder()
            .model(&args.model)
            .device(device)
            .options(options.clone());
        if let Some(a) = &args.adapter {
            b = b.adapter(a);
        }
        if let Some(n) = args.threads {
            b = b.threads(n);
        }
        b.build()
    };
    let t = Instant::now();
    let first = load()?;
    let load_cold_ms = ms(t);
    drop(first);
    let t = Instant::now();
    let mut tr = load()?;
    let load_warm_ms = ms(t);

    let t = Instant::now();
    let transcript = tr.transcribe_samples(&samples, rate)?;
    let warmup_total_ms = ms(t);
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        tr.transcribe_samples(&samples, rate)?;
        runs.push(Run::from(tr.timings()));
    }
    // After the timed runs: the timestamps and their read-backs slow a run down.
    let profiling = tr
        .diagnostics()
        .is_some_and(|d| d.set_kernel_profiling(true));
    let kernel_profile = if profiling {
        tr.transcribe_samples(&samples, rate)?;
        let d = tr.diagnostics().expect("profiling was turned on");
        let p = d.take_kernel_profile()?;
        d.set_kernel_profiling(false);
        p
    } else {
        None
    };
    let (dtype, gpu_bytes) = match tr.diagnostics() {
        Some(d) => (d.weights_dtype().to_string(), d.device_memory_bytes()),
        None => ("?".to_string(), None),
    };

    let dims = tr.dims().clone();
    let med = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let last = runs.last().expect("at least one run").clone();
    let encoder_ms_per_window = med(|r| per_window(r.encoder_ms, r.windows_encoded));
    let cross_kv_ms_per_window = med(|r| per_window(r.cross_kv_ms, r.windows_encoded));
    let encoder_network_ms_per_window =
        med(|r| per_window(r.encoder_ms - r.cross_kv_ms, r.windows_encoded));
    let ms_per_step = med(|r| per_window(r.step_ms, r.steps));
    let ms_per_seq_token = med(|r| per_window(r.step_ms, r.seq_tokens));
    // Steps run at cache positions past the prompt; a position of 32 is typical for a window.
    let step_flops = decoder_token_flops(&dims, 32);
    let total_ms = med(|r| r.total_ms);
    let (peak_rss_bytes, rss_bytes) = rss_bytes();
    let report = Report {
        file: args.file.display().to_string(),
        audio_s,
        model: args.model.clone(),
        device: tr.device_name(),
        dtype,
        beam_size: args.beam_size,
        batch_size: args.batch_size,
        threads: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        }),
        cpu_model: dattavani_asr::devices::cpu_model(),
        cpu_paths: dattavani_asr::devices::cpu_op_paths().into_iter().collect(),
        runs: args.runs,
        load_average: load_average(),
        load_cold_ms,
        load_warm_ms,
        audio_ms,
        warmup_total_ms,
        mel_ms: med(|r| r.mel_ms),
        language_ms: med(|r| r.language_ms),
        windows: last.windows,
        encoder_ms_per_window,
        cross_kv_ms_per_window,
        encoder_network_ms_per_window,
        encoder_gflops: encoder_flops(&dims) / encoder_network_ms_per_window / 1e6,
        decoder_ms_per_window: med(|r| per_window(r.decoder_ms, r.windows)),
        decoder_host_ms_per_window: med(|r| per_window(r.decoder_ms - r.forward_ms, r.windows)),
        prompt_ms_per_window: med(|r| per_window(r.forward_ms - r.step_ms, r.windows)),
        passes: last.passes,
        tokens: last.tokens,
        steps: last.steps,
        seq_tokens: last.seq_tokens,
        ms_per_step,
        ms_per_seq_token,
        decoder_step_gflops: step_flops / ms_per_seq_token / 1e6,
        total_ms,
        real_time_factor: total_ms / 1e3 / audio_s,
        peak_rss_bytes,
        rss_bytes,
        gpu_bytes,
        text: transcript.text.trim().to_string(),
        per_run: runs,
        kernel_profile,
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?
        );
    } else {
        print_table(&report);
    }
    Ok(0)
}

/// `x / n`, NaN when there is nothing to divide by.
fn per_window(x: f64, n: usize) -> f64 {
    if n > 0 {
        x / n as f64
    } else {
        f64::NAN
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    })
}

fn print_table(r: &Report) {
    let mut search = if r.beam_size == 1 {
        "greedy".to_string()
    } else {
        format!("beam {}", r.beam_size)
    };
    if r.batch_size > 1 {
        search.push_str(&format!(", batched by {}", r.batch_size));
    }
    outln!(
        "{} ({:.1} s), {} {} on {}, {search}; median of {} runs; load average {}",
        r.file,
        r.audio_s,
        r.model,
        r.dtype,
        r.device,
        r.runs,
        r.load_average.map_or("-".into(), |l| format!("{l:.2}")),
    );
    outln!("  cpu: {}, {} threads", r.cpu_model, r.threads);
    for (family, path) in dattavani_asr::devices::cpu_op_paths() {
        outln!("    {family:<32} {path}");
    }
    let line = |what: &str, v: String, note: String| outln!("  {what:<28} {v:>12}  {note}");
    let f = |x: f64| format!("{x:.1} ms");
    line(
        "model load, cold",
        f(r.load_cold_ms),
        "first in process".into(),
    );
    line("model load, warm", f(r.load_warm_ms), "second".into());
    line("audio decode", f(r.audio_ms), String::new());
    line(
        "first run (warm-up)",
        f(r.warmup_total_ms),
        "not in the medians".into(),
    );
    line("mel", f(r.mel_ms), String::new());
    if r.language_ms > 0.0 {
        line("language detection", f(r.language_ms), String::new());
    }
    line(
        "encoder / window",
        f(r.encoder_ms_per_window),
        format!("{} window(s)", r.windows),
    );
    if r.cross_kv_ms_per_window > 0.0 {
        line(
            "  network / window",
            f(r.encoder_network_ms_per_window),
            format!("{:.1} GFLOP/s", r.encoder_gflops),
        );
        line(
            "  cross-attention K/V",
            f(r.cross_kv_ms_per_window),
            "every decoder layer's, from the output".into(),
        );
    } else {
        line(
            "  network / window",
            f(r.encoder_network_ms_per_window),
            format!(
                "{:.1} GFLOP/s (cross-attention K/V not timed apart)",
                r.encoder_gflops
            ),
        );
    }
    line(
        "decoder / window",
        f(r.decoder_ms_per_window),
        format!(
            "{} pass(es), {} tokens kept, {} steps x {} seq",
            r.passes,
            r.tokens,
            r.steps,
            r.seq_tokens.checked_div(r.steps).unwrap_or(0)
        ),
    );
    line(
        "  prompt / window",
        f(r.prompt_ms_per_window),
        String::new(),
    );
    line(
        "  per step",
        format!("{:.2} ms", r.ms_per_step),
        "one token for every sequence of the pass".into(),
    );
    line(
        "  per sequence-token",
        format!("{:.2} ms", r.ms_per_seq_token),
        format!("~{:.1} GFLOP/s", r.decoder_step_gflops),
    );
    line(
        "  host / window",
        f(r.decoder_host_ms_per_window),
        "logit filters, search".into(),
    );
    line(
        "total",
        f(r.total_ms),
        format!("real-time factor {:.3}", r.total_ms / 1e3 / r.audio_s),
    );
    line("peak RSS", mib(r.peak_rss_bytes), String::new());
    if r.gpu_bytes.is_some() {
        line("GPU memory", mib(r.gpu_bytes), "allocator, live".into());
    }
    outln!("  text: {}", r.text);
    if let Some(p) = &r.kernel_profile {
        print_kernel_table(p);
    }
}

/// The per-kernel table of a profiled run.
pub fn print_kernel_table(p: &KernelProfile) {
    outln!(
        "  kernels, one profiled run (device timestamps): {} dispatches, {:.1} ms",
        p.dispatches,
        p.total_ms
    );
    outln!(
        "    {:<24} {:>7} {:>10} {:>6} {:>9} {:>8}",
        "kernel",
        "calls",
        "total ms",
        "%",
        "GFLOP/s",
        "GB/s"
    );
    let rate = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.1}"));
    for k in &p.kernels {
        outln!(
            "    {:<24} {:>7} {:>10.1} {:>6.1} {:>9} {:>8}",
            k.name,
            k.calls,
            k.total_ms,
            if p.total_ms > 0.0 {
                100.0 * k.total_ms / p.total_ms
            } else {
                0.0
            },
            rate(k.gflops()),
            rate(k.gbytes_per_s()),
        );
    }
}
