//! The `dattavani-asr` command line. Exit codes (README "Exit codes"): 0 success; 1 some input
//! files failed; 2 usage error; 3 model error; 4 device error; 5 internal error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dattavani_asr::decode::DecodeOptions;
use dattavani_asr::model::{hub, DEFAULT_MODEL};
use dattavani_asr::output::{self, OutputFormat};
use dattavani_asr::transcribe::{DeviceChoice, Transcriber};
use dattavani_asr::Error;

#[derive(Parser)]
#[command(
    name = "dattavani-asr",
    version,
    about = "Whisper speech recognition: WGSL on any GPU, or the CPU"
)]
struct Cli {
    /// Only print warnings and errors on stderr.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe audio files to text.
    Transcribe(TranscribeArgs),
    /// Manage model checkpoints.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Import a CTranslate2 (faster-whisper) model directory into the Hugging Face cache.
    Import {
        /// Directory holding model.bin (or its split parts), config.json and tokenizer.json.
        dir: PathBuf,
        /// Name to import it as: an alias (tiny.en, base, ...) or a repo id (org/name).
        #[arg(long = "as")]
        name: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Device {
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Txt,
    Json,
}

#[derive(clap::Args)]
struct TranscribeArgs {
    /// Audio files (WAV).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Model: alias (tiny, tiny.en, base, ..., large-v3-turbo), Hugging Face repo id, or directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    model: String,
    /// Compute device.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    #[arg(long, value_enum, default_value = "txt")]
    output_format: Format,
    /// Write `<stem>.<format>` here instead of printing to stdout.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet);
    let result = match cli.command {
        Command::Transcribe(args) => transcribe(args),
        Command::Models {
            command: ModelsCommand::Import { dir, name },
        } => hub::import(&dir, &name).map(|files| {
            println!(
                "imported {} as {} ({})",
                dir.display(),
                name,
                files.dir.display()
            );
            0
        }),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Returns the exit code: 0, or 1 when some files failed (the others are still transcribed).
fn transcribe(args: TranscribeArgs) -> Result<i32, Error> {
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(Error::Usage("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
    }
    let device = match args.device {
        Device::Auto => DeviceChoice::Auto,
        Device::Cpu => DeviceChoice::Cpu,
        Device::Gpu => DeviceChoice::Gpu,
    };
    let format = match args.output_format {
        Format::Txt => OutputFormat::Txt,
        Format::Json => OutputFormat::Json,
    };
    let mut transcriber = Transcriber::new(&args.model, device, DecodeOptions::default())?;
    let mut failed = 0;
    for file in &args.files {
        let result = transcriber.transcribe_file(file).and_then(|t| {
            let rendered = output::render(&t, format);
            match &args.output_dir {
                Some(dir) => {
                    let path = output::output_path(dir, file, format);
                    output::write_atomic(&path, rendered.as_bytes())?;
                    tracing::info!("{} -> {}", file.display(), path.display());
                    Ok(())
                }
                None => {
                    print!("{rendered}");
                    if format == OutputFormat::Json {
                        println!();
                    }
                    Ok(())
                }
            }
        });
        if let Err(e) = result {
            eprintln!("error: {e}");
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
