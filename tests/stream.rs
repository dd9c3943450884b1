//! Live transcription: the LocalAgreement-2 policy on synthetic hypotheses (agreement,
//! append-only commits, trimming, catch-up, bounded memory), and the `stream` command on real
//! clips with tiny.en.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/models.rs"]
mod models;
#[path = "common/wer.rs"]
#[allow(dead_code)]
mod wer;

use std::path::PathBuf;
use std::process::Output;

use cli::{run, run_with_stdin};

use dattavani_asr::{
    LocalAgreement, Segment, StepRequest, StreamConfig, StreamEvent, Transcript, Word,
};

const RATE: usize = 16_000;

/// A hypothesis: segments of (word, start, end) with times relative to the step's buffer.
fn hypothesis(segments: &[&[(&str, f64, f64)]]) -> Transcript {
    let segments: Vec<Segment> = segments
        .iter()
        .enumerate()
        .map(|(id, words)| {
            let words: Vec<Word> = words
                .iter()
                .map(|&(w, start, end)| Word {
                    word: format!(" {w}"),
                    start,
                    end,
                    probability: 0.9,
                })
                .collect();
            Segment {
                id,
                seek: 0,
                start: words[0].start,
                end: words[words.len() - 1].end,
                text: words.iter().map(|w| w.word.as_str()).collect(),
                tokens: Vec::new(),
                temperature: 0.0,
                avg_logprob: -0.2,
                compression_ratio: 1.2,
                no_speech_prob: 0.01,
                words: Some(words),
            }
        })
        .collect();
    Transcript {
        text: segments.iter().map(|s| s.text.as_str()).collect(),
        language: "en".into(),
        language_probability: None,
        segments,
        duration: 0.0,
    }
}

fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * RATE as f64).round() as usize]
}

/// Push `seconds` of audio and take the step it makes due.
fn step(policy: &mut LocalAgreement, seconds: f64) -> StepRequest {
    policy.push(&silence(seconds));
    assert!(policy.step_due());
    policy.take_step().expect("a step is due")
}

