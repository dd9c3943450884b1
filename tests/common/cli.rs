//! The binary run as a user runs it: `--quiet`, in the crate root; its output as text; the
//! one-line error rule every failure follows.
//!
//! Use with `#[path = "common/cli.rs"] mod cli;`.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The crate root (the binary's working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with `--quiet`, in the crate root.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dattavani-asr"));
    c.arg("--quiet").current_dir(root());
    c
}

/// Run the binary with `args`; stdin is empty.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

/// Run the binary with the words of `line` as its arguments (none has a space).
pub fn run_line(line: &str) -> Output {
    run(&line.split_whitespace().collect::<Vec<_>>())
}

/// Run the binary with `stdin` piped in (empty when None).
pub fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut pipe = child.stdin.take().expect("stdin piped");
    let bytes = stdin.unwrap_or_default().to_vec();
    // The binary may stop reading early (rejected input): a broken pipe is expected then.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&bytes);
    });
    let out = child.wait_with_output().expect("binary finishes");
    writer.join().expect("writer thread");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit `code`, no panic, and an `error: <file>: <problem>` line containing `needle`.
pub fn assert_clean_error(o: &Output, code: i32, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code; stderr: {}",
        stderr(o)
    );
    assert_error_line(o, needle);
}

/// No panic, and an `error:` line containing `needle` (whatever the exit code).
pub fn assert_error_line(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error:") && l.contains(needle)),
        "no error line names {needle:?}: {err}"
    );
}
