//! `transcribe --vad` and `models ... silero-vad` as a user runs them (tiny.en, CPU): times in
//! the original timeline after a cut silence, the json `vad` member, the batched path, and
//! clean errors for bad options.
//!
//! Needs the Silero VAD weights in the cache (`dattavani-asr models pull silero-vad`; tools/test.sh
//! fetches them): without them (outside CI) the tests that transcribe print so and pass.

#[path = "common/clips.rs"]
mod clips;

#[path = "common/cli.rs"]
mod cli;
#[path = "common/models.rs"]
mod models;
#[path = "common/wav.rs"]
mod wav;

use std::path::Path;
use std::process::Command;

use cli::{root, run};

use dattavani_asr::testing::model::hub;
use dattavani_asr::vad::fetch;

const SR: usize = 16_000;

/// tiny.en and the VAD weights are cached (in CI they must be).
fn ready() -> bool {
    let vad = fetch::find_in(&hub::cache_dir()).is_some();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(vad, "CI: run `dattavani-asr models pull silero-vad` first");
    }
    if !vad {
        eprintln!("skipped: no Silero VAD weights (dattavani-asr models pull silero-vad)");
    }
    vad && models::cached_dir("tiny.en").is_some()
}

fn load(clip: &str) -> Vec<f32> {
    dattavani_asr::testing::audio::load_audio(&root().join(clip)).unwrap()
}

