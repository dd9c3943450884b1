//! Response bodies exactly as OpenAI's audio API returns them: `json`, `text`, `srt`, `vtt`,
//! `verbose_json` (segments, words when asked), and the server-sent events of `stream=true`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::upload::ResponseFormat;
use crate::tokenizer::{Task, LANGUAGES};
use crate::transcribe::Transcript;

/// What a response needs besides the transcript.
pub struct Shape {
    pub format: ResponseFormat,
    pub task: Task,
    pub words: bool,
    pub segments: bool,
}

/// The language's English name as OpenAI reports it ("english"), the code when unknown.
pub fn language_name(code: &str) -> &str {
    LANGUAGES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(code, |(_, name)| name)
}

/// The transcript's text as OpenAI returns it: no leading or trailing space.
pub fn text_of(t: &Transcript) -> String {
    t.text.trim().to_string()
}

pub fn render(t: &Transcript, shape: &Shape) -> Response {
    match shape.format {
        ResponseFormat::Json => axum::Json(json!({ "text": text_of(t) })).into_response(),
        ResponseFormat::Text => plain(format!("{}\n", text_of(t)), "text/plain; charset=utf-8"),
        ResponseFormat::Srt => plain(crate::output::render_srt(t), "text/plain; charset=utf-8"),
        ResponseFormat::Vtt => plain(crate::output::render_vtt(t), "text/vtt; charset=utf-8"),
        ResponseFormat::VerboseJson => axum::Json(verbose_json(t, shape)).into_response(),
    }
}

fn plain(body: String, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// OpenAI's `verbose_json`: task, language, duration, text, then `segments` (with segment
/// granularity, the default) and `words` (with word granularity).
pub fn verbose_json(t: &Transcript, shape: &Shape) -> serde_json::Value {
    let mut body = json!({
        "task": match shape.task { Task::Transcribe => "transcribe", Task::Translate => "translate" },
        "language": language_name(&t.language),
        "duration": t.duration,
        "text": text_of(t),
    });
    if shape.segments {
        let segments: Vec<serde_json::Value> = t
            .segments
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "seek": s.seek,
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "tokens": s.tokens,
                    "temperature": s.temperature,
                    "avg_logprob": s.avg_logprob,
                    "compression_ratio": s.compression_ratio,
                    "no_speech_prob": s.no_speech_prob,
                })
            })
            .collect();
        body["segments"] = segments.into();
    }
    if shape.words {
        let words: Vec<serde_json::Value> = t
            .segments
            .iter()
            .flat_map(|s| s.words.iter().flatten())
            .map(|w| json!({ "word": w.word.trim(), "start": w.start, "end": w.end }))
            .collect();
        body["words"] = words.into();
    }
    body
}

/// The SSE `transcript.text.delta` event of one final segment's text.
pub fn delta_event(delta: &str) -> serde_json::Value {
    json!({ "type": "transcript.text.delta", "delta": delta })
}

/// The SSE `transcript.text.done` event: `text` is the joined deltas.
pub fn done_event(text: &str) -> serde_json::Value {
    json!({ "type": "transcript.text.done", "text": text })
}
