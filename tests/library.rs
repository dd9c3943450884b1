//! The library as an outside crate uses it: only the root re-exports. A transcriber built from a
//! local model directory transcribes jfk in a thread it was moved to; segments arrive through
//! the callback as the transcript has them; a cancelled handle stops the work; samples at another
//! rate are resampled; caller-given chunks go through the batched loop.

#[path = "common/models.rs"]
mod models;

use std::sync::{Arc, Mutex};

use dattavani_asr::{
    CancelHandle, Device, Error, Hooks, MelSource, SampleRange, TranscribeOptions, Transcriber,
};

/// tiny.en's greedy transcript of jfk.
const JFK: &str = "And so my fellow Americans ask not what your country can do for you ask what \
                   you can do for your country";

fn jfk_samples() -> Vec<f32> {
    dattavani_asr::audio_io::load_audio(std::path::Path::new("samples/jfk.wav")).unwrap()
}

fn greedy() -> TranscribeOptions {
    let mut o = TranscribeOptions::default();
    o.decode.beam_size = Some(1);
    // f32, the reference: these transcripts were made with it (the default is auto).
    o.weights_dtype = Some(dattavani_asr::Dtype::F32);
    o
}

/// tiny.en on the CPU with `greedy()` options; `None` (skip) when it is not cached.
fn greedy_tiny_en() -> Option<Transcriber> {
    models::cached_dir("tiny.en")?;
    let t = Transcriber::builder()
        .model("tiny.en")
        .device(Device::Cpu)
        .options(greedy())
        .build()
        .unwrap();
    Some(t)
}

#[test]
fn transcribes_in_a_spawned_thread_from_a_model_directory() {
    let Some(dir) = models::cached_dir("tiny.en") else {
        return;
    };
    let transcriber = Transcriber::builder()
        .model(dir.to_str().unwrap())
        .device(Device::Cpu)
        .threads(2)
        .options(greedy())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_thread = Arc::clone(&seen);
    let transcript = std::thread::spawn(move || {
        let mut transcriber = transcriber;
        let hooks = Hooks::default().on_segment(move |s| {
            seen_in_thread.lock().unwrap().push((s.id, s.text.clone()));
        });
        transcriber
            .transcribe_file_with("samples/jfk.wav", hooks)
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(transcript.text.trim(), JFK);
    let seen = seen.lock().unwrap();
    let expected: Vec<(usize, String)> = transcript
        .segments
        .iter()
        .map(|s| (s.id, s.text.clone()))
        .collect();
    assert_eq!(*seen, expected);

    // The command line with the same options prints the same transcript.
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_dattavani-asr"))
        .args([
            "transcribe",
            "samples/jfk.wav",
            "--device",
            "cpu",
            "--beam-size",
            "1",
            "--dtype",
            "f32",
        ])
        .args(["-f", "json", "-q", "--model", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let rendered = dattavani_asr::writers::render(&transcript, dattavani_asr::OutputFormat::Json);
    assert_eq!(
        String::from_utf8(cli.stdout).unwrap(),
        format!("{rendered}\n")
    );
}

#[test]
fn cancels_resamples_and_takes_chunks() {
    let Some(mut t) = greedy_tiny_en() else {
        return;
    };
    let samples = jfk_samples();

    let cancel = CancelHandle::new();
    cancel.cancel();
    let e = t
        .transcribe_samples_with(&samples, 16_000, Hooks::default().cancel(cancel))
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");

    // Cancelled from the segment callback: the next window's first decoder step stops.
    let long = dattavani_asr::audio_io::load_audio(std::path::Path::new(
        "tests/data/speech/long_concat.wav",
    ))
    .unwrap();
    let cancel = CancelHandle::new();
    let in_callback = cancel.clone();
    let mut segments = 0;
    let hooks = Hooks::default().cancel(cancel).on_segment(|_| {
        segments += 1;
        in_callback.cancel();
    });
    let e = t.transcribe_samples_with(&long, 16_000, hooks).unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert!(segments >= 1);
    assert!(
        t.timings().windows.len() == 1,
        "{:?}",
        t.timings().windows.len()
    );

    // The same audio at 8 kHz (every other sample): resampled back to 16 kHz.
    let at_8k: Vec<f32> = samples.iter().step_by(2).copied().collect();
    let t8 = t.transcribe_samples(&at_8k, 8_000).unwrap();
    assert!(
        t8.text.contains("ask not what your country can do for you"),
        "{}",
        t8.text
    );

    // The caller's chunks (as a voice-activity detector would give): the clip in two halves.
    let half = samples.len() / 2;
    let chunks = [
        SampleRange {
            start: 0,
            end: half,
        },
        SampleRange {
            start: half,
            end: samples.len(),
        },
    ];
    let tc = t
        .transcribe_chunks(&samples, &chunks, Hooks::default())
        .unwrap();
    assert!(!tc.segments.is_empty());
    assert!(tc.segments.iter().all(|s| s.start < s.end));
    let too_long = [SampleRange {
        start: 0,
        end: 16_000 * 31,
    }];
    let e = t
        .transcribe_chunks(&vec![0.0; 16_000 * 31], &too_long, Hooks::default())
        .unwrap_err();
    assert!(e.to_string().contains("longer than a 30-s window"), "{e}");
}

#[test]
fn loops_stepped_together_give_what_each_gives_alone() {
    let Some(mut t) = greedy_tiny_en() else {
        return;
    };
    let load = |f: &str| dattavani_asr::audio_io::load_audio(std::path::Path::new(f)).unwrap();
    let a = load("samples/jfk.wav");
    let b = load("tests/data/speech/ps_librivox_0870.wav");
    let alone_a = t.transcribe_samples(&a, 16_000).unwrap();
    let alone_b = t.transcribe_samples(&b, 16_000).unwrap();

    let (mut mel_a, mut mel_b) = (t.log_mel(&a).unwrap(), t.log_mel(&b).unwrap());
    let mut seek_a = t.begin_seek(&mut mel_a).unwrap();
    let mut seek_b = t.begin_seek(&mut mel_b).unwrap();
    let mut streamed = (Vec::new(), Vec::new());
    while !(seek_a.is_done() && seek_b.is_done()) {
        let new = t
            .step_windows(
                &mut [
                    (&mut seek_a, &mut mel_a as &mut dyn MelSource),
                    (&mut seek_b, &mut mel_b as &mut dyn MelSource),
                ],
                None,
            )
            .unwrap();
        streamed.0.extend(new[0].iter().map(|s| s.text.clone()));
        streamed.1.extend(new[1].iter().map(|s| s.text.clone()));
    }
    let together_a = t.finish_seek(seek_a).unwrap();
    let together_b = t.finish_seek(seek_b).unwrap();
    let json = |x: &dattavani_asr::Transcript| {
        dattavani_asr::writers::render(x, dattavani_asr::OutputFormat::Json)
    };
    assert_eq!(json(&together_a), json(&alone_a));
    assert_eq!(json(&together_b), json(&alone_b));
    let texts = |x: &dattavani_asr::Transcript| -> Vec<String> {
        x.segments.iter().map(|s| s.text.clone()).collect()
    };
    assert_eq!(streamed, (texts(&alone_a), texts(&alone_b)));
}
