//! Subtitle cues laid out from word timings as openai-whisper's `SubtitlesWriter.iterate_result`
//! does (`--max-line-width`, `--max-line-count`, `--highlight-words`): words fill a line up to
//! the width, lines fill a cue up to the count, a pause over 3 s starts a new cue, and with
//! highlighting every word gets a cue of its own with that word underlined.

use crate::decode::alignment::Word;
use crate::transcribe::Transcript;

/// openai-whisper's subtitle options (all need word timestamps to have an effect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubtitleOptions {
    /// Characters in a line before it breaks.
    pub max_line_width: Option<usize>,
    /// Lines in a cue (only with `max_line_width`: without it cues follow segments).
    pub max_line_count: Option<usize>,
    /// Underline each word (`<u>word</u>`) in a cue of its own while it is spoken.
    pub highlight_words: bool,
}

impl SubtitleOptions {
    /// Whether the cues come from the words rather than the segments.
    pub fn uses_words(&self) -> bool {
        self.max_line_width.is_some() || self.max_line_count.is_some() || self.highlight_words
    }
}

/// A pause longer than this (seconds) starts a new cue when lines are being filled.
const LONG_PAUSE: f64 = 3.0;

/// Cues as (start, end, text), times already formatted by `stamp` (highlighting compares
/// formatted times, as openai-whisper does). Segments without words are cues of their own.
pub fn cues(
    t: &Transcript,
    opts: &SubtitleOptions,
    stamp: &dyn Fn(f64) -> String,
) -> Vec<(String, String, String)> {
    let have_words = t.segments.first().is_some_and(|s| s.words.is_some());
    if !opts.uses_words() || !have_words {
        return t
            .segments
            .iter()
            .map(|s| {
                (
                    stamp(s.start),
                    stamp(s.end),
                    s.text.trim().replace("-->", "->"),
                )
            })
            .collect();
    }
    let mut out = Vec::new();
    for subtitle in word_groups(t, opts) {
        let (Some(first), Some(last)) = (subtitle.first(), subtitle.last()) else {
            continue;
        };
        let start = stamp(first.start);
        let end = stamp(last.end);
        let text: String = subtitle.iter().map(|w| w.word.as_str()).collect();
        if !opts.highlight_words {
            out.push((start, end, text.replace("-->", "->")));
            continue;
        }
        let mut previous_end = start;
        for (i, word) in subtitle.iter().enumerate() {
            let (ws, we) = (stamp(word.start), stamp(word.end));
            if previous_end != ws {
                out.push((previous_end.clone(), ws.clone(), text.replace("-->", "->")));
            }
            let marked: String = subtitle
                .iter()
                .enumerate()
                .map(|(j, w)| {
                    if j == i {
                        underline(&w.word)
                    } else {
                        w.word.clone()
                    }
                })
                .collect();
            out.push((ws, we.clone(), marked.replace("-->", "->")));
            previous_end = we;
        }
    }
    out
}

/// `<u>` around a word, after its leading whitespace (openai-whisper's `^(\s*)(.*)$`).
fn underline(word: &str) -> String {
    let body = word.trim_start();
    let lead = &word[..word.len() - body.len()];
    format!("{lead}<u>{body}</u>")
}

/// openai-whisper's `iterate_subtitles`: word timings grouped into cues, line breaks as `\n`
/// prefixed to the first word of a line.
fn word_groups(t: &Transcript, opts: &SubtitleOptions) -> Vec<Vec<Word>> {
    let preserve_segments = opts.max_line_count.is_none() || opts.max_line_width.is_none();
    let max_width = opts.max_line_width.unwrap_or(1000);
    let mut groups = Vec::new();
    let mut subtitle: Vec<Word> = Vec::new();
    let mut line_len = 0usize;
    let mut line_count = 1usize;
    let mut last = t
        .segments
        .iter()
        .flat_map(|s| s.words.iter().flatten())
        .next()
        .map_or(0.0, |w| w.start);
    for segment in &t.segments {
        for (i, original) in segment.words.iter().flatten().enumerate() {
            let mut timing = original.clone();
            let long_pause = !preserve_segments && timing.start - last > LONG_PAUSE;
            let has_room = line_len + timing.word.chars().count() <= max_width;
            let seg_break = i == 0 && !subtitle.is_empty() && preserve_segments;
            if line_len > 0 && has_room && !long_pause && !seg_break {
                line_len += timing.word.chars().count();
            } else {
                timing.word = timing.word.trim().to_string();
                let count_break = opts
                    .max_line_count
                    .is_some_and(|n| long_pause || line_count >= n);
                if (!subtitle.is_empty() && count_break) || seg_break {
                    groups.push(std::mem::take(&mut subtitle));
                    line_count = 1;
                } else if line_len > 0 {
                    line_count += 1;
                    timing.word = format!("\n{}", timing.word);
                }
                line_len = timing.word.trim().chars().count();
            }
            last = timing.start;
            subtitle.push(timing);
        }
    }
    if !subtitle.is_empty() {
        groups.push(subtitle);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcribe::Segment;

    fn word(w: &str, start: f64, end: f64) -> Word {
        Word {
            word: w.into(),
            start,
            end,
            probability: 0.9,
        }
    }

    fn transcript(words: Vec<Vec<Word>>) -> Transcript {
        let segments = words
            .into_iter()
            .enumerate()
            .map(|(id, ws)| Segment {
                id,
                seek: 0,
                start: ws[0].start,
                end: ws[ws.len() - 1].end,
                text: ws.iter().map(|w| w.word.as_str()).collect(),
                tokens: vec![],
                temperature: 0.0,
                avg_logprob: 0.0,
                compression_ratio: 1.0,
                no_speech_prob: 0.0,
                words: Some(ws),
            })
            .collect();
        Transcript {
            text: String::new(),
            language: "en".into(),
            language_probability: None,
            segments,
            duration: 10.0,
        }
    }

    fn stamp(s: f64) -> String {
        format!("{s:.1}")
    }

    #[test]
    fn lines_fill_to_the_width_and_cues_to_the_count() {
        let t = transcript(vec![vec![
            word(" one", 0.0, 0.5),
            word(" two", 0.5, 1.0),
            word(" three", 1.0, 1.5),
            word(" four", 1.5, 2.0),
            word(" five", 2.0, 2.5),
        ]]);
        let opts = SubtitleOptions {
            max_line_width: Some(9),
            max_line_count: Some(2),
            highlight_words: false,
        };
        let got = cues(&t, &opts, &stamp);
        assert_eq!(
            got,
            [
                ("0.0".into(), "1.5".into(), "one two\nthree".into()),
                ("1.5".into(), "2.5".into(), "four five".into()),
            ]
        );
    }

    #[test]
    fn highlighting_underlines_each_word_in_turn() {
        let t = transcript(vec![vec![word(" Hi", 0.0, 0.4), word(" there", 0.6, 1.0)]]);
        let opts = SubtitleOptions {
            highlight_words: true,
            ..Default::default()
        };
        let got = cues(&t, &opts, &stamp);
        assert_eq!(
            got,
            [
                ("0.0".into(), "0.4".into(), "<u>Hi</u> there".into()),
                ("0.4".into(), "0.6".into(), "Hi there".into()),
                ("0.6".into(), "1.0".into(), "Hi <u>there</u>".into()),
            ]
        );
    }
}
