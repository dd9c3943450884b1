//! `dattavani-asr stream [FILE|-]`: live transcription of a file or of stdin as it arrives,
//! printed as JSON lines (`partial`, `committed`, `done`), or as plain text on a terminal.
//!
//! A reader thread decodes the input into 100-ms blocks (paced by the audio clock with
//! `--simulate-realtime`); the main thread feeds them to a [`LiveSession`] and runs the steps.
//! Live input (stdin, `--simulate-realtime`) feeds everything that has arrived before each step,
//! so a step that fell behind catches up at once; a file read at full speed is cut into steps
//! of exactly `--step-ms`, so its output does not depend on the machine's speed.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, TryRecvError};
use std::time::{Duration, Instant};

use dattavani_asr::audio_io::{sniff_file, AudioStream, SAMPLE_RATE};
use dattavani_asr::{
    DecodeOptions, Error, LiveSession, Result, StreamConfig, StreamEvent, TranscribeOptions,
};

use super::audio_input::AudioInputArgs;
use super::model_args::ModelArgs;
use super::stdout::{out, outln};

/// Samples per block handed from the reader to the steps (100 ms): the pacing granularity.
const BLOCK: usize = SAMPLE_RATE as usize / 10;
/// Blocks the reader may be ahead of the steps (30 s: the most one step can take).
const QUEUE_BLOCKS: usize = 300;

#[derive(clap::Args)]
pub struct StreamArgs {
    /// Audio file (any container `transcribe` reads), or `-` for standard input.
    #[arg(default_value = "-")]
    file: PathBuf,
    #[command(flatten)]
    input: AudioInputArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Minimum new audio between two transcription steps, milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    step_ms: u32,
    /// Also print the unconfirmed tail after each step (`{"type":"partial",...}`).
    #[arg(long)]
    partials: bool,
    /// Word timings in committed events (`words`).
    #[arg(long)]
    words: bool,
    /// Cut the buffer at a committed segment end once it is longer than this, seconds.
    #[arg(long, default_value_t = 15.0, value_name = "S")]
    trim_after: f32,
    /// Read the input no faster than real time (by its own audio clock), as a live source
    /// would arrive; each line then carries `emitted_at`, seconds since the stream started.
    #[arg(long)]
    simulate_realtime: bool,
    /// Beams of each step's decode; 1 (greedy) keeps the steps short.
    #[arg(long, default_value_t = 1)]
    beam_size: usize,
}

/// What the reader thread sends.
enum Feed {
    Block(Vec<f32>),
    /// The input failed after some audio (damaged container, read error).
    Failed(Error),
}

