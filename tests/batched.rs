//! Batched long-form transcription (`batch_size` > 1) on the CPU path with tiny.en: decoding
//! chunks together gives exactly what decoding them one by one gives (token for token, same
//! log-probabilities), and the batched transcripts of the long clips are sane and about as
//! accurate as the sequential loop's.

#[path = "common/clips.rs"]
mod clips;

#[path = "common/models.rs"]
mod models;

#[path = "common/timeline.rs"]
mod timeline;

#[path = "common/wer.rs"]
mod wer;

use std::sync::{Mutex, MutexGuard};

use dattavani_asr::testing::backend::cpu::model::CpuWeights;
use dattavani_asr::testing::backend::cpu::CpuModel;
use dattavani_asr::testing::backend::Backend;
use dattavani_asr::testing::decode::search::Rng;
use dattavani_asr::testing::decode::{DecodeOptions, DecodingResult, DecodingTask};
use dattavani_asr::testing::model::config::ModelConfig;
use dattavani_asr::testing::model::hub;
use dattavani_asr::testing::model::weights::Weights;
use dattavani_asr::testing::tokenizer::WhisperTokenizer;
use dattavani_asr::testing::transcribe::batched::{chunk_window, plan_chunks};
use dattavani_asr::testing::transcribe::{
    Device, MelPadding, TranscribeOptions, Transcriber, Transcript,
};

/// One model at a time: each uses both cores.
static MODEL_LOCK: Mutex<()> = Mutex::new(());

/// This test's turn with tiny.en; `None` (skipped) when it is not cached.
fn turn() -> Option<MutexGuard<'static, ()>> {
    models::cached_and_locked("tiny.en", &MODEL_LOCK)
}

/// Greedy decoding (the reference transcripts' decode), `batch_size` windows at a time.
fn greedy(batch_size: usize) -> TranscribeOptions {
    let mut o = TranscribeOptions::default();
    o.decode.beam_size = None;
    o.decode.best_of = None;
    o.batch_size = batch_size;
    o
}

fn transcriber(mut options: TranscribeOptions) -> Transcriber {
    let files = hub::resolve("tiny.en").expect("tiny.en resolves");
    // f32, the reference: these transcripts were made with it (the default is auto).
    options.weights_dtype = options.weights_dtype.or(Some(dattavani_asr::Dtype::F32));
    Transcriber::from_files(&files, Device::Cpu, options).expect("tiny.en loads")
}

/// tiny.en's CPU model, tokenizer and config, apart (a `DecodingTask` borrows the last two
/// while the model decodes), and the first `n` chunk windows of long_concat.
fn model_and_windows(
    dtype: CpuWeights,
    n: usize,
) -> (CpuModel, WhisperTokenizer, ModelConfig, Vec<Vec<f32>>) {
    let files = hub::resolve("tiny.en").expect("tiny.en resolves");
    let config = ModelConfig::from_dir(&files.dir).unwrap();
    let tokenizer = WhisperTokenizer::from_file(&files.tokenizer(), config.dims.n_vocab).unwrap();
    let weights = Weights::open(&files.weights()).unwrap();
    let mut model = CpuModel::load_with(&weights, &config.dims, dtype).unwrap();
    let windows = chunk_windows(&mut model, "long_concat.wav", n);
    (model, tokenizer, config, windows)
}

/// The first `n` chunk windows of `file`, as the batched transcription cuts and pads them.
fn chunk_windows(model: &mut CpuModel, file: &str, n: usize) -> Vec<Vec<f32>> {
    let samples =
        dattavani_asr::testing::audio::load_audio(&clips::data(&format!("speech/{file}"))).unwrap();
    let n_mels = model.dims().n_mels;
    let mel = model.log_mel(&samples, n_mels).unwrap();
    let chunks = plan_chunks(&samples, mel.content_frames());
    assert!(chunks.len() >= n, "{file}: {} chunks", chunks.len());
    chunks[..n]
        .iter()
        .map(|&c| chunk_window(&mel, c, MelPadding::Floor))
        .collect()
}

fn same_result(what: &str, a: &DecodingResult, b: &DecodingResult) {
    assert_eq!(a.tokens, b.tokens, "{what}: tokens");
    // Bit-identical: the same logits, filtered and summed in the same order.
    assert_eq!(
        a.sum_logprob.to_bits(),
        b.sum_logprob.to_bits(),
        "{what}: sum log-probability {} vs {}",
        a.sum_logprob,
        b.sum_logprob
    );
    assert_eq!(
        a.no_speech_prob.to_bits(),
        b.no_speech_prob.to_bits(),
        "{what}: no-speech probability"
    );
}

