//! `dattavani-asr transcribe`: flags to [`TranscribeOptions`], a progress bar, the writers.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use std::io::Read;

use dattavani_asr::audio_io::{
    load_audio_with, sniff, sniff_file, AudioStream, OpenOptions, SpooledMel, SAMPLE_RATE,
    SNIFF_LEN,
};
use dattavani_asr::progress::{Progress, ProgressUnit};
use dattavani_asr::writers::{self as output, FormatChoice, OutputFormat};
use dattavani_asr::{
    DecodeOptions, Device as DeviceChoice, Error, Hooks, Result, Task, TranscribeOptions,
    Transcriber, Transcript, DEFAULT_MODEL,
};

use super::audio_input::AudioInputArgs;
use super::checks;
use super::stdout::{out, StdoutStream};
use super::DtypeArg;

#[derive(Clone, Copy, ValueEnum)]
enum Device {
    Auto,
    Cpu,
    Gpu,
}

#[derive(clap::Args)]
pub struct TranscribeArgs {
    /// Audio or video files (WAV, MP3, M4A/AAC, ALAC, FLAC, Ogg Vorbis/Opus, WebM, MKV, MP4,
    /// AIFF, CAF; chosen by content), or `-` for standard input.
    #[arg(required_unless_present = "manifest")]
    pub(super) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(super) input: AudioInputArgs,
    /// Model: alias (tiny, tiny.en, base, ..., large-v3-turbo), Hugging Face repo id, or directory.
    #[arg(long, short, default_value = DEFAULT_MODEL)]
    model: String,
    /// Compute device: auto takes a hardware GPU if there is one, else the CPU; gpu takes any
    /// adapter, a software one (lavapipe / llvmpipe) included.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// GPU adapter: an index or part of a name from `dattavani-asr devices` (implies the GPU).
    #[arg(long, value_name = "N|NAME")]
    adapter: Option<String>,
    /// Output format(s); `all` writes every format (needs --output-dir).
    #[arg(long, short = 'f', value_enum, default_value = "txt")]
    output_format: FormatChoice,
    /// Write `<stem>.<format>` here instead of printing to stdout.
    #[arg(long, short = 'o')]
    output_dir: Option<PathBuf>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Spoken language (code such as en, de, fr, or name such as English), or `auto` to detect it (multilingual models).
    #[arg(long, default_value = "auto")]
    language: String,
    /// Transcribe in the spoken language, or translate to English.
    #[arg(long, value_enum, default_value = "transcribe")]
    task: Task,
    /// First temperature; 0 decodes deterministically (beam search or greedy).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Step added to the temperature on each fallback; 0 disables fallback.
    #[arg(long, default_value_t = 0.2, allow_negative_numbers = true)]
    temperature_increment_on_fallback: f32,
    /// Candidates sampled at temperatures above 0.
    #[arg(long, default_value_t = 5)]
    best_of: usize,
    /// Beams at temperature 0; 1 is greedy decoding.
    #[arg(long, default_value_t = 5)]
    beam_size: usize,
    /// Beam search keeps going until beam_size * patience candidates have finished.
    #[arg(long)]
    patience: Option<f32>,
    /// Length penalty alpha for ranking candidates (default: plain length normalisation).
    #[arg(long, allow_negative_numbers = true)]
    length_penalty: Option<f32>,
    /// Comma-separated token ids never sampled; -1 means the checkpoint's non-speech list.
    #[arg(long, default_value = "-1", allow_hyphen_values = true)]
    suppress_tokens: String,
    /// Text that primes the first window (names, spelling, style).
    #[arg(long)]
    initial_prompt: Option<String>,
    /// Feed each window's text to the next as a prompt.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    condition_on_previous_text: bool,
    /// Retry hotter when the text's gzip compression ratio is above this.
    #[arg(long, default_value_t = 2.4, allow_negative_numbers = true)]
    compression_ratio_threshold: f32,
    /// Retry hotter when the average log-probability is below this.
    #[arg(long, default_value_t = -1.0, allow_hyphen_values = true)]
    logprob_threshold: f32,
    /// Treat a window as silence when <|nospeech|> is likelier than this (and the log-probability
    /// is below --logprob-threshold).
    #[arg(long, default_value_t = 0.6, allow_negative_numbers = true)]
    no_speech_threshold: f32,
    /// Plain text without timestamp tokens: consecutive 30-s windows, one segment each.
    #[arg(long)]
    without_timestamps: bool,
    /// Latest allowed first timestamp of a window, seconds.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    max_initial_timestamp: f32,
    /// Seed of the sampler used at temperatures above 0.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true,
          value_parser = super::checks::parse_seed)]
    seed: u64,
    /// Word-level timestamps (in json: `words` per segment, with probabilities).
    #[arg(long)]
    word_timestamps: bool,
    #[arg(long, value_enum, default_value = "auto", help = super::DTYPE_HELP)]
    dtype: DtypeArg,
    /// 1: OpenAI's sequential 30-s seek loop. N > 1: batched long-form transcription: the audio
    /// is cut at quiet points into chunks of at most 30 s, decoded independently (no
    /// conditioning on previous text), N chunks at a time through the encoder and decoder.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Voice activity detection: `--vad` and its `--vad-*` options (src/cli/vad.rs).
    #[command(flatten)]
    pub(super) vad: super::vad::VadArgs,
    #[command(flatten)]
    pub(super) subtitles: super::subtitle_args::SubtitleArgs,
    /// Batch jobs: `--manifest`, `--shard`, `--status`, `--dry-run` (src/cli/manifest.rs).
    #[command(flatten)]
    pub(super) batch: super::manifest::ManifestArgs,
}

