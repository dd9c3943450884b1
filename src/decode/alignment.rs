//! Word-level timestamps (OpenAI's `timing.py`): the cross-attention of the checkpoint's
//! alignment heads over a window, normalised and median-filtered, aligned to tokens by dynamic
//! time warping; tokens are grouped into words and punctuation is merged as OpenAI does.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Result;
use crate::model::config::ModelConfig;
use crate::tokenizer::WhisperTokenizer;

/// Timestamp steps (encoder frames) per second.
const TOKENS_PER_SECOND: f64 = 50.0;
const MEDFILT_WIDTH: usize = 7;
/// Python's `string.punctuation`.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Languages written without spaces between words: split into characters instead.
pub const NO_SPACE_LANGUAGES: [&str; 6] = ["zh", "ja", "th", "lo", "my", "yue"];
/// OpenAI's defaults for `prepend_punctuations` and `append_punctuations`.
pub const PREPEND_PUNCTUATIONS: &str = "\"'\u{201c}\u{bf}([{-";
pub const APPEND_PUNCTUATIONS: &str =
    "\"'.\u{3002},\u{ff0c}!\u{ff01}?\u{ff1f}:\u{ff1a}\u{201d})]}\u{3001}";

/// One word with its time span (seconds, absolute) and mean token probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub word: String,
    pub start: f64,
    pub end: f64,
    pub probability: f32,
}

/// A word during alignment: text, tokens, times relative to the window.
#[derive(Debug, Clone)]
struct WordTiming {
    word: String,
    tokens: Vec<u32>,
    start: f64,
    end: f64,
    probability: f32,
}

