//! The command line's parts: argument parsing, logging, and one module per command. Everything
//! here is built on the library's public API; what is specific to a terminal (clap, indicatif
//! bars, exit codes) stays here.

mod audio_input;
mod bench;
mod checks;
mod compat;
mod info;
mod manifest;
mod measure;
mod model_args;
mod models;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod serve_live;
mod stdout;
mod stream;
mod subtitle_args;
mod transcribe;
mod vad;

use stdout::outln;

pub use compat::rewrite_args;

use clap::{Parser, Subcommand, ValueEnum};
use dattavani_asr::{Dtype, Result};

#[derive(Parser)]
#[command(
    name = "dattavani-asr",
    version,
    about = "Whisper speech recognition: WGSL on any GPU, or the CPU"
)]
pub struct Cli {
    /// Only print warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe audio files to text.
    Transcribe(Box<transcribe::TranscribeArgs>),
    /// Time each stage of a transcription (load, mel, encoder, decoder), peak memory.
    Bench(bench::BenchArgs),
    /// List the GPU adapters (the indices `--adapter` takes) and what each supports.
    Devices,
    /// Describe audio files: container, codec, duration, rate, channels, levels, silence (and
    /// the speech share when the Silero VAD weights are cached).
    Info(info::InfoArgs),
    /// Manage model checkpoints.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Live transcription of a file or stdin as it arrives: JSON lines of committed text (and
    /// partials), or plain text on a terminal.
    Stream(stream::StreamArgs),
    /// Serve OpenAI's audio API (transcriptions, translations) over HTTP.
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
}

/// `--dtype`.
#[derive(Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    Auto,
    F32,
    F16,
    Int8,
    #[value(name = "int8-bf16")]
    Int8Bf16,
    #[value(name = "int8-bf16x3")]
    Int8Bf16x3,
    #[value(name = "int8-bf16v")]
    Int8Bf16V,
}

/// `--dtype`'s help, one text for every command that takes it.
pub const DTYPE_HELP: &str = "Weight storage: auto (the default: int8 on a CPU with AVX-512 \
VNNI, int8-bf16v where it has AVX-512 BF16 too, else f32; f16 on a GPU), f32 (the reference), f16 (GPU only), int8 (row-scaled, as \
CTranslate2: CPU, with AVX-512 VNNI where the CPU has it; GPU, dequantized in the matmul) or \
int8-bf16 (int8, and the encoder's attention products in bf16 on a CPU with AVX-512 BF16: \
faster, slightly noisier; int8 elsewhere) or int8-bf16x3 (int8, and those products as three bf16 \
products of split operands: near f32; made for AMX tiles, slower than int8 without them) or \
int8-bf16v (int8, and only the weights × values product in bf16)";

impl DtypeArg {
    pub fn dtype(self) -> Dtype {
        match self {
            DtypeArg::Auto => Dtype::Auto,
            DtypeArg::F32 => Dtype::F32,
            DtypeArg::F16 => Dtype::F16,
            DtypeArg::Int8 => Dtype::Int8,
            DtypeArg::Int8Bf16 => Dtype::Int8Bf16,
            DtypeArg::Int8Bf16x3 => Dtype::Int8Bf16x3,
            DtypeArg::Int8Bf16V => Dtype::Int8Bf16V,
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("DATTAVANI_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("warn,dattavani_asr={default}"))
        });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

/// Run the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    init_logging(cli.quiet);
    // Download, conversion and verification bars follow the transcription bar's rule.
    models::install_progress_bars(!cli.quiet);
    match cli.command {
        Command::Transcribe(args) => transcribe::transcribe_command(*args, cli.quiet),
        Command::Info(args) => info::info_command(args),
        Command::Models { command } => models::models_command(command),
        Command::Bench(args) => bench::bench_command(args),
        Command::Stream(args) => stream::stream_command(args),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::serve_command(args),
        Command::Devices => {
            devices();
            Ok(0)
        }
    }
}

/// `devices`: every adapter on the Vulkan / Metal / DX12 backends; none is not an error.
fn devices() {
    let adapters = dattavani_asr::devices::list_adapters();
    if adapters.is_empty() {
        outln!(
            "no GPU adapters found: no Vulkan, Metal or DX12 driver answered (on Linux, install \
             mesa-vulkan-drivers for the lavapipe software adapter); --device auto uses the CPU"
        );
    }
    for a in adapters {
        outln!("{a}");
    }
}