pub fn stream_command(args: StreamArgs) -> Result<i32> {
    let config = StreamConfig {
        step_ms: args.step_ms,
        partials: args.partials,
        trim_after_s: args.trim_after,
        words: args.words,
        ..StreamConfig::default()
    };
    config.validate()?;
    let options = TranscribeOptions {
        decode: DecodeOptions {
            language: args.model.language()?,
            beam_size: Some(args.beam_size),
            ..TranscribeOptions::default().decode
        },
        weights_dtype: args.model.dtype(),
        ..TranscribeOptions::default()
    };
    super::checks::check_options(&options, &args.model.model)?;
    let open = args.input.open_options()?;
    let stdin = args.file.as_os_str() == "-";
    if !stdin && open.raw.is_none() {
        // Missing, unreadable and non-audio files fail before the model loads.
        let (readable, _) = super::checks::readable_inputs(std::slice::from_ref(&args.file));
        if readable.is_empty() {
            return Ok(1);
        }
        sniff_file(&args.file)?;
    }
    let mut transcriber = args.model.builder()?.options(options).build()?;
    // Opened after the model: stdin's first bytes may only come once a live source starts.
    let audio = AudioStream::open(&args.file, &open)?;
    let live = stdin || args.simulate_realtime;
    let printer = Printer::new(args.simulate_realtime);
    let (tx, rx) = sync_channel(QUEUE_BLOCKS);
    let pace = args.simulate_realtime;
    let started = printer.started;
    let reader = std::thread::spawn(move || read_blocks(audio, pace, started, tx));

    let mut session = LiveSession::new(&mut transcriber, config);
    let mut compute = Duration::ZERO;
    let mut held: Option<Vec<f32>> = None;
    let mut failure = None;
    let mut ended = false;
    while !ended {
        // Feed until a step is due (live: and everything else that has arrived, as far as
        // the buffer holds it; the rest waits for the next step).
        loop {
            let block = match held.take() {
                Some(b) => Ok(b),
                None if session.policy().step_due() && !live => break,
                None if session.policy().step_due() => match rx.try_recv() {
                    Ok(feed) => from_feed(feed),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => Err(None),
                },
                None => rx.recv().map_or(Err(None), from_feed),
            };
            match block {
                Ok(b) => {
                    let room =
                        session.policy().config().max_buffer_s as f64 - session.policy().buffer_s();
                    if (b.len() as f64 / SAMPLE_RATE as f64) > room {
                        held = Some(b);
                        break;
                    }
                    session.feed(&b);
                }
                Err(e) => {
                    failure = e;
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            break;
        }
        if session.policy().step_due() {
            let t = Instant::now();
            let events = session.step_if_due()?;
            compute += t.elapsed();
            printer.print(&events);
        }
    }
    let audio_s = session.policy().received_s();
    let t = Instant::now();
    let events = session.end()?;
    let steps = session.policy().steps();
    compute += t.elapsed();
    printer.print(&events);
    drop(rx);
    let _ = reader.join();
    tracing::info!(
        "stream: {audio_s:.1} s of audio in {steps} steps; compute {:.1} s ({:.2} of the audio time)",
        compute.as_secs_f64(),
        compute.as_secs_f64() / audio_s.max(1e-9)
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// A block, or the end of the input (`Err(None)`) or its failure.
fn from_feed(feed: Feed) -> std::result::Result<Vec<f32>, Option<Error>> {
    match feed {
        Feed::Block(b) => Ok(b),
        Feed::Failed(e) => Err(Some(e)),
    }
}

/// Decode `audio` into blocks of [`BLOCK`] samples; with `pace`, send each no earlier than its
/// end on the audio clock since `started`. Ends when the input does or the receiver is gone.
fn read_blocks(
    mut audio: AudioStream,
    pace: bool,
    started: Instant,
    tx: std::sync::mpsc::SyncSender<Feed>,
) {
    let mut pending: Vec<f32> = Vec::with_capacity(2 * BLOCK);
    let mut sent: u64 = 0;
    let send = |block: Vec<f32>, sent: &mut u64| -> bool {
        *sent += block.len() as u64;
        if pace {
            let due = started + Duration::from_secs_f64(*sent as f64 / SAMPLE_RATE as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        tx.send(Feed::Block(block)).is_ok()
    };
    loop {
        match audio.next_chunk() {
            Ok(Some(chunk)) => {
                pending.extend_from_slice(&chunk);
                let full = pending.len() / BLOCK * BLOCK;
                let rest = pending.split_off(full);
                for block in pending.chunks(BLOCK) {
                    if !send(block.to_vec(), &mut sent) {
                        return;
                    }
                }
                pending = rest;
            }
            Ok(None) => {
                if !pending.is_empty() {
                    send(std::mem::take(&mut pending), &mut sent);
                }
                return;
            }
            Err(e) => {
                if !pending.is_empty() && !send(std::mem::take(&mut pending), &mut sent) {
                    return;
                }
                let _ = tx.send(Feed::Failed(e));
                return;
            }
        }
    }
}

/// Events to stdout: JSON lines (with `emitted_at` when paced), or plain text on a terminal.
struct Printer {
    started: Instant,
    emitted_at: bool,
    terminal: bool,
}

impl Printer {
    fn new(emitted_at: bool) -> Self {
        Printer {
            started: Instant::now(),
            emitted_at,
            terminal: std::io::stdout().is_terminal(),
        }
    }

    fn print(&self, events: &[StreamEvent]) {
        for event in events {
            if self.terminal {
                self.print_text(event);
                continue;
            }
            // The event's own member order ("type" first), `emitted_at` appended.
            let json = serde_json::to_string(event).unwrap_or_default();
            match json.strip_suffix('}') {
                Some(open) if self.emitted_at => {
                    let secs = (self.started.elapsed().as_secs_f64() * 1e3).round() / 1e3;
                    outln!("{open},\"emitted_at\":{secs}}}");
                }
                _ => outln!("{json}"),
            }
        }
    }

    /// Committed text one line per commit; a partial is shown dimmed on the line being
    /// written and replaced by whatever comes next.
    fn print_text(&self, event: &StreamEvent) {
        const CLEAR: &str = "\r\x1b[2K";
        match event {
            StreamEvent::Committed { text, .. } => outln!("{CLEAR}{}", text.trim()),
            StreamEvent::Partial { text, .. } => out!("{CLEAR}\x1b[2m{}\x1b[0m", text.trim()),
            StreamEvent::Done { .. } => out!("{CLEAR}"),
        }
    }
}