/// Align `text_tokens` (the window's text, timestamps excluded) to the encoded window, whose
/// audio fills `num_frames` mel frames. Returns the words with times relative to the window.
#[allow(clippy::too_many_arguments)]
fn find_alignment(
    backend: &mut dyn Backend,
    window: usize,
    tokenizer: &WhisperTokenizer,
    config: &ModelConfig,
    sot_sequence: &[u32],
    text_tokens: &[u32],
    num_frames: usize,
    no_spaces: bool,
) -> Result<Vec<WordTiming>> {
    if text_tokens.is_empty() {
        return Ok(Vec::new());
    }
    let n_vocab = config.dims.n_vocab;
    let mut tokens: Vec<u32> = sot_sequence.to_vec();
    tokens.push(tokenizer.no_timestamps);
    tokens.extend_from_slice(text_tokens);
    tokens.push(tokenizer.eot);

    // Each text token's probability among text tokens, teacher-forced.
    let mut logits = vec![0.0f32; n_vocab];
    backend.begin_decode_windows(&[window])?;
    backend.decode(&tokens[..sot_sequence.len() + 1], &mut logits)?;
    let mut text_token_probs = Vec::with_capacity(text_tokens.len());
    for (i, &t) in text_tokens.iter().enumerate() {
        let text_logits = &logits[..tokenizer.eot as usize];
        text_token_probs.push(crate::decode::softmax_at(text_logits, t as usize));
        if i + 1 < text_tokens.len() {
            backend.decode(&[t], &mut logits)?;
        }
    }

    // Alignment heads (all decoder heads of the second half when the config names none, as
    // OpenAI's default).
    let heads: Vec<(usize, usize)> = if config.alignment_heads.is_empty() {
        let d = &config.dims;
        (d.n_text_layer / 2..d.n_text_layer)
            .flat_map(|l| (0..d.n_text_head).map(move |h| (l, h)))
            .collect()
    } else {
        config.alignment_heads.clone()
    };
    let n_ctx = config.dims.n_audio_ctx;
    let weights = backend.cross_attention_weights_in(window, &tokens, &heads)?;
    let n_tok = tokens.len();
    let n_frames = (num_frames / 2).clamp(1, n_ctx);

    // Per head: keep the audio's frames, renormalise (= softmax over those frames only), then
    // standardise over tokens per frame and median-filter over frames; average the heads.
    let mut matrix = vec![0.0f64; n_tok * n_frames];
    for h in 0..heads.len() {
        let mut w = vec![0.0f64; n_tok * n_frames];
        for r in 0..n_tok {
            let row = &weights[(h * n_tok + r) * n_ctx..(h * n_tok + r) * n_ctx + n_frames];
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            for (c, &v) in row.iter().enumerate() {
                w[r * n_frames + c] = v as f64 / sum.max(f64::MIN_POSITIVE);
            }
        }
        for c in 0..n_frames {
            let mean = (0..n_tok).map(|r| w[r * n_frames + c]).sum::<f64>() / n_tok as f64;
            let var = (0..n_tok)
                .map(|r| (w[r * n_frames + c] - mean).powi(2))
                .sum::<f64>()
                / n_tok as f64;
            let std = var.sqrt();
            for r in 0..n_tok {
                let v = &mut w[r * n_frames + c];
                *v = (*v - mean) / std;
            }
        }
        for r in 0..n_tok {
            let filtered = median_filter(&w[r * n_frames..(r + 1) * n_frames], MEDFILT_WIDTH);
            for (m, f) in matrix[r * n_frames..(r + 1) * n_frames]
                .iter_mut()
                .zip(filtered)
            {
                *m += f / heads.len() as f64;
            }
        }
    }
    // Rows from <|notimestamps|> to the last text token: row i predicts text token i.
    let first = sot_sequence.len();
    let rows = n_tok - 1 - first;
    let cost: Vec<f64> = matrix[first * n_frames..(first + rows) * n_frames]
        .iter()
        .map(|v| -v)
        .collect();
    let (text_indices, time_indices) = dtw(&cost, rows, n_frames);

    let mut with_eot = text_tokens.to_vec();
    with_eot.push(tokenizer.eot);
    let (words, word_tokens) = split_to_word_tokens(tokenizer, &with_eot, no_spaces)?;
    if word_tokens.len() <= 1 {
        return Ok(Vec::new());
    }
    let mut boundaries = vec![0usize];
    for t in &word_tokens[..word_tokens.len() - 1] {
        boundaries.push(boundaries.last().unwrap() + t.len());
    }
    let jump_times: Vec<f64> = (0..text_indices.len())
        .filter(|&k| k == 0 || text_indices[k] != text_indices[k - 1])
        .map(|k| time_indices[k] as f64 / TOKENS_PER_SECOND)
        .collect();
    let mut out = Vec::new();
    for w in 0..boundaries.len() - 1 {
        let (a, b) = (boundaries[w], boundaries[w + 1]);
        let probs = &text_token_probs[a..b.min(text_token_probs.len())];
        out.push(WordTiming {
            word: words[w].clone(),
            tokens: word_tokens[w].clone(),
            start: jump_times.get(a).copied().unwrap_or(0.0),
            end: jump_times.get(b).copied().unwrap_or(0.0),
            probability: if probs.is_empty() {
                0.0
            } else {
                probs.iter().sum::<f32>() / probs.len() as f32
            },
        });
    }
    Ok(out)
}

/// Median over a sliding window, reflect-padded at both ends (OpenAI's `median_filter`).
fn median_filter(x: &[f64], width: usize) -> Vec<f64> {
    let pad = width / 2;
    let n = x.len();
    if n <= pad {
        return x.to_vec();
    }
    let at = |i: isize| -> f64 {
        let j = if i < 0 {
            -i
        } else if i >= n as isize {
            2 * (n as isize - 1) - i
        } else {
            i
        };
        x[j.clamp(0, n as isize - 1) as usize]
    };
    let mut window = vec![0.0; width];
    (0..n)
        .map(|c| {
            for (k, w) in window.iter_mut().enumerate() {
                *w = at(c as isize + k as isize - pad as isize);
            }
            window.sort_by(f64::total_cmp);
            window[width / 2]
        })
        .collect()
}