/// A 16-bit mono 16 kHz WAV file.
fn write_wav(path: &Path, samples: &[f32]) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|&x| ((x.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    std::fs::write(path, wav::wav(1, 1, SR as u32, 16, &data)).unwrap();
}

/// Speech, 40 s of silence, speech (a second of silence first): the json of `transcribe --vad`
/// with `extra` flags has both utterances, each segment group's first start and last end within
/// 0.3 s (0.4 s with word timestamps) of where the speech is (times in the original timeline),
/// and `vad.removed_duration`.
fn speech_silence_speech(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    // Asterisk prompts: digital silence around the speech, so the energy says where it is.
    let first = load("tests/data/speech/ast_tt-allbusy.wav");
    let second = load("tests/data/speech/ast_dir-intro.wav");
    let (lead, gap) = (SR, 40 * SR);
    let offset = (lead + first.len() + gap) as f64 / SR as f64;
    let mut audio = vec![0.0f32; lead];
    audio.extend_from_slice(&first);
    audio.extend(std::iter::repeat_n(0.0f32, gap));
    audio.extend_from_slice(&second);
    let wav = dir.path().join("two utterances.wav");
    write_wav(&wav, &audio);
    let (a, b) = (clips::energy_span(&first), clips::energy_span(&second));
    let truth = [(a.0 + 1.0, a.1 + 1.0), (b.0 + offset, b.1 + offset)];

    let mut args = vec![
        "transcribe",
        wav.to_str().unwrap(),
        "-m",
        "tiny.en",
        "--device",
        "cpu",
        "--beam-size",
        "1",
        "--vad",
        "-f",
        "json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one json object");
    let removed = json["vad"]["removed_duration"].as_f64().unwrap();
    let speech = json["vad"]["speech_duration"].as_f64().unwrap();
    let duration = json["duration"].as_f64().unwrap();
    assert!((duration - audio.len() as f64 / SR as f64).abs() < 1e-6);
    assert!(
        (removed + speech - duration).abs() < 0.01,
        "{}",
        json["vad"]
    );
    assert!(removed > 35.0, "{extra:?}: removed {removed} s");
    let segments: Vec<(f64, f64, String)> = json["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let t = |k: &str| s[k].as_f64().unwrap();
            (
                t("start"),
                t("end"),
                s["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (before, after): (Vec<_>, Vec<_>) = segments.iter().partition(|s| s.1 <= offset);
    assert!(!before.is_empty() && !after.is_empty(), "{segments:?}");
    let text = |segs: &[&(f64, f64, String)]| segs.iter().map(|s| s.2.as_str()).collect::<String>();
    assert!(
        text(&before).contains("currently assisting other telemarketers"),
        "{before:?}"
    );
    assert!(
        text(&after).contains("Welcome to the directory"),
        "{after:?}"
    );
    // With word timestamps segments take their times from the words, which come from
    // Whisper's own alignment (cross-attention DTW): here its first word after the cut,
    // "Welcome", starts 0.31 s after the energy onset of its soft "w".
    let tolerance = if extra.contains(&"--word-timestamps") {
        0.4
    } else {
        0.3
    };
    for (segs, truth) in [(&before, truth[0]), (&after, truth[1])] {
        let span = (segs[0].0, segs[segs.len() - 1].1);
        eprintln!("{extra:?}: segments span {span:?}, speech {truth:?}");
        assert!(
            (span.0 - truth.0).abs() <= tolerance && (span.1 - truth.1).abs() <= tolerance,
            "{extra:?}: segment span {span:?} vs speech {truth:?}: {segs:?}"
        );
    }
}

#[test]
fn vad_keeps_the_original_timeline() {
    if !ready() {
        return;
    }
    speech_silence_speech(&[]);
    speech_silence_speech(&["--word-timestamps"]);
}

#[test]
fn batched_vad_keeps_the_original_timeline() {
    if !ready() {
        return;
    }
    speech_silence_speech(&["--batch-size", "4"]);
    speech_silence_speech(&["--batch-size", "4", "--word-timestamps"]);
    speech_silence_speech(&["--batch-size", "2", "--without-timestamps"]);
}

/// Bad VAD options are one-line usage errors (exit 2) before any model loads.
#[test]
fn bad_vad_options_are_usage_errors() {
    for args in [
        &["--vad", "--vad-threshold", "1.5"][..],
        &["--vad", "--vad-neg-threshold=-0.1"],
        &["--vad", "--vad-max-speech-duration-s", "0"],
        &["--vad-threshold", "0.3"],
    ] {
        let mut all = vec!["transcribe", "samples/jfk.wav", "-m", "no-such-model"];
        all.extend_from_slice(args);
        let o = run(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.lines()
                .any(|l| l.starts_with("error:") && l.contains("--vad")),
            "{args:?}: {err}"
        );
    }
}

/// `models list` names the VAD weights; `models verify silero-vad` re-hashes them; `models rm`
/// and `pull` on an empty cache directory do what they say (pull only when pip can reach PyPI:
/// run in CI).
#[test]
fn models_commands_know_silero_vad() {
    if !ready() {
        return;
    }
    let o = run(&["models", "list"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l.starts_with("silero-vad ")), "{out}");
    let o = run(&["models", "verify", "silero-vad"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("silero-vad: ok"));

    // A copy of the snapshot in a cache of its own: verify catches a changed file, rm removes it.
    let cache = tempfile::tempdir().unwrap();
    let src = fetch::find_in(&hub::cache_dir()).unwrap();
    let dst = cache
        .path()
        .join("models--snakers4--silero-vad/snapshots")
        .join(fetch::VERSION);
    std::fs::create_dir_all(&dst).unwrap();
    for (name, _, _) in fetch::FILES {
        std::fs::copy(src.join(name), dst.join(name)).unwrap();
    }
    let in_cache = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dattavani-asr"))
            .args(args)
            .current_dir(root())
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    assert!(in_cache(&["models", "verify", "silero-vad"])
        .status
        .success());
    std::fs::write(dst.join("LICENSE"), "changed").unwrap();
    let o = in_cache(&["models", "verify", "silero-vad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("SHA-256"), "{err}");
    let o = in_cache(&["models", "rm", "silero-vad"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(fetch::find_in(cache.path()).is_none());
    // Offline with no weights: `--vad` says what to run.
    let o = in_cache(&["transcribe", "samples/jfk.wav", "--vad"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("models pull silero-vad"),
        "{err}"
    );
}
