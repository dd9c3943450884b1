//! The audio side of the command line: stdin (a container or raw PCM), `--audio-track`,
//! compressed formats, `info`, and non-audio rejected before the model loads.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/models.rs"]
mod models;

use std::process::Output;

use cli::{assert_error_line, root, run, run_with_stdin, stderr, stdout};

use dattavani_asr::audio_io::load_audio;

/// tiny.en, greedy, no timestamps, on the fixtures' first 4.42 s of jfk.wav.
const JFK_442: &str = "And so my fellow Americans ask not";
const JFK: &str = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country.";

fn fixture(name: &str) -> String {
    format!("tests/data/formats/{name}")
}

/// Greedy plain text of `input` ("-" reads stdin) with extra flags.
fn transcribe(input: &str, extra: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut args = vec![
        "transcribe",
        "--device",
        "cpu",
        "--beam-size",
        "1",
        "--without-timestamps",
        // f32, the reference: these transcripts were made with it (the default is auto).
        "--dtype",
        "f32",
        input,
    ];
    args.extend_from_slice(extra);
    run_with_stdin(&args, stdin)
}

fn assert_text(o: &Output, want: &str) {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(o));
    assert_eq!(stdout(o).trim(), want, "stderr: {}", stderr(o));
}

#[test]
fn compressed_files_transcribe() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    assert_text(&transcribe(&fixture("opus_32k.opus"), &[], None), JFK_442);
    // Lossy at 48 kb/s: one word off the WAV's ("asked" for "ask"), as the issue allows.
    assert_text(
        &transcribe(&fixture("mp3_48k.mp3"), &[], None),
        "And so my fellow Americans asked not",
    );
}

#[test]
fn stdin_takes_any_container() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    for name in ["opus_32k.webm", "flac_s16_16k.flac", "mp3_48k.mp3"] {
        let bytes = std::fs::read(root().join(fixture(name))).unwrap();
        let from_stdin = transcribe("-", &[], Some(&bytes));
        let from_file = transcribe(&fixture(name), &[], None);
        assert!(
            from_stdin.status.success(),
            "{name}: {}",
            stderr(&from_stdin)
        );
        assert_eq!(stdout(&from_stdin), stdout(&from_file), "{name}");
    }
    // The batched (in-memory) route reads stdin too.
    let bytes = std::fs::read(root().join(fixture("opus_32k.webm"))).unwrap();
    assert_text(
        &transcribe("-", &["--batch-size", "2"], Some(&bytes)),
        JFK_442,
    );
}

#[test]
fn stdin_takes_raw_pcm() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let samples = load_audio(&root().join("samples/jfk.wav")).unwrap();
    // jfk.wav is 16-bit: x * 32768 gives its codes back exactly.
    let s16: Vec<u8> = samples
        .iter()
        .flat_map(|&x| ((x * 32768.0) as i16).to_le_bytes())
        .collect();
    let raw = ["--input-format", "s16le", "--input-rate", "16000"];
    assert_text(&transcribe("-", &raw, Some(&s16)), JFK);
    // f32 stereo with both channels equal averages back to the same mono samples.
    let f32_stereo: Vec<u8> = samples
        .iter()
        .flat_map(|&x| [x, x])
        .flat_map(f32::to_le_bytes)
        .collect();
    let raw = [
        "--input-format",
        "f32le",
        "--input-rate",
        "16000",
        "--input-channels",
        "2",
    ];
    assert_text(&transcribe("-", &raw, Some(&f32_stereo)), JFK);
    // Raw PCM without its rate is a usage error.
    let o = transcribe("-", &["--input-format", "s16le"], Some(&s16));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--input-rate"), "{}", stderr(&o));
}

#[test]
fn audio_track_picks_among_audio_tracks() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let mkv = fixture("two_tracks.mkv");
    // Track 0 is a 440 Hz tone (no words), track 1 is jfk.
    let first = transcribe(&mkv, &[], None);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(!stdout(&first).contains("Americans"), "{}", stdout(&first));
    assert_text(&transcribe(&mkv, &["--audio-track", "1"], None), JFK_442);
    let o = transcribe(&mkv, &["--audio-track", "5"], None);
    assert_eq!(o.status.code(), Some(1));
    assert_error_line(&o, "audio track 5 does not exist");
}

