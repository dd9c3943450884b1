//! Spellings other Whisper tools taught their users, rewritten to ours before clap parses the
//! command line, so that no flag of ours changes meaning:
//! - openai-whisper's underscores: `--output_format srt`, `--output_dir`, `--word_timestamps`,
//!   `--max_line_width`, ... are `--output-format`, `--output-dir`, ... (every long flag).
//! - whisper.cpp's output switches `-otxt`, `-ovtt`, `-osrt`, `-ojson` / `-oj` are
//!   `--output-format FMT` (clap would read `-osrt` as `-o srt`: a directory named `srt`).
//!   whisper.cpp writes `<input>.srt` beside the input; here the usual rule holds: stdout,
//!   or `<stem>.srt` under `--output-dir`.
//!
//! whisper.cpp's `-f FILE` is not taken: `-f` is already `--output-format`. Its `-m MODEL` is
//! ours too. Arguments after `--` are left alone.

use std::ffi::OsString;

/// The command line with the foreign spellings replaced (see the module comment).
pub fn rewrite_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for arg in args {
        let Some(s) = arg.to_str().filter(|_| !rest_verbatim) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let format = match s {
            "-otxt" => Some("txt"),
            "-ovtt" => Some("vtt"),
            "-osrt" => Some("srt"),
            "-ojson" | "-oj" => Some("json"),
            _ => None,
        };
        if let Some(f) = format {
            out.push("--output-format".into());
            out.push(f.into());
        } else if let Some(long) = s.strip_prefix("--") {
            // Only the flag name, never a `=value` part.
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let mut fixed = format!("--{}", name.replace('_', "-"));
            if let Some(v) = value {
                fixed.push('=');
                fixed.push_str(v);
            }
            out.push(fixed.into());
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(args: &[&str]) -> Vec<String> {
        rewrite_args(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn underscores_and_whisper_cpp_switches() {
        assert_eq!(
            rw(&[
                "x",
                "--output_format=srt",
                "--max_line_width",
                "a_b",
                "-osrt"
            ]),
            [
                "x",
                "--output-format=srt",
                "--max-line-width",
                "a_b",
                "--output-format",
                "srt"
            ]
        );
        assert_eq!(
            rw(&["x", "--", "--a_b", "-osrt"]),
            ["x", "--", "--a_b", "-osrt"]
        );
    }
}