fn committed(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Committed { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn commits_the_prefix_two_hypotheses_agree_on() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    let req = step(&mut policy, 1.0);
    let first = policy.apply(&req, &hypothesis(&[&[("And", 0.1, 0.3), ("so", 0.3, 0.6)]]));
    assert!(
        committed(&first).is_empty(),
        "one hypothesis commits nothing"
    );

    let req = step(&mut policy, 1.0);
    let second = hypothesis(&[&[("And", 0.1, 0.3), ("so,", 0.3, 0.6), ("my", 0.7, 0.9)]]);
    let events = policy.apply(&req, &second);
    // "so" and "so," agree (punctuation); the later spelling is committed.
    assert_eq!(committed(&events), vec![" And so,"]);
    match &events[0] {
        StreamEvent::Committed {
            start, end, words, ..
        } => {
            assert_eq!((*start, *end), (0.1, 0.6));
            assert!(words.is_none(), "words only when asked for");
        }
        other => panic!("expected a commit, got {other:?}"),
    }

    let req = step(&mut policy, 1.0);
    // The third hypothesis changes its mind about the committed words: they stay committed,
    // and only what follows them is compared.
    let third = hypothesis(&[&[
        ("Hand", 0.1, 0.3),
        ("so", 0.3, 0.6),
        ("my", 0.7, 0.9),
        ("fellow", 1.0, 1.4),
    ]]);
    let events = policy.apply(&req, &third);
    assert_eq!(committed(&events), vec![" my"]);

    let done = policy.finish(None);
    assert_eq!(committed(&done), vec![" fellow"]);
    assert_eq!(
        done.last(),
        Some(&StreamEvent::Done {
            text: " And so, my fellow".into()
        })
    );
    assert!(
        policy.finish(None).is_empty(),
        "finish ends the stream once"
    );
}

#[test]
fn disagreement_commits_nothing_and_partials_show_the_tail() {
    let config = StreamConfig {
        partials: true,
        words: true,
        ..StreamConfig::default()
    };
    let mut policy = LocalAgreement::new(config);
    let req = step(&mut policy, 1.0);
    let events = policy.apply(&req, &hypothesis(&[&[("ask", 0.2, 0.5)]]));
    assert_eq!(
        events,
        vec![StreamEvent::Partial {
            start: 0.2,
            end: 0.5,
            text: " ask".into()
        }]
    );
    let req = step(&mut policy, 1.0);
    let events = policy.apply(
        &req,
        &hypothesis(&[&[("asked", 0.2, 0.5), ("not", 0.6, 0.9)]]),
    );
    assert!(committed(&events).is_empty());
    let req = step(&mut policy, 1.0);
    let events = policy.apply(
        &req,
        &hypothesis(&[&[("asked", 0.2, 0.5), ("not", 0.6, 0.9)]]),
    );
    // Agreement commits; the same tail again is not repeated as a partial.
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        StreamEvent::Committed { text, words, .. } => {
            assert_eq!(text, " asked not");
            let words = words.as_ref().expect("words asked for");
            assert_eq!(words.len(), 2);
            assert_eq!((words[1].start, words[1].end), (0.6, 0.9));
        }
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn committed_output_is_append_only_and_makes_the_done_text() {
    // A noisy series of hypotheses: words appear, change, vanish, repeat.
    let script: Vec<Vec<(&str, f64, f64)>> = vec![
        vec![("the", 0.0, 0.2)],
        vec![("the", 0.0, 0.2), ("birch", 0.3, 0.6)],
        vec![("the", 0.0, 0.2), ("birch", 0.3, 0.6), ("canoe", 0.7, 1.1)],
        vec![
            ("a", 0.0, 0.2),
            ("birch", 0.3, 0.6),
            ("canoe", 0.7, 1.1),
            ("slid", 1.2, 1.5),
        ],
        vec![("canoe", 0.8, 1.1), ("slid", 1.2, 1.5), ("on", 1.6, 1.7)],
        vec![
            ("slid", 1.2, 1.5),
            ("on", 1.6, 1.7),
            ("the", 1.8, 1.9),
            ("planks", 2.0, 2.5),
        ],
        vec![
            ("on", 1.6, 1.7),
            ("the", 1.8, 1.9),
            ("smooth", 2.0, 2.3),
            ("planks", 2.4, 2.9),
        ],
    ];
    let mut policy = LocalAgreement::new(StreamConfig::default());
    let mut all = Vec::new();
    for words in &script {
        let req = step(&mut policy, 1.0);
        all.extend(policy.apply(&req, &hypothesis(&[words])));
    }
    all.extend(policy.finish(None));
    let mut end = f64::NEG_INFINITY;
    let mut text = String::new();
    for e in &all {
        if let StreamEvent::Committed {
            start,
            end: e_end,
            text: t,
            ..
        } = e
        {
            assert!(*start >= end - 1e-9, "commits move forward: {all:?}");
            end = *e_end;
            text.push_str(t);
        }
    }
    assert_eq!(text, " the birch canoe slid on the smooth planks");
    assert_eq!(all.last(), Some(&StreamEvent::Done { text }));
}

/// The default policy, but trimming the buffer after 3 s (the default is longer than the
/// hypotheses these tests build).
fn trimming_after_3_s() -> LocalAgreement {
    LocalAgreement::new(StreamConfig {
        trim_after_s: 3.0,
        ..StreamConfig::default()
    })
}

#[test]
fn trims_at_a_committed_segment_end_past_the_trim_point() {
    let mut policy = trimming_after_3_s();
    let segments: [&[(&str, f64, f64)]; 2] = [
        &[("one", 0.2, 0.6), ("two", 0.8, 1.2)],
        &[("three", 2.5, 2.9), ("four", 3.0, 3.4)],
    ];
    let req = step(&mut policy, 3.5);
    policy.apply(&req, &hypothesis(&segments));
    assert_eq!(policy.buffer_s(), 3.5, "nothing committed: no cut");
    let req = step(&mut policy, 1.0);
    let events = policy.apply(&req, &hypothesis(&segments));
    assert_eq!(committed(&events), vec![" one two three four"]);
    // 4.5 s > 3 s: cut at the end of the last committed segment (3.4 s).
    assert!(
        (policy.buffer_s() - 1.1).abs() < 1e-3,
        "{}",
        policy.buffer_s()
    );
    let req = step(&mut policy, 1.0);
    assert!((req.offset_s - 3.4).abs() < 1e-3, "{}", req.offset_s);
    assert_eq!(req.samples.len(), (2.1 * RATE as f64).round() as usize);
    assert_eq!(
        req.prompt, "one two three four",
        "text before the buffer primes it"
    );
    // The next hypothesis' times are relative to the cut buffer; a repeated last word is
    // recognised as already committed.
    let events = policy.apply(
        &req,
        &hypothesis(&[&[("four", 0.0, 0.05), ("five", 0.3, 0.8)]]),
    );
    assert!(committed(&events).is_empty());
    let done = policy.finish(None);
    assert_eq!(committed(&done), vec![" five"]);
    match &done[0] {
        StreamEvent::Committed { start, .. } => assert!((start - 3.7).abs() < 1e-9),
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn a_late_step_takes_everything_pending_at_once() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    assert!(!policy.step_due());
    assert!(policy.take_step().is_none(), "no audio, no step");
    for _ in 0..35 {
        policy.push(&silence(0.1));
    }
    assert!(policy.step_due());
    let req = policy.take_step().expect("due");
    assert_eq!(req.samples.len(), 35 * 1600, "one step for all 3.5 s");
    assert_eq!(req.offset_s, 0.0);
    assert!(!policy.step_due());
    assert!(policy.take_step().is_none(), "nothing new since");
    policy.push(&silence(0.5));
    assert!(!policy.step_due(), "half a step is not due");
    let req = policy
        .take_step()
        .expect("a caller may step early (the end)");
    assert_eq!(req.samples.len(), 40 * 1600, "the whole buffer again");
}

#[test]
fn memory_is_bounded_without_steps_and_with_no_agreement() {
    let config = StreamConfig {
        max_buffer_s: 10.0,
        trim_after_s: 5.0,
        ..StreamConfig::default()
    };
    // Nobody steps: the buffer keeps the last 10 s.
    let mut policy = LocalAgreement::new(config.clone());
    for _ in 0..25 {
        policy.push(&silence(1.0));
    }
    assert_eq!(policy.buffer_s(), 10.0);
    assert_eq!(policy.dropped_s(), 15.0);
    let req = policy.take_step().expect("due");
    assert_eq!(req.offset_s, 15.0);

    // Steps whose hypotheses never agree: before the buffer passes 10 s, the hypothesis is
    // committed up to its last second and the buffer cut.
    let mut policy = LocalAgreement::new(config);
    let mut all = Vec::new();
    for i in 0..30 {
        let req = step(&mut policy, 1.0);
        assert!(
            req.samples.len() <= 10 * RATE,
            "step {i}: {} samples",
            req.samples.len()
        );
        let len = req.samples.len() as f64 / RATE as f64;
        let word = if i % 2 == 0 { "even" } else { "odd" };
        let words: Vec<(&str, f64, f64)> = (0..len as usize)
            .map(|k| (word, k as f64 + 0.1, k as f64 + 0.6))
            .collect();
        all.extend(policy.apply(&req, &hypothesis(&[&words])));
    }
    assert!(!committed(&all).is_empty(), "a full buffer commits");
    all.extend(policy.finish(None));
    let text: String = committed(&all).concat();
    assert_eq!(all.last(), Some(&StreamEvent::Done { text }));
}

#[test]
fn finish_commits_the_last_hypothesis() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    let req = step(&mut policy, 1.0);
    policy.apply(&req, &hypothesis(&[&[("ask", 0.2, 0.5)]]));
    policy.push(&silence(0.4));
    let last = policy.take_step().expect("audio left");
    let tail = hypothesis(&[&[("ask", 0.2, 0.5), ("not", 0.6, 0.9), ("what", 1.0, 1.3)]]);
    let events = policy.finish(Some((&last, &tail)));
    assert_eq!(committed(&events), vec![" ask not what"]);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Done {
            text: " ask not what".into()
        })
    );
}

