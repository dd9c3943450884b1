//! Writers: a transcript rendered as txt, srt, vtt, tsv or json (openai-whisper's formats),
//! written atomically (temp file in the target
//! directory, then rename), so a crash never leaves a half-written file where the user's was.

mod subtitles;

use std::path::{Path, PathBuf};

pub use subtitles::SubtitleOptions;

use crate::error::Result;
use crate::transcribe::Transcript;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Txt,
    Srt,
    Vtt,
    Tsv,
    Json,
}

/// One output format, or `all` of them: `--output-format` and a manifest item's
/// `output_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FormatChoice {
    Txt,
    Srt,
    Vtt,
    Tsv,
    Json,
    All,
}

impl FormatChoice {
    /// The formats to write, in the order `all` writes them.
    pub fn formats(self) -> Vec<OutputFormat> {
        match self {
            FormatChoice::Txt => vec![OutputFormat::Txt],
            FormatChoice::Srt => vec![OutputFormat::Srt],
            FormatChoice::Vtt => vec![OutputFormat::Vtt],
            FormatChoice::Tsv => vec![OutputFormat::Tsv],
            FormatChoice::Json => vec![OutputFormat::Json],
            FormatChoice::All => OutputFormat::ALL.to_vec(),
        }
    }
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 5] = [
        OutputFormat::Txt,
        OutputFormat::Vtt,
        OutputFormat::Srt,
        OutputFormat::Tsv,
        OutputFormat::Json,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Txt => "txt",
            OutputFormat::Srt => "srt",
            OutputFormat::Vtt => "vtt",
            OutputFormat::Tsv => "tsv",
            OutputFormat::Json => "json",
        }
    }
}

/// `HH:MM:SS,mmm` (SRT: hours always, comma) or `[HH:]MM:SS.mmm` (VTT: hours when non-zero,
/// dot), as openai-whisper's `format_timestamp`.
pub fn format_timestamp(seconds: f64, always_include_hours: bool, decimal_marker: char) -> String {
    let mut ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let hours = ms / 3_600_000;
    ms -= hours * 3_600_000;
    let minutes = ms / 60_000;
    ms -= minutes * 60_000;
    let secs = ms / 1000;
    ms -= secs * 1000;
    let hours_marker = if always_include_hours || hours > 0 {
        format!("{hours:02}:")
    } else {
        String::new()
    };
    format!("{hours_marker}{minutes:02}:{secs:02}{decimal_marker}{ms:03}")
}

/// SubRip: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`.
pub fn render_srt(t: &Transcript) -> String {
    render_srt_numbered_from(t, 1, &SubtitleOptions::default()).0
}

/// [`render_srt`] with subtitle options and the cues numbered from `first` (several
/// transcripts in one SubRip document keep one increasing sequence, as players require).
/// Returns the text and the number of cues.
pub fn render_srt_numbered_from(
    t: &Transcript,
    first: usize,
    opts: &SubtitleOptions,
) -> (String, usize) {
    let mut out = String::new();
    let cues = subtitles::cues(t, opts, &|s| format_timestamp(s, true, ','));
    for (i, (start, end, text)) in cues.iter().enumerate() {
        out.push_str(&format!("{}\n{start} --> {end}\n{text}\n\n", i + first));
    }
    (out, cues.len())
}

/// WebVTT: `WEBVTT` header, then `MM:SS.mmm --> MM:SS.mmm` cues.
pub fn render_vtt(t: &Transcript) -> String {
    render_vtt_with(t, &SubtitleOptions::default())
}

/// [`render_vtt`] with subtitle options.
pub fn render_vtt_with(t: &Transcript, opts: &SubtitleOptions) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (start, end, text) in subtitles::cues(t, opts, &|s| format_timestamp(s, false, '.')) {
        out.push_str(&format!("{start} --> {end}\n{text}\n\n"));
    }
    out
}

/// Tab-separated `start`, `end` (integer milliseconds), `text`.
pub fn render_tsv(t: &Transcript) -> String {
    let mut out = String::from("start\tend\ttext\n");
    for s in &t.segments {
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            (s.start * 1000.0).round() as u64,
            (s.end * 1000.0).round() as u64,
            s.text.trim().replace('\t', " ")
        ));
    }
    out
}

/// Plain text as openai-whisper's txt writer: one stripped segment per line.
pub fn render_txt(t: &Transcript) -> String {
    let mut out = String::new();
    for s in &t.segments {
        let line = s.text.trim();
        if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// openai-whisper's result dictionary as JSON.
pub fn render_json(t: &Transcript) -> String {
    serde_json::to_string(t).expect("a transcript always serialises")
}

pub fn render(t: &Transcript, format: OutputFormat) -> String {
    render_with(t, format, &SubtitleOptions::default())
}

/// [`render`] with subtitle options (srt and vtt only; the other formats ignore them).
pub fn render_with(t: &Transcript, format: OutputFormat, opts: &SubtitleOptions) -> String {
    match format {
        OutputFormat::Srt => render_srt_numbered_from(t, 1, opts).0,
        OutputFormat::Vtt => render_vtt_with(t, opts),
        OutputFormat::Txt => render_txt(t),
        OutputFormat::Tsv => render_tsv(t),
        OutputFormat::Json => render_json(t),
    }
}

/// `dir/<stem of input>.<ext>`.
pub fn output_path(dir: &Path, input: &Path, format: OutputFormat) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_else(|| "output".into());
    let mut name = stem;
    name.push(".");
    name.push(format.extension());
    dir.join(name)
}

/// Write `contents` to `path` atomically, with the permissions of a plain new file (see
/// [`crate::atomic_file::write`]).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    crate::atomic_file::write(path, contents)
}