impl TranscribeArgs {
    /// The library's options from the flags (the library derives the temperature schedule
    /// and the mel padding from them, as for any caller).
    pub(super) fn options(&self) -> Result<TranscribeOptions> {
        let mut suppress = Vec::new();
        for part in self
            .suppress_tokens
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            // -1 stands for the checkpoint's own list, which is always applied.
            if part != "-1" {
                suppress.push(part.parse::<u32>().map_err(|_| {
                    Error::Usage(format!("--suppress-tokens: '{part}' is not a token id"))
                })?);
            }
        }
        if self.beam_size == 0 || self.best_of == 0 || self.batch_size == 0 {
            return Err(Error::Usage(
                "--beam-size, --best-of and --batch-size must be at least 1".into(),
            ));
        }
        let decode = DecodeOptions {
            task: self.task,
            language: super::checks::language_code(&self.language)?,
            beam_size: Some(self.beam_size),
            best_of: Some(self.best_of),
            patience: self.patience,
            length_penalty: self.length_penalty,
            suppress_tokens: suppress,
            without_timestamps: self.without_timestamps,
            max_initial_timestamp: Some(self.max_initial_timestamp),
            ..DecodeOptions::default()
        };
        let options = TranscribeOptions {
            decode,
            temperature: self.temperature,
            temperature_increment_on_fallback: self.temperature_increment_on_fallback,
            compression_ratio_threshold: Some(self.compression_ratio_threshold),
            logprob_threshold: Some(self.logprob_threshold),
            no_speech_threshold: Some(self.no_speech_threshold),
            condition_on_previous_text: self.condition_on_previous_text,
            initial_prompt: self.initial_prompt.clone(),
            seed: self.seed,
            word_timestamps: self.word_timestamps,
            weights_dtype: Some(self.dtype.dtype()),
            batch_size: self.batch_size,
        };
        super::checks::check_options(&options, &self.model)?;
        Ok(options)
    }
}

impl TranscribeArgs {
    /// `--output-format` as the writers' formats.
    pub(super) fn formats(&self) -> Vec<OutputFormat> {
        self.output_format.formats()
    }

    /// The transcriber of `--model`, `--device`, `--adapter` and `--threads`, with `options`.
    pub(super) fn builder(&self, options: TranscribeOptions) -> dattavani_asr::TranscriberBuilder {
        let device = match self.device {
            Device::Auto => DeviceChoice::Auto,
            Device::Cpu => DeviceChoice::Cpu,
            Device::Gpu => DeviceChoice::Gpu,
        };
        let mut builder = Transcriber::builder()
            .model(&self.model)
            .device(device)
            .options(options);
        if let Some(adapter) = &self.adapter {
            builder = builder.adapter(adapter);
        }
        if let Some(n) = self.threads {
            builder = builder.threads(n);
        }
        builder
    }

    pub(super) fn model(&self) -> &str {
        &self.model
    }

    pub(super) fn output_dir(&self) -> Option<&Path> {
        self.output_dir.as_deref()
    }
}