#[test]
fn step_options_are_deterministic_with_word_timings() {
    let base = dattavani_asr::TranscribeOptions::default();
    let req = StepRequest {
        samples: Vec::new(),
        offset_s: 0.0,
        prompt: "So my fellow".into(),
        language: Some("en".into()),
    };
    let o = LocalAgreement::options_for_step(&base, &req);
    assert!(o.word_timestamps && !o.decode.without_timestamps);
    assert_eq!(o.temperatures(), vec![0.0]);
    assert_eq!(o.initial_prompt.as_deref(), Some("So my fellow"));
    assert_eq!(o.decode.language.as_deref(), Some("en"));
    assert_eq!(
        o.decode.beam_size, base.decode.beam_size,
        "the caller's search"
    );
}

#[test]
fn events_serialize_as_tagged_json() {
    let committed = StreamEvent::Committed {
        start: 0.5,
        end: 1.25,
        text: " ask not".into(),
        words: None,
    };
    let json = serde_json::to_string(&committed).unwrap();
    assert_eq!(
        json,
        r#"{"type":"committed","start":0.5,"end":1.25,"text":" ask not"}"#
    );
    let back: StreamEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, committed);
    let done = serde_json::to_string(&StreamEvent::Done { text: "x".into() }).unwrap();
    assert_eq!(done, r#"{"type":"done","text":"x"}"#);
    let partial: StreamEvent =
        serde_json::from_str(r#"{"type":"partial","start":1,"end":2,"text":" y"}"#).unwrap();
    assert!(matches!(partial, StreamEvent::Partial { .. }));
}

#[test]
fn config_checks_name_the_problem() {
    assert!(StreamConfig::default().validate().is_ok());
    let bad = |c: StreamConfig| c.validate().unwrap_err().to_string();
    assert!(bad(StreamConfig {
        step_ms: 50,
        ..Default::default()
    })
    .contains("step"));
    assert!(bad(StreamConfig {
        max_buffer_s: 45.0,
        ..Default::default()
    })
    .contains("30"));
    assert!(bad(StreamConfig {
        trim_after_s: 40.0,
        ..Default::default()
    })
    .contains("trim"));
}

#[test]
fn repeated_committed_words_are_found_by_spelling_not_only_time() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    let first = hypothesis(&[&[("ask", 0.2, 0.5), ("not", 0.6, 1.5)]]);
    for _ in 0..2 {
        let req = step(&mut policy, 1.0);
        policy.apply(&req, &first);
    }
    assert_eq!(policy.committed_text(), " ask not");
    // The next hypotheses move "not" earlier and start "what" before the committed end (1.5 s):
    // "what" is new all the same, found after the repeated "ask not".
    let next = hypothesis(&[&[("ask", 0.2, 0.5), ("not", 0.6, 0.9), ("what", 1.0, 1.6)]]);
    for _ in 0..2 {
        let req = step(&mut policy, 1.0);
        policy.apply(&req, &next);
    }
    assert_eq!(policy.committed_text(), " ask not what");
    // A hypothesis that spells the committed words differently is cut by time instead.
    let req = step(&mut policy, 1.0);
    policy.apply(
        &req,
        &hypothesis(&[&[
            ("a", 0.2, 0.5),
            ("knot", 0.6, 0.9),
            ("wat", 1.0, 1.6),
            ("your", 1.7, 1.9),
        ]]),
    );
    let events = policy.finish(None);
    assert_eq!(committed(&events), vec![" your"]);
}