/// Dynamic time warping over a `[rows, cols]` cost matrix (OpenAI's `dtw_cpu` + `backtrace`):
/// the monotonic path of least total cost, as (row indices, column indices).
fn dtw(x: &[f64], rows: usize, cols: usize) -> (Vec<usize>, Vec<usize>) {
    let w = cols + 1;
    let mut cost = vec![f64::INFINITY; (rows + 1) * w];
    let mut trace = vec![-1i8; (rows + 1) * w];
    cost[0] = 0.0;
    for j in 1..=cols {
        for i in 1..=rows {
            let c0 = cost[(i - 1) * w + j - 1];
            let c1 = cost[(i - 1) * w + j];
            let c2 = cost[i * w + j - 1];
            let (c, t) = if c0 < c1 && c0 < c2 {
                (c0, 0)
            } else if c1 < c0 && c1 < c2 {
                (c1, 1)
            } else {
                (c2, 2)
            };
            cost[i * w + j] = x[(i - 1) * cols + j - 1] + c;
            trace[i * w + j] = t;
        }
    }
    trace[..=cols].fill(2);
    for i in 0..=rows {
        trace[i * w] = 1;
    }
    let (mut i, mut j) = (rows, cols);
    let mut path = Vec::new();
    while i > 0 || j > 0 {
        path.push((i.wrapping_sub(1), j.wrapping_sub(1)));
        match trace[i * w + j] {
            0 => {
                i -= 1;
                j -= 1;
            }
            1 => i -= 1,
            _ => j -= 1,
        }
    }
    path.reverse();
    path.into_iter()
        .filter(|&(i, j)| i < rows && j < cols)
        .unzip()
}

/// Tokens grouped into words: by space for most languages, by complete Unicode characters for
/// languages written without spaces (OpenAI's `split_to_word_tokens`).
fn split_to_word_tokens(
    tokenizer: &WhisperTokenizer,
    tokens: &[u32],
    no_spaces: bool,
) -> Result<(Vec<String>, Vec<Vec<u32>>)> {
    let (subwords, subword_tokens) = split_on_unicode(tokenizer, tokens)?;
    if no_spaces {
        return Ok((subwords, subword_tokens));
    }
    let mut words: Vec<String> = Vec::new();
    let mut word_tokens: Vec<Vec<u32>> = Vec::new();
    for (sub, toks) in subwords.into_iter().zip(subword_tokens) {
        let special = toks[0] >= tokenizer.eot;
        let with_space = sub.starts_with(' ');
        // Python's `subword.strip() in string.punctuation`: a substring test.
        let punctuation = ASCII_PUNCTUATION.contains(sub.trim());
        if special || with_space || punctuation || words.is_empty() {
            words.push(sub);
            word_tokens.push(toks);
        } else {
            words.last_mut().unwrap().push_str(&sub);
            word_tokens.last_mut().unwrap().extend(toks);
        }
    }
    Ok((words, word_tokens))
}

/// Split where the decoded text so far forms complete characters (a token may hold half of a
/// multi-byte character).
fn split_on_unicode(
    tokenizer: &WhisperTokenizer,
    tokens: &[u32],
) -> Result<(Vec<String>, Vec<Vec<u32>>)> {
    let mut words = Vec::new();
    let mut word_tokens = Vec::new();
    let mut current: Vec<u32> = Vec::new();
    for &t in tokens {
        current.push(t);
        let decoded = if t >= tokenizer.eot {
            "<|special|>".to_string()
        } else {
            tokenizer.decode(&current)?
        };
        if !decoded.contains('\u{fffd}') {
            words.push(decoded);
            word_tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(tokenizer.decode(&current)?);
        word_tokens.push(current);
    }
    Ok((words, word_tokens))
}

/// Attach leading punctuation to the next word and trailing punctuation to the previous one.
fn merge_punctuations(alignment: &mut [WordTiming], prepended: &str, appended: &str) {
    if alignment.len() < 2 {
        return;
    }
    let mut i = alignment.len() as isize - 2;
    let mut j = alignment.len() - 1;
    while i >= 0 {
        let iu = i as usize;
        let prev = &alignment[iu];
        // Python's `previous.word.strip() in prepended`: a substring test.
        if prev.word.starts_with(' ') && prepended.contains(prev.word.trim()) {
            let (word, tokens) = (
                std::mem::take(&mut alignment[iu].word),
                std::mem::take(&mut alignment[iu].tokens),
            );
            let following = &mut alignment[j];
            following.word = word + &following.word;
            following.tokens = [tokens, std::mem::take(&mut following.tokens)].concat();
        } else {
            j = iu;
        }
        i -= 1;
    }
    let (mut i, mut j) = (0usize, 1usize);
    while j < alignment.len() {
        let prev_ends_space = alignment[i].word.ends_with(' ');
        let follows = &alignment[j].word;
        if !prev_ends_space && appended.contains(follows.as_str()) {
            let (word, tokens) = (
                std::mem::take(&mut alignment[j].word),
                std::mem::take(&mut alignment[j].tokens),
            );
            alignment[i].word.push_str(&word);
            alignment[i].tokens.extend(tokens);
        } else {
            i = j;
        }
        j += 1;
    }
}

/// A segment of the current window, as word timestamps see it.
pub struct SegmentSpan<'a> {
    pub start: &'a mut f64,
    pub end: &'a mut f64,
    pub tokens: &'a [u32],
    pub words: &'a mut Vec<Word>,
}

