//! `GET /v1/audio/stream`: live transcription over a WebSocket, the events of the `stream`
//! command.
//!
//! The client sends one JSON text message with its settings, then binary frames of raw mono
//! PCM, then `{"type":"end"}`:
//!
//! ```text
//! -> {"model":"whisper-1","language":"en","step_ms":1000,"partials":false,"words":false,
//!     "sample_rate":16000,"format":"s16le"}           (every field optional; f32le also)
//! -> <binary PCM> ...
//! -> {"type":"end"}
//! <- {"type":"partial",...} / {"type":"committed","start","end","text","words"?} ...
//! <- {"type":"done","text":...}                       then a normal close (1000)
//! ```
//!
//! Committed texts concatenate to the `done` text. A bad message gets
//! `{"type":"error","error":{OpenAI's error object}}` and a close: 1003 for data of the wrong
//! kind (a text message that is not JSON, audio before the settings), 1008 for settings or
//! messages the server refuses and for the idle timeout, 1011 when a step fails, 1001 when the
//! server shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::error::ApiError;
use super::live::{error_body, Live, PcmFrames, SessionSlot};
use super::routes::{language_code, resolve_model, RequestId};
use super::AppState;
use crate::audio::RawEncoding;
use crate::stream::{StreamConfig, StreamEvent};

/// Close codes (RFC 6455 section 7.4.1).
pub(super) const CLOSE_NORMAL: u16 = 1000;
pub(super) const CLOSE_GOING_AWAY: u16 = 1001;
pub(super) const CLOSE_UNSUPPORTED: u16 = 1003;
pub(super) const CLOSE_POLICY: u16 = 1008;
pub(super) const CLOSE_INTERNAL: u16 = 1011;

/// The first message: the stream's settings. Unknown fields are ignored (as the HTTP API
/// ignores unknown form fields).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    /// `config`, `start` or absent.
    #[serde(rename = "type")]
    kind: Option<String>,
    model: Option<String>,
    language: Option<String>,
    step_ms: Option<u32>,
    /// Beams per step (default 1: greedy, short steps).
    beam_size: Option<usize>,
    partials: bool,
    words: bool,
    sample_rate: Option<u32>,
    #[serde(alias = "input_format", alias = "encoding")]
    format: Option<String>,
}

/// A text message after the settings.
#[derive(Deserialize)]
struct Control {
    #[serde(rename = "type")]
    kind: String,
}

/// Why a session stops early: the error to report and the close code.
pub(super) struct Refusal {
    pub error: ApiError,
    pub close: u16,
}

impl Refusal {
    pub(super) fn new(close: u16, error: ApiError) -> Self {
        Refusal { error, close }
    }
    fn policy(message: impl Into<String>) -> Self {
        Self::new(CLOSE_POLICY, ApiError::bad_request(None, message))
    }
    fn unsupported(message: impl Into<String>) -> Self {
        Self::new(CLOSE_UNSUPPORTED, ApiError::bad_request(None, message))
    }
}

pub(super) async fn run(
    state: Arc<AppState>,
    mut socket: WebSocket,
    slot: SessionSlot,
    session_id: String,
) {
    tracing::info!("stream session open");
    let result = session(&state, &mut socket, &session_id).await;
    match result {
        Ok(Some(())) => close(&mut socket, CLOSE_NORMAL, "done").await,
        Ok(None) => tracing::info!("client went away; session cancelled"),
        Err(refusal) => {
            tracing::info!("stream session refused: {}", refusal.error.message);
            let event = json!({"type": "error", "error": error_body(&refusal.error)});
            let _ = socket.send(Message::Text(event.to_string().into())).await;
            let reason = short_reason(&refusal.error.message);
            close(&mut socket, refusal.close, &reason).await;
        }
    }
    drop(slot);
}