// ---- The `stream` command on real clips (tiny.en, CPU) ----

fn speech(name: &str) -> String {
    format!("tests/data/speech/{name}")
}

/// `stream` with tiny.en on the CPU; None when tiny.en is not cached (skipped).
fn stream(input: &str, extra: &[&str], stdin: Option<Vec<u8>>) -> Option<Output> {
    let model: PathBuf = models::cached_dir("tiny.en")?;
    let model = model.to_string_lossy().into_owned();
    let mut args = vec!["stream", "-m", &model, "--device", "cpu"];
    args.extend_from_slice(extra);
    args.push(input);
    Some(run_with_stdin(&args, stdin.as_deref()))
}

/// The JSON lines of a successful run.
fn events(o: &Output) -> Vec<serde_json::Value> {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {err}", o.status);
    assert!(!err.contains("panicked"), "{err}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Checks the stream's contract and returns the done text: committed events move forward
/// and never repeat, their texts concatenate to `done.text`, which is the last line.
fn check_contract(lines: &[serde_json::Value]) -> String {
    let mut text = String::new();
    let mut last_end = f64::NEG_INFINITY;
    for (i, line) in lines.iter().enumerate() {
        match line["type"].as_str() {
            Some("committed") => {
                let (start, end) = (
                    line["start"].as_f64().unwrap(),
                    line["end"].as_f64().unwrap(),
                );
                assert!(start <= end, "{line}");
                // Word times jitter between hypotheses; committed times are clamped so they
                // never run backwards.
                assert!(
                    start >= last_end - 1e-9,
                    "a commit goes back in time: {lines:?}"
                );
                last_end = end;
                text.push_str(line["text"].as_str().unwrap());
            }
            Some("partial") => {}
            Some("done") => {
                assert_eq!(i, lines.len() - 1, "done is the last line");
                assert_eq!(line["text"].as_str().unwrap(), text, "done = the commits");
                return text;
            }
            other => panic!("unknown event type {other:?}: {line}"),
        }
    }
    panic!("no done line: {lines:?}");
}

/// Greedy offline transcript of a clip (what the stream is compared with).
fn offline(path: &str) -> String {
    let model = models::cached_dir("tiny.en").expect("checked by the caller");
    let model = model.to_string_lossy().into_owned();
    let o = run(&[
        "transcribe",
        "-m",
        &model,
        "--device",
        "cpu",
        "--beam-size",
        "1",
        path,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `streamed`, the streamed transcript of `clip`, is within [`tolerance`] word errors (word edit
/// distance after normalisation: case, punctuation) of the greedy offline transcript.
fn assert_close_to_offline(streamed: &str, clip: &str) {
    let offline = offline(clip);
    let (s, o) = (wer::normalize(streamed), wer::normalize(&offline));
    let (errors, words) = (wer::edit_distance(&o, &s), o.len());
    assert!(
        errors <= tolerance(words),
        "{errors} word errors in {words}:\n streamed: {streamed}\n offline:  {offline}"
    );
}

/// Word errors allowed against the offline greedy transcript of `words` words: 1 in 10 (at
/// least 1), as a streamed transcript decodes shorter contexts.
fn tolerance(words: usize) -> usize {
    (words / 10).max(1)
}

#[test]
fn a_clip_streams_to_committed_text_close_to_the_offline_transcript() {
    let clip = speech("ps_librivox_0870.wav");
    let Some(o) = stream(&clip, &["--partials", "--words"], None) else {
        return;
    };
    let lines = events(&o);
    let text = check_contract(&lines);
    assert!(
        lines.iter().any(|l| l["type"] == "partial"),
        "--partials: {lines:?}"
    );
    for l in lines.iter().filter(|l| l["type"] == "committed") {
        let words = l["words"].as_array().expect("--words");
        let joined: String = words.iter().map(|w| w["word"].as_str().unwrap()).collect();
        assert_eq!(
            joined,
            l["text"].as_str().unwrap(),
            "words spell the commit"
        );
    }
    assert_close_to_offline(&text, &clip);
}

#[test]
fn stdin_streams_as_it_arrives() {
    let bytes = std::fs::read(speech("ps_cards_005.wav")).unwrap();
    let Some(o) = stream("-", &[], Some(bytes)) else {
        return;
    };
    let text = check_contract(&events(&o));
    assert_close_to_offline(&text, &speech("ps_cards_005.wav"));
}

#[test]
fn raw_pcm_cut_mid_frame_still_ends_with_done() {
    // s16le without a header: the WAV's data, one byte short of a whole last sample.
    let wav = std::fs::read(speech("ps_goforward.wav")).unwrap();
    let mut pcm = wav[44..].to_vec();
    pcm.pop();
    let raw = ["--input-format", "s16le", "--input-rate", "16000"];
    let Some(o) = stream("-", &raw, Some(pcm)) else {
        return;
    };
    let text = check_contract(&events(&o));
    assert!(
        wer::normalize(&text)
            .join(" ")
            .contains("forward 10 meters"),
        "{text}"
    );
}

#[test]
fn paced_input_stamps_each_line() {
    let Some(o) = stream(
        &speech("ps_librivox_0880.wav"),
        &["--simulate-realtime"],
        None,
    ) else {
        return;
    };
    let lines = events(&o);
    check_contract(&lines);
    let stamps: Vec<f64> = lines
        .iter()
        .map(|l| l["emitted_at"].as_f64().expect("emitted_at"))
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    // Paced at 1x: nothing is committed before its audio has arrived.
    for l in lines.iter().filter(|l| l["type"] == "committed") {
        assert!(
            l["emitted_at"].as_f64().unwrap() >= l["end"].as_f64().unwrap() - 0.05,
            "{l}"
        );
    }
}

#[test]
fn bad_input_is_one_clear_line() {
    let o = run(&["stream", "--device", "cpu", "Cargo.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: Cargo.toml: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let o = run(&["stream", "--step-ms", "10", "-"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("step") && !err.contains("panicked"), "{err}");
    let o = run(&["stream", "no/such.wav"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no/such.wav"), "{err}");
}

#[test]
fn a_hypothesis_that_stops_early_leaves_the_rest_for_another_step() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    let words: &[(&str, f64, f64)] = &[("in", 0.2, 0.4), ("the", 0.5, 0.7), ("world.", 0.8, 1.2)];
    for _ in 0..2 {
        let req = step(&mut policy, 4.0);
        policy.apply(&req, &hypothesis(&[words]));
    }
    assert_eq!(policy.committed_text(), " in the world.");
    // The decoder stopped at 1.2 s of 8: the next window starts after the committed words.
    let req = step(&mut policy, 1.0);
    assert!((req.offset_s - 1.2).abs() < 1e-3, "{}", req.offset_s);
    // At the end, a final hypothesis that stops early again leaves the rest pending.
    policy.push(&silence(4.0));
    let last = policy.take_step().expect("audio left");
    let events = policy.flush(
        &last,
        &hypothesis(&[&[("Or", 0.3, 0.5), ("else", 0.6, 0.9)]]),
    );
    assert_eq!(committed(&events), vec![" Or else"]);
    let again = policy.take_step().expect("the audio after 'else' again");
    assert!((again.offset_s - 2.1).abs() < 1e-3, "{}", again.offset_s);
    let events = policy.flush(&again, &hypothesis(&[&[("this", 0.2, 0.5)]]));
    assert_eq!(committed(&events), vec![" this"]);
    let again = policy.take_step().expect("progress: the rest once more");
    assert!(policy.flush(&again, &hypothesis(&[])).is_empty());
    assert!(
        policy.take_step().is_none(),
        "no progress: the same audio is not asked for again"
    );
    let done = policy.finish(None);
    assert_eq!(
        done,
        vec![StreamEvent::Done {
            text: " in the world. Or else this".into()
        }]
    );
}

#[test]
fn one_long_segment_is_cut_after_a_committed_clause() {
    let mut policy = trimming_after_3_s();
    // One segment, still open past the committed words.
    let words: &[(&str, f64, f64)] = &[
        ("fuel,", 0.2, 0.6),
        ("making", 0.8, 1.2),
        ("a", 1.3, 1.4),
        ("famine", 1.5, 2.0),
        ("where", 3.6, 3.9),
    ];
    let req = step(&mut policy, 2.0);
    policy.apply(&req, &hypothesis(&[words]));
    let req = step(&mut policy, 2.0);
    let mut changed = words.to_vec();
    changed[4].0 = "were";
    policy.apply(&req, &hypothesis(&[&changed]));
    assert_eq!(policy.committed_text(), " fuel, making a famine");
    assert!(
        (policy.buffer_s() - 3.4).abs() < 1e-3,
        "cut after 'fuel,': {}",
        policy.buffer_s()
    );
}

#[test]
fn silence_is_skipped_unless_words_wait_for_confirmation() {
    let mut policy = LocalAgreement::new(StreamConfig::default());
    policy.push(&silence(3.0));
    assert!(policy.skip_silence(0.5));
    assert!(!policy.step_due() && policy.take_step().is_none());
    assert!(
        (policy.buffer_s() - 0.5).abs() < 1e-9,
        "the last 0.5 s is kept"
    );
    let req = step(&mut policy, 1.0);
    assert!((req.offset_s - 2.5).abs() < 1e-9, "{}", req.offset_s);
    policy.apply(&req, &hypothesis(&[&[("so", 0.6, 0.9)]]));
    policy.push(&silence(1.0));
    assert!(
        !policy.skip_silence(0.5),
        "'so' waits for a second hypothesis"
    );
}

/// `stream --vad` on jfk after 5 s and before 4 s of digital silence: the same words, no
/// steps in the silence.
#[test]
fn vad_skips_the_steps_in_silence() {
    use dattavani_asr::testing::model::hub;
    if dattavani_asr::vad::fetch::find_in(&hub::cache_dir()).is_none() {
        eprintln!("skipped: no Silero VAD weights (dattavani-asr models pull silero-vad)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let padded = dir.path().join("padded.wav");
    let jfk = std::fs::read("samples/jfk.wav").unwrap();
    let pcm = &jfk[44..];
    let mut data = vec![0u8; 5 * 32_000];
    data.extend_from_slice(pcm);
    data.extend(vec![0u8; 4 * 32_000]);
    let mut wav = jfk[..44].to_vec();
    wav[40..44].copy_from_slice(&(data.len() as u32).to_le_bytes());
    wav[4..8].copy_from_slice(&(data.len() as u32 + 36).to_le_bytes());
    wav.extend_from_slice(&data);
    std::fs::write(&padded, wav).unwrap();
    let path = padded.to_string_lossy().into_owned();
    let Some(o) = stream(&path, &["--vad"], None) else {
        return;
    };
    let lines = events(&o);
    let text = check_contract(&lines);
    let first = lines.iter().find(|l| l["type"] == "committed").unwrap();
    assert!(
        first["start"].as_f64().unwrap() >= 4.4,
        "nothing before the speech: {first}"
    );
    assert_close_to_offline(&text, "samples/jfk.wav");
}
