//! Everything the CLI prints on stdout goes through here, because `println!` panics when stdout
//! fails. A closed pipe (`transcribe a.wav | head -1`, `devices | true`) ends the process quietly
//! with exit code 141, as the shell reports `cat` killed by SIGPIPE: nobody is reading, so the
//! remaining work is pointless and nothing is worth saying. Any other write error (`> /dev/full`)
//! is one `error: stdout: ...` line on stderr and exit code 1.

use std::io::Write;

/// 128 + SIGPIPE: what a shell shows for a `cat` whose reader went away.
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Write `text` to stdout and flush it (stdout may be a pipe read line by line as files finish).
pub fn write_str(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = result {
        drop(out);
        fail(e);
    }
}

/// Ends the process for a stdout failure; see the module comment for why exiting is right here.
fn fail(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE_EXIT);
    }
    eprintln!("error: stdout: {e}");
    std::process::exit(1);
}

/// `print!` without the panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::stdout::write_str(&format!($($arg)*))
    };
}

/// `println!` without the panic.
macro_rules! outln {
    () => {
        $crate::cli::stdout::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::stdout::write_str(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// Several transcripts printed on stdout as one stream (README "Several files on stdout"). One
/// file prints exactly as it would alone. With more:
/// - txt, tsv: each file's text after a `==> FILE <==` line, as `head` and `tail` separate files;
/// - srt: one SubRip document, cues numbered on across files (each file's times start at 0);
/// - vtt: one `WEBVTT` header, each file's cues after a `NOTE FILE` block (a WebVTT comment);
/// - json: JSON lines, one object per file, with a `file` member added.
pub struct StdoutStream {
    files: usize,
    printed: usize,
    next_cue: usize,
}

impl StdoutStream {
    pub fn new(files: usize) -> Self {
        StdoutStream {
            files,
            printed: 0,
            next_cue: 1,
        }
    }

    /// The text to print for `file`'s transcript in `format`.
    pub fn render(
        &mut self,
        t: &dattavani_asr::Transcript,
        format: dattavani_asr::OutputFormat,
        file: &std::path::Path,
        subtitles: &dattavani_asr::writers::SubtitleOptions,
    ) -> String {
        use dattavani_asr::writers as w;
        use dattavani_asr::OutputFormat as F;
        let first = self.printed == 0;
        self.printed += 1;
        let name = file.display().to_string();
        if self.files <= 1 {
            let mut text = w::render_with(t, format, subtitles);
            if format == F::Json {
                text.push('\n');
            }
            return text;
        }
        match format {
            F::Txt | F::Tsv => format!(
                "{}==> {name} <==\n{}",
                if first { "" } else { "\n" },
                w::render_with(t, format, subtitles)
            ),
            F::Srt => {
                let (text, cues) = w::render_srt_numbered_from(t, self.next_cue, subtitles);
                self.next_cue += cues;
                text
            }
            F::Vtt => {
                let cues = w::render_with(t, F::Vtt, subtitles);
                let cues = cues.strip_prefix("WEBVTT\n\n").unwrap_or(&cues);
                format!(
                    "{}NOTE {}\n\n{cues}",
                    if first { "WEBVTT\n\n" } else { "" },
                    name.replace("-->", "->")
                )
            }
            F::Json => {
                let mut v = serde_json::to_value(t).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("file".into(), name.into());
                }
                format!("{v}\n")
            }
        }
    }
}
