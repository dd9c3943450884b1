//! `--dtype int8` on the CPU against the f32 reference path, on the 16 reference clips (greedy,
//! 30-s windows: the setting of tests/transcripts.rs, whose reference token ids are CTranslate2
//! float32's and equal our f32 path's).
//!
//! Int8 rounds every weight and activation to 1/254 of its row's range, so a clip may take a
//! different token where f32 found two candidates close. What is asserted:
//! - at the first token where int8 leaves the f32 sequence, the f32 model itself rated int8's
//!   choice within `NEAR_TIE` logits of its own (the choice was close, not an error of the
//!   int8 arithmetic; later tokens follow from the different prefix);
//! - over all clips, int8's word error rate is at most f32's plus one point.
//!
//! The same holds for `--dtype int8-bf16` (int8, and the encoder's attention products in bf16
//! where the CPU has AVX-512 BF16; exactly int8 elsewhere) and for `--dtype int8-bf16x3` (those
//! products as three bf16 products of split operands, near f32, made for AMX tiles) and
//! `--dtype int8-bf16v` (only the weights × values product of that attention in bf16), and for
//! `int8-bf16v` on the multilingual base checkpoint against our f32, window by window.

#[path = "common/clips.rs"]
mod clips;

#[path = "common/models.rs"]
mod models;

#[path = "common/wer.rs"]
mod wer;

use dattavani_asr::testing::backend::cpu::ops::Products;
use dattavani_asr::testing::decode::DecodingTask;
use dattavani_asr::testing::mel;
use dattavani_asr::testing::model::hub;
use dattavani_asr::testing::transcribe::{Device, Dtype, TranscribeOptions, Transcriber};

/// Logit gap (f32 model) allowed between f32's token and int8's at their first difference.
/// Measured on tiny.en (AMD EPYC Zen 5, issue 12): 14 of 16 clips give f32's tokens exactly
/// with int8 and with int8-bf16; the other two part at gaps of 0.07 and 0.11, the same tokens
/// for both (int8 logits differ from f32's by that much: per-row scales of 1/127 through 4
/// decoder layers). int8-bf16x3 parts at those two and at a third, at token 1 of
/// synth_espeak_3.wav, gap 0.17 (a near-tie that int8 resolves as f32 does); int8-bf16v (AMD
/// Zen 4, stop 18) at those three and at ps_librivox_0890.wav, gap 0.13. An earlier int8
/// kernel parted on a third clip at 0.23. 0.5 means int8 may pick a token f32 gave at least
/// e^-0.5 (61%) of its top token's probability, never a token f32 found clearly worse.
const NEAR_TIE: f32 = 0.5;

fn transcriber(dtype: Dtype) -> Transcriber {
    transcriber_of("tiny.en", dtype)
}

fn transcriber_of(model: &str, dtype: Dtype) -> Transcriber {
    let files = hub::resolve(model).unwrap_or_else(|e| panic!("{model} resolves: {e}"));
    let mut options = TranscribeOptions::greedy_plain();
    options.weights_dtype = Some(dtype);
    Transcriber::from_files(&files, Device::Cpu, options).unwrap_or_else(|e| panic!("{model}: {e}"))
}

/// (file, f32 token ids, reference transcript) of every clip of reference_ct2_greedy.tsv.
fn labelled_clips() -> Vec<(String, Vec<u32>, String)> {
    let texts = clips::reference_texts();
    clips::ct2_greedy()
        .into_iter()
        .filter_map(|c| Some((c.file.clone(), c.ids, texts.get(&c.file)?.clone())))
        .collect()
}

#[test]
fn int8_follows_f32_up_to_near_ties_and_keeps_its_error_rate() {
    follows_f32_up_to_near_ties(Dtype::Int8, "int8");
}

#[test]
fn int8_bf16_follows_f32_up_to_near_ties_and_keeps_its_error_rate() {
    follows_f32_up_to_near_ties(Dtype::Int8Bf16, ran_as(Products::Bf16, "int8-bf16"));
}

#[test]
fn int8_bf16x3_follows_f32_up_to_near_ties_and_keeps_its_error_rate() {
    follows_f32_up_to_near_ties(Dtype::Int8Bf16x3, ran_as(Products::Bf16x3, "int8-bf16x3"));
}