/// Non-audio is refused from its first bytes, before the model is resolved: with a model name
/// that does not exist the error is still the audio one (exit 1, not the model's exit 3).
#[test]
fn non_audio_is_rejected_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros.bin");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not audio at all, just some text\n").unwrap();
    // Bytes of no known format (a pseudo-random header).
    let noise = dir.path().join("noise.bin");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    let [zeros, text, noise] = [&zeros, &text, &noise].map(|p| p.to_str().unwrap());
    let o = run(&["transcribe", "-m", "no-such-model-xyz", zeros, text, noise]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_error_line(
        &o,
        &format!("{zeros}: not audio: the file starts with zero bytes"),
    );
    assert_error_line(&o, &format!("{text}: not audio: the file is text"));
    assert_error_line(&o, &format!("{noise}: not a recognised audio format"));
    let o = run_with_stdin(
        &["transcribe", "-m", "no-such-model-xyz", "-"],
        Some(&vec![0u8; 1 << 20]),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_error_line(&o, "-: not audio");
}

#[test]
fn info_json_fields_on_a_flac_fixture() {
    let o = run(&["info", "--json", &fixture("flac_s16_16k.flac")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let all = v.as_array().expect("an array, one object per file");
    assert_eq!(all.len(), 1);
    let info = &all[0];
    assert_eq!(info["file"], fixture("flac_s16_16k.flac"));
    assert_eq!(info["container"], "FLAC");
    assert_eq!(info["codec"], "Free Lossless Audio Codec");
    assert_eq!(info["sample_rate"], 16000);
    assert_eq!(info["channels"], 2);
    assert_eq!(info["bits_per_sample"], 16);
    // 70 720 samples of jfk.wav.
    assert_eq!(info["duration_s"], 4.42);
    assert_eq!(info["clipped_share"], 0.0);
    assert!(info["warning"].is_null());
    // jfk.wav's peak is -2.13 dBFS; FLAC is lossless.
    let peak = info["peak_dbfs"].as_f64().unwrap();
    assert!((peak + 2.128).abs() < 0.01, "peak {peak}");
    let rms = info["rms_dbfs"].as_f64().unwrap();
    assert!((-16.0..-14.0).contains(&rms), "rms {rms}");
    // The speech share is there exactly when the Silero VAD weights are cached.
    let vad_cached =
        dattavani_asr::vad::fetch::find_in(&dattavani_asr::models::cache_dir()).is_some();
    match info.get("speech_share") {
        Some(share) => {
            assert!(vad_cached, "speech share without cached VAD weights");
            // 4.4 s of continuous speech.
            assert!(share.as_f64().unwrap() > 0.9, "speech share {share}");
        }
        None => assert!(!vad_cached, "VAD weights cached but no speech share"),
    }
}

#[test]
fn info_reports_a_bad_file_and_goes_on() {
    let o = run(&[
        "info",
        &fixture("video_only.mp4"),
        "tests/data/formats/no_such_file.wav",
        &fixture("opus_32k.opus"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_error_line(&o, "video_only.mp4: no audio track");
    assert_error_line(&o, "no_such_file.wav: audio file not found");
    let out = stdout(&o);
    assert!(out.starts_with(&fixture("opus_32k.opus")), "{out}");
    assert!(out.contains("codec: Opus"), "{out}");
    assert!(out.contains("sample rate: 48000 Hz"), "{out}");
    // stdin, with its name as "-".
    let bytes = std::fs::read(root().join(fixture("vorbis.ogg"))).unwrap();
    let o = run_with_stdin(&["info", "--json", "-"], Some(&bytes));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v[0]["file"], "-");
    assert_eq!(v[0]["codec"], "Vorbis");
}