/// Lockstep decoding of 4 chunks of long_concat (4 windows in one `encode_batch`, one pass)
/// equals decoding each chunk alone (`run_windows` on a batch of one) and the sequential
/// single-window API (`encode` + `DecodingTask::run`): greedy with timestamps, greedy plain
/// text (where `run` lets the backend pick tokens), beam 5 (20 rows per step: past
/// `ops::SMALL_M`, so the row-grouping of the CPU decoder is exercised) and beam 5 with an
/// initial prompt (prompt rows past `SMALL_M`: window by window).
#[test]
fn decoding_chunks_together_equals_decoding_them_one_by_one() {
    let Some(_guard) = turn() else { return };
    let (mut backend, tokenizer, config, windows) = model_and_windows(CpuWeights::F32, 4);
    let prompt = tokenizer
        .encode(" Dashwood, comedian mail, echo test.")
        .unwrap();
    let cases: Vec<(&str, DecodeOptions)> = vec![
        ("greedy", DecodeOptions::default()),
        (
            "greedy plain",
            DecodeOptions {
                without_timestamps: true,
                ..DecodeOptions::default()
            },
        ),
        (
            "beam 5",
            DecodeOptions {
                beam_size: Some(5),
                ..DecodeOptions::default()
            },
        ),
        (
            "beam 5 + prompt",
            DecodeOptions {
                beam_size: Some(5),
                prompt: prompt.clone(),
                ..DecodeOptions::default()
            },
        ),
    ];
    let mels: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
    for (name, options) in &cases {
        let task = DecodingTask::new(&tokenizer, &config, options).unwrap();
        backend.encode_batch(&mels).unwrap();
        let together = task
            .run_windows(&mut backend, &[0, 1, 2, 3], &mut Rng::new(0))
            .unwrap();
        assert_eq!(together.len(), 4);
        for (i, mel) in mels.iter().enumerate() {
            backend.encode_batch(&[mel]).unwrap();
            let alone = task
                .run_windows(&mut backend, &[0], &mut Rng::new(0))
                .unwrap();
            same_result(&format!("{name}, chunk {i} alone"), &together[i], &alone[0]);
            backend.encode(mel).unwrap();
            let sequential = task.run(&mut backend, &mut Rng::new(0)).unwrap();
            same_result(
                &format!("{name}, chunk {i} sequential"),
                &together[i],
                &sequential,
            );
        }
        assert!(
            together.iter().all(|r| r.tokens.len() > 10),
            "{name}: every chunk holds speech"
        );
    }
}

/// The same with int8 weights (`--dtype int8`): its products are exact integer sums with
/// activations quantized per row, so rows never interact whatever their number.
#[test]
fn int8_decoding_chunks_together_equals_decoding_them_one_by_one() {
    let Some(_guard) = turn() else { return };
    let (mut backend, tokenizer, config, windows) = model_and_windows(CpuWeights::Int8, 3);
    let mels: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
    for options in [
        DecodeOptions::default(),
        DecodeOptions {
            beam_size: Some(5),
            ..DecodeOptions::default()
        },
    ] {
        let task = DecodingTask::new(&tokenizer, &config, &options).unwrap();
        backend.encode_batch(&mels).unwrap();
        let together = task
            .run_windows(&mut backend, &[0, 1, 2], &mut Rng::new(0))
            .unwrap();
        for (i, mel) in mels.iter().enumerate() {
            backend.encode(mel).unwrap();
            let alone = task.run(&mut backend, &mut Rng::new(0)).unwrap();
            same_result(
                &format!("int8 {:?}, chunk {i}", options.beam_size),
                &together[i],
                &alone,
            );
        }
    }
}