/// Returns the exit code: 0, or 1 when some files failed (the others are still transcribed).
pub fn transcribe_command(args: TranscribeArgs, quiet: bool) -> Result<i32> {
    if args.threads == Some(0) {
        return Err(Error::Usage("--threads must be at least 1".into()));
    }
    if args.batch.manifest.is_some() {
        return super::manifest::manifest_command(args, quiet);
    }
    let formats = args.formats();
    if formats.len() > 1 && args.output_dir.is_none() {
        return Err(Error::Usage(
            "--output-format all needs --output-dir".into(),
        ));
    }
    let options = args.options()?;
    let subtitles = args.subtitles.options(args.word_timestamps)?;
    let open = args.input.open_options()?;
    // Everything that can fail without the model fails before it is fetched.
    if let Some(dir) = &args.output_dir {
        checks::check_collisions(dir, &args.files, &formats)?;
    }
    // Missing and unreadable files, and what is not audio (/dev/zero, a video without a header
    // we know) by its first bytes, are reported now; the other files still go on.
    let (readable, mut failed) = checks::readable_inputs(&args.files);
    let mut files = Vec::with_capacity(readable.len());
    let mut stdin_head = None;
    for file in readable {
        let checked = match (file.to_str(), open.raw) {
            (_, Some(_)) => Ok(()),
            (Some("-"), None) if stdin_head.is_none() => {
                read_stdin_head().map(|head| stdin_head = Some(head))
            }
            (Some("-"), None) => Ok(()),
            _ => sniff_file(&file).map(|_| ()),
        };
        match checked {
            Ok(()) => files.push(file),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if files.is_empty() {
        return Ok(1);
    }
    if let Some(dir) = &args.output_dir {
        checks::prepare_output_dir(dir)?;
    }
    let vad_model = args.vad.load()?;
    let mut transcriber = args.builder(options).build()?;
    checks::check_suppress_tokens(
        &transcriber.options().decode.suppress_tokens,
        transcriber.dims().n_vocab,
        "this model",
    )?;
    let mut stdout = StdoutStream::new(files.len());
    for file in &files {
        let input = match (file.to_str(), stdin_head.take()) {
            (Some("-"), Some(head)) => Input::Stdin(head),
            (_, head) => {
                stdin_head = head;
                Input::Path(file)
            }
        };
        let vad = vad_model.as_ref().map(|m| (m, &args.vad));
        let result =
            transcribe_one(&mut transcriber, input, &open, quiet, vad).and_then(|(t, removed)| {
                // With --vad, json gains the removed and kept durations.
                let with_vad = |format: OutputFormat, text: String| match (format, removed) {
                    (OutputFormat::Json, Some(removed)) => {
                        super::vad::json_with_vad(&text, removed, t.duration)
                    }
                    _ => text,
                };
                for &format in &formats {
                    match &args.output_dir {
                        Some(dir) => {
                            let rendered =
                                with_vad(format, output::render_with(&t, format, &subtitles));
                            let path = output::output_path(dir, output_name(file), format);
                            output::write_atomic(&path, rendered.as_bytes())?;
                            tracing::info!("{} -> {}", file.display(), path.display());
                        }
                        None => out!(
                            "{}",
                            with_vad(format, stdout.render(&t, format, file, &subtitles))
                        ),
                    }
                }
                Ok(())
            });
        if let Err(e) = result {
            eprintln!("error: {e}");
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// A terminal progress bar for audio longer than one window (none when stderr is not a
/// terminal, or with --quiet).
struct Bar {
    name: String,
    show: bool,
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for Bar {
    fn begin(&self, _label: &str, total: Option<u64>, _unit: ProgressUnit) {
        let total = total.unwrap_or(0);
        // Centiseconds: more than one 30-s window.
        if !self.show || total <= 3000 {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {percent}% {elapsed}<{eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message(self.name.clone());
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }
    fn set_total(&self, total: u64) {
        if let Some(b) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            b.set_length(total);
        }
    }
    fn set_position(&self, done: u64) {
        if let Some(b) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            b.set_position(done);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}

/// The name outputs of `file` are written under: `stdin.<format>` for `-`.
fn output_name(file: &Path) -> &Path {
    if file == Path::new("-") {
        Path::new("stdin")
    } else {
        file
    }
}

/// Where one input comes from.
pub(super) enum Input<'a> {
    Path(&'a Path),
    /// Standard input whose first bytes were read (and sniffed) before the model was loaded.
    Stdin(Vec<u8>),
}

impl Input<'_> {
    fn name(&self) -> &Path {
        match self {
            Input::Path(p) => p,
            Input::Stdin(_) => Path::new("-"),
        }
    }

    /// The decoder stream; a file is opened by path (seekable: MP4 with its index at the end).
    fn stream(self, open: &OpenOptions) -> Result<AudioStream> {
        match self {
            Input::Path(p) => AudioStream::open(p, open),
            Input::Stdin(head) => {
                let reader = std::io::Cursor::new(head).chain(std::io::stdin());
                AudioStream::from_reader(Box::new(reader), Path::new("-"), open)
            }
        }
    }
}

/// The whole clip as 16 kHz mono samples; a plain file keeps the library's whole-file reader
/// (WAV).
fn read_samples(input: Input<'_>, open: &OpenOptions) -> Result<Vec<f32>> {
    match input {
        Input::Path(p) => load_audio_with(p, open),
        stdin => stdin.stream(open).and_then(AudioStream::read_all),
    }
}

/// stdin's first bytes, sniffed: `cat /dev/zero | transcribe -` stops here, model unloaded.
fn read_stdin_head() -> Result<Vec<u8>> {
    let stdin = Path::new("-");
    let mut head = Vec::with_capacity(SNIFF_LEN);
    std::io::stdin()
        .lock()
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::audio(stdin, format!("cannot read stdin: {e}")))?;
    sniff(&head).map_err(|msg| Error::audio(stdin, msg))?;
    Ok(head)
}

/// One file ("-": stdin), with a progress bar on stderr; with `--vad`, also the seconds of
/// audio it removed.
///
/// The sequential loop (batch size 1) on the CPU reads the audio through [`SpooledMel`]: one
/// decoding pass spools the log-mel frames to a temporary file and the seek loop reads them
/// back window by window, so memory does not grow with the length; its mel is bit-identical to
/// the in-memory one (tests/audio_formats.rs), so the transcript is too. Two routes keep the
/// samples in memory: the batched loop (it cuts chunks at quiet points of the samples), and a
/// backend that computes the mel on the device (the GPU: its mel is within 2e-5 of the CPU
/// reference, not bit-identical, and its transcripts are the ones the GPU tests pin).
pub(super) fn transcribe_one(
    t: &mut Transcriber,
    input: Input<'_>,
    open: &OpenOptions,
    quiet: bool,
    vad: Option<(&dattavani_asr::vad::VadModel, &super::vad::VadArgs)>,
) -> Result<(Transcript, Option<f64>)> {
    use std::io::IsTerminal;
    let file = input.name().to_path_buf();
    let file = file.as_path();
    let bar = Bar {
        name: output_name(file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        show: !quiet && std::io::stderr().is_terminal(),
        bar: std::sync::Mutex::new(None),
    };
    let hooks = Hooks::default().progress(&bar);
    let result = if let Some((model, args)) = vad {
        // VAD reads the whole clip (speech probabilities, then the kept spans): in memory.
        read_samples(input, open)
            .and_then(|samples| super::vad::transcribe_samples(t, &samples, model, args, hooks))
            .map(|v| (v.transcript, Some(v.removed_duration)))
    } else if t.options().batch_size == 1 && !t.mel_on_device() {
        let n_mels = t.dims().n_mels;
        input
            .stream(open)
            .and_then(|stream| {
                let mut mel = SpooledMel::from_stream(stream, n_mels)?;
                let mut transcript = t.transcribe_mel(&mut mel, hooks)?;
                // The exact length in samples, as the in-memory route reports it.
                transcript.duration = mel.duration();
                Ok(transcript)
            })
            .map(|t| (t, None))
    } else {
        read_samples(input, open)
            .and_then(|samples| t.transcribe_samples_with(&samples, SAMPLE_RATE, hooks))
            .map(|t| (t, None))
    };
    bar.finish();
    // Errors from inside the pipeline name the file, as `Transcriber::transcribe_file` does.
    result.map_err(|e| match e {
        Error::Internal(msg) => Error::Internal(format!("{}: {msg}", file.display())),
        other => other,
    })
}
