//! The transcript writers on arbitrary text and timings: every format, with and without the
//! word-level subtitle options (line width, line count, highlighting). The bytes are split on
//! NUL into segment/word texts; a few leading bytes pick the options.
#![no_main]

use dattavani_asr::testing::decode::alignment::Word;
use dattavani_asr::writers::{render_with, OutputFormat, SubtitleOptions};
use dattavani_asr::{Segment, Transcript};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    let opts = SubtitleOptions {
        max_line_width: (head[0] != 0).then_some(head[0] as usize),
        max_line_count: (head[1] != 0).then_some((head[1] % 8) as usize),
        highlight_words: head[2] & 1 == 1,
    };
    let with_words = head[2] & 2 == 2;
    let step = head[3] as f64 / 16.0; // seconds per word; 0 gives zero-length words
    let text = String::from_utf8_lossy(body);
    let mut t = 0.0;
    let mut segments = Vec::new();
    for (id, seg_text) in text.split('\n').enumerate() {
        let start = t;
        let words = with_words.then(|| {
            seg_text
                .split_inclusive(' ')
                .map(|w| {
                    let word = Word {
                        word: w.to_string(),
                        start: t,
                        end: t + step,
                        probability: 0.5,
                    };
                    t += step;
                    word
                })
                .collect::<Vec<_>>()
        });
        t += step;
        segments.push(Segment {
            id,
            seek: 0,
            start,
            end: t,
            text: seg_text.to_string(),
            tokens: vec![],
            temperature: 0.0,
            avg_logprob: -0.5,
            compression_ratio: 1.0,
            no_speech_prob: 0.0,
            words,
        });
    }
    let transcript = Transcript {
        text: text.to_string(),
        language: "en".into(),
        language_probability: None,
        segments,
        duration: t,
    };
    for format in OutputFormat::ALL {
        let _ = render_with(&transcript, format, &opts);
    }
});