#[test]
fn int8_bf16v_follows_f32_up_to_near_ties_and_keeps_its_error_rate() {
    follows_f32_up_to_near_ties(Dtype::Int8Bf16V, ran_as(Products::Bf16Values, "int8-bf16v"));
}

/// What a model asked for attention `products` reports as its weights: `name`, or "int8" where
/// the CPU lacks AVX-512 BF16 (it then runs int8, and says so).
fn ran_as(products: Products, name: &'static str) -> &'static str {
    if products.on_this_cpu() == products {
        name
    } else {
        "int8"
    }
}

/// The f32 model of a checkpoint, judging where another model's tokens part from f32's: the
/// f32 logit gap at the first difference, and the error counts of both.
struct F32Judge {
    model: Transcriber,
    tokenizer: dattavani_asr::testing::tokenizer::WhisperTokenizer,
    failures: Vec<String>,
    errors_f32: usize,
    errors_other: usize,
    words: usize,
}

impl F32Judge {
    fn new(model: &str) -> Self {
        let f32_model = transcriber_of(model, Dtype::F32);
        let files = hub::resolve(model).unwrap();
        let tokenizer = dattavani_asr::testing::tokenizer::WhisperTokenizer::from_file(
            &files.tokenizer(),
            f32_model.config().dims.n_vocab,
        )
        .unwrap();
        F32Judge {
            model: f32_model,
            tokenizer,
            failures: Vec::new(),
            errors_f32: 0,
            errors_other: 0,
            words: 0,
        }
    }

    /// Counts both texts' errors against `reference`; returns (f32's, the other's).
    fn count(&mut self, reference: &str, f32_text: &str, other_text: &str) -> (usize, usize) {
        let (e32, n) = wer::corpus_errors([(reference, f32_text)]);
        let (e8, _) = wer::corpus_errors([(reference, other_text)]);
        self.errors_f32 += e32;
        self.errors_other += e8;
        self.words += n;
        (e32, e8)
    }

    /// Where the window of `path` at mel frame `seek` decodes to `f32_ids` with f32 and to
    /// `other` with the other model: the first token that differs and the f32 model's logit gap
    /// there (its own token's logit minus the other's), recorded as a failure above
    /// [`NEAR_TIE`] (`what` names the place).
    fn gap(
        &mut self,
        path: &std::path::Path,
        seek: usize,
        f32_ids: &[u32],
        other: &[u32],
        what: &str,
    ) -> (usize, f32) {
        let at = other
            .iter()
            .zip(f32_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let config = self.model.config().clone();
        let options = self.model.options().decode.clone();
        let samples = dattavani_asr::testing::audio::load_audio(path).unwrap();
        let window = mel::log_mel_spectrogram(&samples, config.dims.n_mels).window(seek);
        let task = DecodingTask::new(&self.tokenizer, &config, &options).unwrap();
        self.model.backend().encode(&window).unwrap();
        let logits = task
            .logits_after(self.model.backend(), &f32_ids[..at])
            .unwrap();
        let eot = self.tokenizer.eot;
        let pick = |ids: &[u32]| ids.get(at).copied().unwrap_or(eot) as usize;
        let gap = logits[pick(f32_ids)] - logits[pick(other)];
        if gap > NEAR_TIE {
            self.failures.push(format!(
                "{what}: first difference at token {at} has gap {gap:.3}"
            ));
        }
        (at, gap)
    }

    /// The module's assertions: no first difference above [`NEAR_TIE`], and the other model's
    /// errors within a point of f32's.
    fn assert_near_ties_and_error_rate(&self, ran: &str) {
        let (e32, e8, words) = (self.errors_f32, self.errors_other, self.words);
        println!("word errors: f32 {e32} / {ran} {e8} of {words}");
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
        assert!(
            e8 as f64 <= e32 as f64 + 0.01 * words as f64,
            "{ran} {e8} errors vs f32 {e32} of {words} words"
        );
    }
}

/// The module's assertions for `dtype`, whose model reports `ran` as its weights.
fn follows_f32_up_to_near_ties(dtype: Dtype, ran: &str) {
    if models::cached_dir("tiny.en").is_none() {
        return;
    }
    let mut judge = F32Judge::new("tiny.en");
    let mut int8_model = transcriber(dtype);
    assert_eq!(int8_model.diagnostics().unwrap().weights_dtype(), ran);
    let clips = labelled_clips();
    assert!(clips.len() >= 16, "{} clips", clips.len());
    for (file, f32_ids, reference) in clips {
        let path = clips::data(&format!("speech/{file}"));
        let result = int8_model.transcribe_file(&path).unwrap();
        let ours: Vec<u32> = result
            .segments
            .iter()
            .flat_map(|s| s.tokens.clone())
            .collect();
        let f32_text = judge.tokenizer.decode(&f32_ids).unwrap();
        let (e32, e8) = judge.count(&reference, &f32_text, &result.text);
        if ours == f32_ids {
            println!("{file}: same tokens");
            continue;
        }
        // Every reference clip is one window (30 s or shorter).
        let (at, gap) = judge.gap(&path, 0, &f32_ids, &ours, &file);
        println!(
            "{file}: differs at token {at}, f32 logit gap {gap:.3}; f32 {e32} / {ran} {e8} errors\n  f32:  {f32_text}\n  {ran}: {}",
            result.text.trim()
        );
    }
    judge.assert_near_ties_and_error_rate(ran);
}

/// The default's weights (`int8-bf16v`) on the multilingual base checkpoint, against our f32
/// (base has no CTranslate2 reference ids here; our f32 made faster-whisper float32's errors
/// on the dev clips, README stop 20): in each 30-s window (decoded alone: no previous text),
/// the first token where they part is a near-tie of the f32 model, and the error rate stays
/// within a point of f32's. Measured on AMD Zen 4 (stop 20): 3 of the 16 clips part, at gaps
/// of 0.00, 0.08 and 0.13, and make 33 errors against f32's 30 of 387 words (the bound: 33.87);
/// as int8 (`DATTAVANI_MAX_ISA=avx2`: no bf16 kernels) 2 part, at 0.00 and 0.23, 23 errors.
/// Of the three long clips README counts (not reference clips here), two part in their first
/// window, at 0.05 and 0.40 (a one-off check).
#[test]
fn int8_bf16v_on_base_follows_f32_up_to_near_ties() {
    if models::cached_dir("base").is_none() {
        return;
    }
    let ran = ran_as(Products::Bf16Values, "int8-bf16v");
    let mut judge = F32Judge::new("base");
    let mut int8_model = transcriber_of("base", Dtype::Int8Bf16V);
    assert_eq!(int8_model.diagnostics().unwrap().weights_dtype(), ran);
    // Text tokens per window (first mel frame), in window order.
    let windows = |t: &dattavani_asr::testing::transcribe::Transcript| {
        let mut w = std::collections::BTreeMap::<usize, Vec<u32>>::new();
        for s in &t.segments {
            w.entry(s.seek).or_default().extend(&s.tokens);
        }
        w
    };
    for (file, _, reference) in labelled_clips() {
        let path = clips::data(&format!("speech/{file}"));
        let (want, got) = (
            judge.model.transcribe_file(&path).unwrap(),
            int8_model.transcribe_file(&path).unwrap(),
        );
        let (e32, e8) = judge.count(&reference, &want.text, &got.text);
        let (want_w, got_w) = (windows(&want), windows(&got));
        let seeks: std::collections::BTreeSet<usize> =
            want_w.keys().chain(got_w.keys()).copied().collect();
        let none = Vec::new();
        let parted = seeks.into_iter().find_map(|seek| {
            let (a, b) = (
                want_w.get(&seek).unwrap_or(&none),
                got_w.get(&seek).unwrap_or(&none),
            );
            (a != b).then(|| (seek, a.clone(), b.clone()))
        });
        let Some((seek, a, b)) = parted else {
            println!("{file}: same tokens");
            continue;
        };
        let (at, gap) = judge.gap(
            &path,
            seek,
            &a,
            &b,
            &format!("{file}, window at frame {seek}"),
        );
        println!(
            "{file}: window at frame {seek} differs at token {at}, f32 logit gap {gap:.3}; f32 {e32} / {ran} {e8} errors"
        );
    }
    judge.assert_near_ties_and_error_rate(ran);
}