/// A window's sequences need not be adjacent to the others' in any particular order: the
/// windows of a batch decoded in reverse order give the same results.
#[test]
fn window_order_in_a_pass_does_not_matter() {
    let Some(_guard) = turn() else { return };
    let (mut backend, tokenizer, config, windows) = model_and_windows(CpuWeights::F32, 3);
    let mels: Vec<&[f32]> = windows.iter().map(Vec::as_slice).collect();
    let options = DecodeOptions::default();
    let task = DecodingTask::new(&tokenizer, &config, &options).unwrap();
    backend.encode_batch(&mels).unwrap();
    let forward = task
        .run_windows(&mut backend, &[0, 1, 2], &mut Rng::new(0))
        .unwrap();
    let reverse = task
        .run_windows(&mut backend, &[2, 1, 0], &mut Rng::new(0))
        .unwrap();
    for i in 0..3 {
        same_result(&format!("window {i}"), &forward[i], &reverse[2 - i]);
    }
}

fn assert_sane_timeline(t: &Transcript, name: &str) {
    timeline::assert_sane(t, name);
    for s in &t.segments {
        assert!(!s.text.trim().is_empty(), "{name}: empty segment {}", s.id);
    }
}

/// Greedy, batched by 4, on the long clips: monotonic segments inside the audio, a WER within
/// 2 points of the sequential loop's (greedy, same model), and the same transcript whatever the
/// batch size (2 and 4 group the chunks and their continuations differently).
#[test]
fn batched_long_clips_are_sane_and_as_accurate_as_sequential() {
    let Some(_guard) = turn() else { return };
    let refs = clips::real_references();
    let mut sequential = transcriber(greedy(1));
    let mut batched = transcriber(greedy(4));
    let mut pairs = Vec::new();
    for name in ["long_concat.wav", "ast_demo-instruct.wav"] {
        let path = clips::data(&format!("speech/{name}"));
        let b = batched.transcribe_file(&path).unwrap();
        assert!(b.segments.len() > 3, "{name}: several segments");
        assert_sane_timeline(&b, name);
        let s = sequential.transcribe_file(&path).unwrap();
        pairs.push((name, b.text.clone(), s.text.clone()));

        batched.set_options(greedy(2)).unwrap();
        let b2 = batched.transcribe_file(&path).unwrap();
        batched.set_options(greedy(4)).unwrap();
        assert_eq!(b2.segments.len(), b.segments.len(), "{name}: batch 2 vs 4");
        for (x, y) in b2.segments.iter().zip(&b.segments) {
            assert_eq!(
                (&x.tokens, x.start, x.end, x.seek),
                (&y.tokens, y.start, y.end, y.seek),
                "{name}: batch 2 vs 4, segment {}",
                x.id
            );
        }
    }
    let (b_err, words) = wer::corpus_errors(
        pairs
            .iter()
            .map(|(n, b, _)| (refs[*n].as_str(), b.as_str())),
    );
    let (s_err, _) = wer::corpus_errors(
        pairs
            .iter()
            .map(|(n, _, s)| (refs[*n].as_str(), s.as_str())),
    );
    println!("batched {b_err}/{words} errors, sequential {s_err}/{words}");
    assert!(
        b_err as f64 <= s_err as f64 + 0.02 * words as f64,
        "batched {b_err} errors vs sequential {s_err} of {words} words"
    );
}

/// Word timestamps in batched mode align each chunk on its own window of the batch: words in
/// order, inside the audio, and within 0.5 s of their segments (OpenAI's rules may keep a
/// segment's own end when its last word runs on: the sequential loop on long_concat has words
/// up to 0.05 s past their segments too).
#[test]
fn batched_word_timestamps_follow_their_segments() {
    let Some(_guard) = turn() else { return };
    let mut o = greedy(4);
    o.word_timestamps = true;
    let mut t = transcriber(o);
    let result = t
        .transcribe_file(clips::data("speech/long_concat.wav"))
        .unwrap();
    assert_sane_timeline(&result, "long_concat");
    let mut n_words = 0;
    let mut prev = 0.0;
    for s in &result.segments {
        let words = s.words.as_ref().expect("words with word_timestamps");
        let joined: String = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(joined.trim(), s.text.trim(), "words spell segment {}", s.id);
        for w in words {
            assert!(
                w.start <= w.end && w.start + 1e-6 >= prev,
                "segment {}: word {:?} out of order",
                s.id,
                w.word
            );
            assert!(
                w.start >= s.start - 0.5 && w.end <= s.end + 0.5 && w.end <= result.duration,
                "segment {} ({}-{}): word {:?} at {}-{}",
                s.id,
                s.start,
                s.end,
                w.word,
                w.start,
                w.end
            );
            prev = w.end;
        }
        n_words += words.len();
    }
    assert!(n_words > 150, "{n_words} words");
}