/// OpenAI's `add_word_timestamps` for the segments of one window (encoded in the backend as
/// window `window` of its batch). `time_offset` is the window's start; `last_speech_timestamp`
/// carries across windows.
#[allow(clippy::too_many_arguments)]
pub fn add_word_timestamps(
    backend: &mut dyn Backend,
    window: usize,
    tokenizer: &WhisperTokenizer,
    config: &ModelConfig,
    sot_sequence: &[u32],
    segments: &mut [SegmentSpan<'_>],
    time_offset: f64,
    num_frames: usize,
    language: &str,
    last_speech_timestamp: &mut f64,
) -> Result<()> {
    if segments.is_empty() {
        return Ok(());
    }
    let per_segment: Vec<Vec<u32>> = segments
        .iter()
        .map(|s| {
            s.tokens
                .iter()
                .copied()
                .filter(|&t| t < tokenizer.eot)
                .collect()
        })
        .collect();
    let text_tokens: Vec<u32> = per_segment.concat();
    let mut alignment = find_alignment(
        backend,
        window,
        tokenizer,
        config,
        sot_sequence,
        &text_tokens,
        num_frames,
        NO_SPACE_LANGUAGES.contains(&language),
    )?;
    let mut durations: Vec<f64> = alignment
        .iter()
        .map(|t| t.end - t.start)
        .filter(|&d| d != 0.0)
        .collect();
    durations.sort_by(f64::total_cmp);
    let median_duration = if durations.is_empty() {
        0.0
    } else if durations.len() % 2 == 1 {
        durations[durations.len() / 2]
    } else {
        (durations[durations.len() / 2 - 1] + durations[durations.len() / 2]) / 2.0
    }
    .min(0.7);
    let max_duration = median_duration * 2.0;
    // Long words at sentence boundaries are truncated (the model often stretches them).
    if !durations.is_empty() {
        let sentence_end = ".\u{3002}!\u{ff01}?\u{ff1f}";
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if sentence_end.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if sentence_end.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);

    let mut word_index = 0;
    for (segment, text_tokens) in segments.iter_mut().zip(&per_segment) {
        let mut saved = 0;
        let mut words: Vec<Word> = Vec::new();
        while word_index < alignment.len() && saved < text_tokens.len() {
            let timing = &alignment[word_index];
            if !timing.word.is_empty() {
                words.push(Word {
                    word: timing.word.clone(),
                    start: super::round2(time_offset + timing.start),
                    end: super::round2(time_offset + timing.end),
                    probability: timing.probability,
                });
            }
            saved += timing.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            // The first word after a pause is not longer than twice the median word.
            let first_too_long = words[0].end - words[0].start > max_duration
                || (words.len() > 1 && words[1].end - words[0].start > max_duration * 2.0);
            if words[0].end - *last_speech_timestamp > median_duration * 4.0 && first_too_long {
                if words.len() > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            // Prefer the segment's own start / end when the first / last word is too long.
            if *segment.start < words[0].end && *segment.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median_duration)
                    .min(*segment.start)
                    .max(0.0);
            } else {
                *segment.start = words[0].start;
            }
            let last = words.len() - 1;
            if *segment.end > words[last].start && *segment.end + 0.5 < words[last].end {
                words[last].end = (words[last].start + median_duration).max(*segment.end);
            } else {
                *segment.end = words[last].end;
            }
            *last_speech_timestamp = *segment.end;
        }
        *segment.words = words;
    }
    Ok(())
}