/// The session; `Ok(None)` when the client went away, `Ok(Some(()))` after `done`.
async fn session(
    state: &Arc<AppState>,
    socket: &mut WebSocket,
    session_id: &str,
) -> Result<Option<()>, Refusal> {
    let idle = state.config.stream_idle_timeout;
    // The settings.
    let settings = match recv_idle(socket, idle).await? {
        None => return Ok(None),
        Some(Message::Text(text)) => serde_json::from_str::<Settings>(&text).map_err(|e| {
            Refusal::unsupported(format!("The first message must be the JSON settings: {e}"))
        })?,
        Some(_) => {
            return Err(Refusal::unsupported(
                "The first message must be the JSON settings, before any audio.",
            ))
        }
    };
    if let Some(kind) = settings.kind.as_deref() {
        if !matches!(kind, "config" | "start") {
            return Err(Refusal::policy(format!(
                "The first message must be the settings (type \"config\"), not \"{kind}\"."
            )));
        }
    }
    let model = resolve_model(state, settings.model.as_deref())
        .map_err(|e| Refusal::new(CLOSE_POLICY, e))?;
    let mut options = state.config.options.clone();
    if let Some(lang) = settings.language.as_deref().filter(|l| !l.is_empty()) {
        options.decode.language =
            Some(language_code(lang, &model).map_err(|e| Refusal::new(CLOSE_POLICY, e))?);
    }
    let encoding: RawEncoding = settings
        .format
        .as_deref()
        .unwrap_or("s16le")
        .parse()
        .map_err(|e: String| Refusal::policy(format!("format: {e}")))?;
    let mut frames = PcmFrames::new(encoding, settings.sample_rate.unwrap_or(16_000))
        .map_err(Refusal::policy)?;
    let config = StreamConfig {
        step_ms: settings.step_ms.unwrap_or(StreamConfig::default().step_ms),
        partials: settings.partials,
        words: settings.words,
        ..StreamConfig::default()
    };
    config
        .validate()
        .map_err(|e| Refusal::policy(e.to_string()))?;
    if let Some(beams) = settings.beam_size.filter(|b| !(1..=8).contains(b)) {
        return Err(Refusal::policy(format!(
            "beam_size must be 1 to 8, not {beams}"
        )));
    }
    tracing::info!(
        "stream settings: model {}, {:?} at {} Hz, step {} ms",
        model.name,
        encoding,
        settings.sample_rate.unwrap_or(16_000),
        config.step_ms
    );
    let mut live = Live::new(
        state.clone(),
        session_id.to_string(),
        model,
        options,
        None,
        config,
        settings.beam_size,
    );

    // Audio until `end`.
    let mut last_message = Instant::now();
    let stopped = state.sessions.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Err(shutting_down()),
            events = live.step_done(), if live.stepping() => {
                let events = events.map_err(step_failed)?;
                if !send_events(socket, &events).await {
                    return Ok(None);
                }
            }
            _ = tokio::time::sleep_until(last_message + idle), if live.wants_audio() => {
                return Err(Refusal::policy(format!(
                    "No message for {} s: the session is closed.", idle.as_secs()
                )));
            }
            message = socket.recv(), if live.wants_audio() => {
                last_message = Instant::now();
                match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(None),
                    Some(Ok(Message::Binary(bytes))) => {
                        let samples = frames.push(&bytes).map_err(Refusal::policy)?;
                        live.push(&samples);
                    }
                    Some(Ok(Message::Text(text))) => {
                        let control: Control = serde_json::from_str(&text).map_err(|e| {
                            Refusal::unsupported(format!("A text message must be JSON: {e}"))
                        })?;
                        if control.kind != "end" {
                            return Err(Refusal::policy(format!(
                                "Unknown message type \"{}\" (expected \"end\").", control.kind
                            )));
                        }
                        break;
                    }
                    Some(Ok(_)) => {} // ping, pong: answered by the library
                }
            }
        }
    }

    // The end: the rest of the audio, the last step, `done`. A client that leaves meanwhile
    // cancels it.
    let tail = frames.finish().map_err(Refusal::policy)?;
    live.push(&tail);
    tracing::info!("stream end after {:.1} s of audio", live.received_s());
    let events = tokio::select! {
        events = live.finish() => events.map_err(step_failed)?,
        _ = client_gone(socket) => return Ok(None),
    };
    if !send_events(socket, &events).await {
        return Ok(None);
    }
    debug_assert!(matches!(events.last(), Some(StreamEvent::Done { .. })));
    Ok(Some(()))
}

/// The server shuts down: the session closes with 1001.
pub(super) fn shutting_down() -> Refusal {
    Refusal::new(CLOSE_GOING_AWAY, ApiError::shutting_down())
}

fn step_failed(e: crate::error::Error) -> Refusal {
    tracing::warn!("stream step failed: {e}");
    Refusal::new(CLOSE_INTERNAL, ApiError::from(e))
}

/// The next message, or a refusal when none comes within `idle`; `None`: the client left.
async fn recv_idle(socket: &mut WebSocket, idle: Duration) -> Result<Option<Message>, Refusal> {
    match tokio::time::timeout(idle, socket.recv()).await {
        Err(_) => Err(Refusal::policy(format!(
            "No message for {} s: the session is closed.",
            idle.as_secs()
        ))),
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => Ok(None),
        Ok(Some(Ok(m))) => Ok(Some(m)),
    }
}

/// Resolves when the client closes or the connection drops (other messages are ignored).
pub(super) async fn client_gone(socket: &mut WebSocket) {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => {}
        }
    }
}

/// Send each event as a JSON text message; false when the client is gone.
async fn send_events(socket: &mut WebSocket, events: &[StreamEvent]) -> bool {
    for event in events {
        let text = match serde_json::to_string(event) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("stream event not serializable: {e}");
                continue;
            }
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return false;
        }
    }
    true
}

/// A close frame's reason is at most 123 bytes.
pub(super) fn short_reason(message: &str) -> String {
    let mut end = message.len().min(120);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// Send a close frame and wait briefly for the client's, so the close is clean.
pub(super) async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client_gone(socket)).await;
}

/// `GET /v1/audio/stream`: refused with 429 before the upgrade when `--max-sessions` are open.
fn upgrade(
    state: Arc<AppState>,
    ws: WebSocketUpgrade,
    session_id: String,
) -> Result<Response, ApiError> {
    let slot = super::realtime::open_session(&state)?;
    Ok(ws
        .max_message_size(super::live::MAX_MESSAGE_BYTES)
        .max_frame_size(super::live::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("stream", request_id = %session_id);
            tracing::Instrument::instrument(run(state, socket, slot, session_id.clone()), span)
        }))
}

/// The route: a WebSocket upgrade, else a 400 in OpenAI's shape.
pub(super) async fn handler(
    State(state): State<Arc<AppState>>,
    request_id: Extension<RequestId>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return not_websocket(e).into_response(),
    };
    upgrade(state, ws, request_id.0 .0).unwrap_or_else(IntoResponse::into_response)
}

/// A plain HTTP request on a WebSocket route.
pub(super) fn not_websocket(e: WebSocketUpgradeRejection) -> ApiError {
    ApiError::bad_request(
        None,
        format!("This route is a WebSocket: {}", e.body_text()),
    )
}
