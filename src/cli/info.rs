//! `dattavani-asr info FILE... [--json]`: container, codec, length and levels of each input (the
//! library's `audio_info`, one streaming pass), plus the share of speech when the Silero VAD
//! weights are already in the cache (never fetched for `info`: it is a quick look, and it must
//! work offline).

use std::path::{Path, PathBuf};

use dattavani_asr::audio_io::{audio_info, AudioInfo, AudioStream, OpenOptions};
use dattavani_asr::vad::{self, speech_timestamps, VadModel, VadOptions, VadState, WINDOW_SAMPLES};
use dattavani_asr::{Error, Result};

use super::audio_input::AudioInputArgs;
use super::stdout::outln;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Audio or video files, or `-` for standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print a JSON array with one object per readable file instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    input: AudioInputArgs,
}

/// One file's report: the library's analysis and, with a VAD model, the speech share.
#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    info: AudioInfo,
    /// Share of the duration that Silero VAD (faster-whisper's default options) marks as
    /// speech, 0..1; absent when the VAD weights are not cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    speech_share: Option<f64>,
}

/// Returns the exit code: 0, or 1 when some file could not be read (the others are reported).
pub fn info_command(args: InfoArgs) -> Result<i32> {
    let open = args.input.open_options()?;
    let vad = load_cached_vad();
    let mut reports = Vec::new();
    let mut failed = 0;
    for file in &args.files {
        match report(file, &open, vad.as_ref()) {
            Ok(r) => {
                if !args.json {
                    let mut text = r.info.to_text();
                    if let Some(share) = r.speech_share {
                        text.push_str(&format!("\n  speech share: {:.1} %", share * 100.0));
                    }
                    outln!("{text}");
                }
                reports.push(r);
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if args.json {
        let json = serde_json::to_string_pretty(&reports)
            .map_err(|e| Error::Internal(format!("info as JSON: {e}")))?;
        outln!("{json}");
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// The Silero VAD model if its weights are in the cache; None (and a log line) otherwise.
fn load_cached_vad() -> Option<VadModel> {
    let dir = vad::fetch::find_in(&dattavani_asr::models::cache_dir())?;
    match VadModel::load_from_snapshot(&dir) {
        Ok(model) => Some(model),
        Err(e) => {
            tracing::warn!("speech share left out: {e}");
            None
        }
    }
}

fn report(file: &Path, open: &OpenOptions, vad: Option<&VadModel>) -> Result<Report> {
    let Some(vad) = vad else {
        return Ok(Report {
            info: audio_info(file, open)?,
            speech_share: None,
        });
    };
    // The speech share is a second decoding pass; stdin cannot be read twice, so it is first
    // copied to a temporary file (disk, not memory).
    let spooled;
    let source = if file == Path::new("-") {
        spooled = spool_stdin()?;
        spooled.path()
    } else {
        file
    };
    let mut info = audio_info(source, open).map_err(|e| rename(e, source, file))?;
    info.file = file.display().to_string();
    let speech_share = Some(speech_share(source, file, open, vad)?);
    Ok(Report { info, speech_share })
}

fn spool_stdin() -> Result<tempfile::NamedTempFile> {
    let fail = |e: std::io::Error| Error::audio(Path::new("-"), format!("cannot read stdin: {e}"));
    let mut tmp = tempfile::NamedTempFile::new().map_err(fail)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tmp).map_err(fail)?;
    Ok(tmp)
}

/// Share of the samples inside Silero's speech segments, streamed: speech probabilities are
/// computed window by window as the decoder yields audio (as `VadModel::speech_probabilities`
/// computes them on the whole clip: 512-sample windows, the last one zero-padded).
fn speech_share(source: &Path, file: &Path, open: &OpenOptions, vad: &VadModel) -> Result<f64> {
    let mut stream = AudioStream::open(source, open).map_err(|e| rename(e, source, file))?;
    let mut state = VadState::default();
    let mut pending: Vec<f32> = Vec::new();
    let mut probs = Vec::new();
    let mut n_samples = 0usize;
    while let Some(chunk) = stream.next_chunk().map_err(|e| rename(e, source, file))? {
        n_samples += chunk.len();
        pending.extend_from_slice(&chunk);
        let whole = pending.len() / WINDOW_SAMPLES * WINDOW_SAMPLES;
        if whole > 0 {
            probs.extend(vad.stream_probabilities(&mut state, &pending[..whole]));
            pending.drain(..whole);
        }
    }
    if !pending.is_empty() {
        let mut last = [0.0f32; WINDOW_SAMPLES];
        last[..pending.len()].copy_from_slice(&pending);
        probs.extend(vad.stream_probabilities(&mut state, &last));
    }
    if n_samples == 0 {
        return Ok(0.0);
    }
    let speech: usize = speech_timestamps(&probs, n_samples, &VadOptions::default())
        .iter()
        .map(|c| c.end - c.start)
        .sum();
    Ok(speech as f64 / n_samples as f64)
}

/// An error about the stdin spool file, told about "-" instead.
fn rename(e: Error, source: &Path, file: &Path) -> Error {
    if source == file {
        return e;
    }
    match e {
        Error::Audio { msg, .. } => Error::audio(file, msg),
        other => other,
    }
}
