//! `GET /v1/realtime?intent=transcription`: the transcription-session subset of OpenAI's
//! Realtime API over a WebSocket, as the official clients speak it (`client.beta.realtime` sends
//! `OpenAI-Beta: realtime=v1` and the `transcription_session.*` events; the GA interface
//! `session.update` with `session.type = "transcription"`).
//!
//! Client events: `transcription_session.update` / `session.update` (model, language, prompt,
//! input format), `input_audio_buffer.append` (base64 pcm16 mono, 24 kHz unless the session says
//! otherwise), `input_audio_buffer.commit`, `input_audio_buffer.clear`. Server events:
//! `transcription_session.created/updated` (or `session.created/updated`),
//! `input_audio_buffer.committed`, `conversation.item.created`,
//! `conversation.item.input_audio_transcription.delta` / `.completed`,
//! `input_audio_buffer.cleared`, `error`.
//!
//! Each item (the audio between two commits) is a LocalAgreement stream ([`Live`]): its text is
//! committed while the audio arrives, and each committed piece goes out as a `delta` with the
//! item's id at once, so deltas may come before that item's `input_audio_buffer.committed` (the
//! point of a live transcript); `completed.transcript` is the deltas joined. Left out: server
//! VAD turn detection (`turn_detection` must be null; commit by hand), noise reduction, logprobs,
//! g711 formats, responses and conversation editing.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::error::ApiError;
use super::live::{error_body, Live, PcmFrames, SessionSlot, MAX_MESSAGE_BYTES};
use super::routes::{language_code, resolve_model, RequestId};
use super::stream_ws::{close, short_reason, Refusal, CLOSE_NORMAL, CLOSE_POLICY};
use super::worker::ModelInfo;
use super::AppState;
use crate::audio::RawEncoding;
use crate::stream::{StreamConfig, StreamEvent};

/// OpenAI's Realtime audio rate for pcm16.
const REALTIME_RATE: u32 = 24_000;

/// A session's place under `--max-sessions`, or 429 (before the upgrade).
pub(super) fn open_session(state: &AppState) -> Result<SessionSlot, ApiError> {
    if state
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(ApiError::shutting_down());
    }
    if !state.pool.is_ready() {
        return Err(ApiError::loading());
    }
    state.sessions.try_open().ok_or_else(|| {
        let mut e = ApiError::queue_full(5);
        e.code = Some("too_many_sessions");
        e.message = format!(
            "The server has {} live sessions open, its limit; retry later.",
            state.config.max_sessions
        );
        e
    })
}

/// The route's query: `intent=transcription` (the only kind of session here); `model` names a
/// served model to start with (others, e.g. a conversation model, mean the default).
#[derive(serde::Deserialize)]
pub(super) struct Query {
    intent: Option<String>,
    model: Option<String>,
}

/// `GET /v1/realtime`: a WebSocket upgrade, else a 400 in OpenAI's shape.
pub(super) async fn handler(
    State(state): State<Arc<AppState>>,
    request_id: Extension<RequestId>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<Query>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return super::stream_ws::not_websocket(e).into_response(),
    };
    let query = match query {
        Ok(q) => q.0,
        Err(e) => return ApiError::bad_request(None, e.body_text()).into_response(),
    };
    if let Some(intent) = query.intent.as_deref().filter(|i| *i != "transcription") {
        return ApiError::bad_request(
            Some("intent"),
            format!("Only transcription sessions are served here (intent=transcription), not \"{intent}\"."),
        )
        .into_response();
    }
    let beta = headers
        .get("openai-beta")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("realtime=v1"));
    upgrade(state, ws, request_id.0 .0, beta, query.model)
        .unwrap_or_else(IntoResponse::into_response)
}

/// 429 before the upgrade when `--max-sessions` are open.
fn upgrade(
    state: Arc<AppState>,
    ws: WebSocketUpgrade,
    session_id: String,
    beta: bool,
    model: Option<String>,
) -> Result<Response, ApiError> {
    let slot = open_session(&state)?;
    Ok(ws
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let span = tracing::info_span!("realtime", request_id = %session_id);
            tracing::Instrument::instrument(
                async move {
                    let mut session = Session::new(state, session_id, beta, model);
                    session.run(socket).await;
                    drop(slot);
                },
                span,
            )
        }))
}

/// The settings of a transcription session.
#[derive(Clone)]
struct Settings {
    model: ModelInfo,
    /// The name the client asked for (echoed back).
    model_name: String,
    language: Option<String>,
    prompt: Option<String>,
    sample_rate: u32,
}

struct Session {
    state: Arc<AppState>,
    id: String,
    /// `OpenAI-Beta: realtime=v1`: the `transcription_session.*` event names.
    beta: bool,
    settings: Option<Settings>,
    next_event: u64,
    next_item: u64,
    /// The item receiving audio, and its stream (started by its first append).
    item_id: String,
    previous_item: Option<String>,
    live: Option<(Live, PcmFrames)>,
    /// The `model` of the URL.
    url_model: Option<String>,
}

impl Session {
    fn new(state: Arc<AppState>, id: String, beta: bool, url_model: Option<String>) -> Self {
        let mut s = Session {
            state,
            id,
            beta,
            settings: None,
            next_event: 0,
            next_item: 0,
            item_id: String::new(),
            previous_item: None,
            live: None,
            url_model,
        };
        s.item_id = s.new_item_id();
        s
    }

    fn new_item_id(&mut self) -> String {
        self.next_item += 1;
        format!("item_{}_{}", self.id, self.next_item)
    }

    fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("event_{}_{}", self.id, self.next_event)
    }

    async fn run(&mut self, mut socket: WebSocket) {
        tracing::info!("realtime session open");
        match self.serve(&mut socket).await {
            Ok(true) => close(&mut socket, CLOSE_NORMAL, "").await,
            Ok(false) => tracing::info!("client went away; session cancelled"),
            Err(refusal) => {
                tracing::info!("realtime session closed: {}", refusal.error.message);
                let event = self.error_event(&refusal.error, None);
                let _ = socket.send(Message::Text(event.to_string().into())).await;
                close(
                    &mut socket,
                    refusal.close,
                    &short_reason(&refusal.error.message),
                )
                .await;
            }
        }
    }

    fn error_event(&mut self, error: &ApiError, client_event: Option<&str>) -> Value {
        let mut body = error_body(error);
        body["event_id"] = json!(client_event);
        json!({"type": "error", "event_id": self.event_id(), "error": body})
    }

    /// `session.<what>` (`transcription_session.<what>` in the beta interface) with the session
    /// as it now is.
    fn session_event(&mut self, what: &str) -> Value {
        let kind = if self.beta {
            format!("transcription_session.{what}")
        } else {
            format!("session.{what}")
        };
        json!({"type": kind, "event_id": self.event_id(), "session": self.session_object()})
    }

    /// The session until the client leaves (`Ok(false)`), or a refusal that ends it.
    async fn serve(&mut self, socket: &mut WebSocket) -> Result<bool, Refusal> {
        let settings = self
            .default_settings()
            .map_err(|e| Refusal::new(CLOSE_POLICY, e))?;
        self.settings = Some(settings);
        let event = self.session_event("created");
        if !send(socket, &event).await {
            return Ok(false);
        }
        let idle = self.state.config.stream_idle_timeout;
        let mut last_message = Instant::now();
        let stopped = self.state.sessions.stopped();
        tokio::pin!(stopped);
        loop {
            let stepping = self.live.as_ref().is_some_and(|(l, _)| l.stepping());
            let wants_audio = self.live.as_ref().is_none_or(|(l, _)| l.wants_audio());
            tokio::select! {
                _ = &mut stopped => return Err(super::stream_ws::shutting_down()),
                events = async { self.live.as_mut().unwrap().0.step_done().await }, if stepping => {
                    let events = events.map_err(step_failed)?;
                    if !self.send_deltas(socket, &events).await {
                        return Ok(false);
                    }
                }
                _ = tokio::time::sleep_until(last_message + idle), if wants_audio => {
                    return Err(Refusal::new(CLOSE_POLICY, ApiError::bad_request(None, format!(
                        "No message for {} s: the session is closed.", idle.as_secs()
                    ))));
                }
                message = socket.recv(), if wants_audio => {
                    last_message = Instant::now();
                    let text = match message {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(false),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => {
                            return Err(Refusal::new(super::stream_ws::CLOSE_UNSUPPORTED,
                                ApiError::bad_request(None,
                                    "Realtime events are JSON text messages; binary audio goes \
                                     base64 in input_audio_buffer.append.")));
                        }
                        Some(Ok(_)) => continue,
                    };
                    let event: Value = serde_json::from_str(&text).map_err(|e| {
                        Refusal::new(super::stream_ws::CLOSE_UNSUPPORTED,
                            ApiError::bad_request(None, format!("An event must be a JSON object: {e}")))
                    })?;
                    if !self.handle(socket, &event).await? {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// One client event; `Ok(false)` when the client is gone. Events the server does not
    /// take get an `error` event and the session goes on (as OpenAI's does).
    async fn handle(&mut self, socket: &mut WebSocket, event: &Value) -> Result<bool, Refusal> {
        let kind = event["type"].as_str().unwrap_or("");
        let client_event = event["event_id"].as_str().map(str::to_string);
        let outcome = match kind {
            "transcription_session.update" | "session.update" => {
                self.update(socket, kind, &event["session"]).await
            }
            "input_audio_buffer.append" => self.append(event),
            "input_audio_buffer.commit" => return self.commit(socket, client_event).await,
            "input_audio_buffer.clear" => {
                // Drops the item's audio and its step in flight (cancelled with its job).
                self.live = None;
                self.item_id = self.new_item_id();
                let event = json!({"type": "input_audio_buffer.cleared", "event_id": self.event_id()});
                return Ok(send(socket, &event).await);
            }
            "" => Err(ApiError::bad_request(
                Some("type"),
                "The event has no \"type\".",
            )),
            other => Err(ApiError::bad_request(
                Some("type"),
                format!(
                    "Unsupported event \"{other}\": this server takes transcription_session.update, \
                     session.update and input_audio_buffer.append/commit/clear."
                ),
            )),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(e) => {
                let event = self.error_event(&e, client_event.as_deref());
                Ok(send(socket, &event).await)
            }
        }
    }

    fn default_settings(&self) -> Result<Settings, ApiError> {
        let asked = self.url_model.as_deref();
        let (model, model_name) = match asked.map(|m| resolve_model(&self.state, Some(m))) {
            Some(Ok(model)) => (model, asked.unwrap_or_default().to_string()),
            _ => (resolve_model(&self.state, None)?, "whisper-1".to_string()),
        };
        Ok(Settings {
            model_name,
            model,
            language: self.state.config.options.decode.language.clone(),
            prompt: None,
            sample_rate: REALTIME_RATE,
        })
    }

    /// `transcription_session.update` (the beta shape: `input_audio_format`,
    /// `input_audio_transcription`, `turn_detection`) or `session.update` (also the GA shape:
    /// `audio.input.{format, transcription, turn_detection}`). Takes effect from the next item
    /// when the current one has audio already.
    async fn update(
        &mut self,
        socket: &mut WebSocket,
        kind: &str,
        session: &Value,
    ) -> Result<(), ApiError> {
        let mut next = self
            .settings
            .clone()
            .expect("settings are set at the start");
        let input = &session["audio"]["input"];
        let transcription = if session["input_audio_transcription"].is_object() {
            &session["input_audio_transcription"]
        } else {
            &input["transcription"]
        };
        if let Some(name) = transcription["model"].as_str() {
            next.model = resolve_model(&self.state, Some(name))?;
            next.model_name = name.to_string();
        }
        if let Some(lang) = transcription["language"].as_str() {
            next.language = if lang.is_empty() {
                None
            } else {
                Some(language_code(lang, &next.model)?)
            };
        }
        if let Some(prompt) = transcription["prompt"].as_str() {
            next.prompt = (!prompt.trim().is_empty()).then(|| prompt.to_string());
        }
        if let Some(format) = session["input_audio_format"].as_str() {
            if format != "pcm16" {
                return Err(ApiError::bad_request(
                    Some("session.input_audio_format"),
                    format!(
                        "Unsupported input_audio_format \"{format}\" (this server takes pcm16)."
                    ),
                ));
            }
            next.sample_rate = REALTIME_RATE;
        }
        if input["format"].is_object() {
            let ty = input["format"]["type"].as_str().unwrap_or("audio/pcm");
            if ty != "audio/pcm" {
                return Err(ApiError::bad_request(
                    Some("session.audio.input.format.type"),
                    format!("Unsupported audio format \"{ty}\" (this server takes audio/pcm)."),
                ));
            }
            next.sample_rate = input["format"]["rate"]
                .as_u64()
                .map_or(REALTIME_RATE, |r| r as u32);
            PcmFrames::new(RawEncoding::S16le, next.sample_rate)
                .map_err(|e| ApiError::bad_request(Some("session.audio.input.format.rate"), e))?;
        }
        let turn = if session.get("turn_detection").is_some() {
            &session["turn_detection"]
        } else {
            &input["turn_detection"]
        };
        if !turn.is_null() {
            return Err(ApiError::bad_request(
                Some("session.turn_detection"),
                "Server VAD turn detection is not supported here: set turn_detection to null and \
                 commit with input_audio_buffer.commit.",
            ));
        }
        self.settings = Some(next);
        // The event names and session shape follow the client's (beta or GA).
        self.beta = kind == "transcription_session.update";
        let event = self.session_event("updated");
        send(socket, &event).await;
        Ok(())
    }

    /// The session as the `created`/`updated` events show it.
    fn session_object(&self) -> Value {
        let s = self
            .settings
            .as_ref()
            .expect("settings are set at the start");
        let transcription = json!({
            "model": s.model_name,
            "language": s.language,
            "prompt": s.prompt.clone().unwrap_or_default(),
        });
        if self.beta {
            json!({
                "id": self.id,
                "object": "realtime.transcription_session",
                "client_secret": null,
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": null,
                "modalities": ["text"],
                "include": null,
            })
        } else {
            json!({
                "id": self.id,
                "object": "realtime.session",
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": s.sample_rate},
                    "transcription": transcription,
                    "turn_detection": null,
                    "noise_reduction": null,
                }},
                "include": null,
            })
        }
    }

    /// Base64 pcm16 into the current item's stream (started here on its first audio).
    fn append(&mut self, event: &Value) -> Result<(), ApiError> {
        let audio = event["audio"].as_str().ok_or_else(|| {
            ApiError::bad_request(Some("audio"), "input_audio_buffer.append needs \"audio\".")
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(audio)
            .map_err(|e| {
                ApiError::bad_request(Some("audio"), format!("audio is not base64: {e}"))
            })?;
        if self.live.is_none() {
            let s = self
                .settings
                .clone()
                .expect("settings are set at the start");
            let frames = PcmFrames::new(RawEncoding::S16le, s.sample_rate)
                .map_err(|e| ApiError::bad_request(None, e))?;
            let mut options = self.state.config.options.clone();
            options.decode.language = s.language.clone();
            let live = Live::new(
                self.state.clone(),
                format!("{}-{}", self.id, self.next_item),
                s.model,
                options,
                s.prompt,
                StreamConfig::default(),
                None,
            );
            self.live = Some((live, frames));
        }
        let (live, frames) = self.live.as_mut().expect("started above");
        let samples = frames
            .push(&bytes)
            .map_err(|e| ApiError::bad_request(Some("audio"), e))?;
        live.push(&samples);
        Ok(())
    }

    /// `input_audio_buffer.commit`: the item ends; `committed`, `conversation.item.created`,
    /// its last deltas, `completed`. A client that leaves meanwhile cancels the last step.
    async fn commit(
        &mut self,
        socket: &mut WebSocket,
        client_event: Option<String>,
    ) -> Result<bool, Refusal> {
        let Some((mut live, mut frames)) = self.live.take() else {
            let e = ApiError {
                code: Some("input_audio_buffer_commit_empty"),
                ..ApiError::bad_request(None, "The input audio buffer is empty: nothing to commit.")
            };
            let event = self.error_event(&e, client_event.as_deref());
            return Ok(send(socket, &event).await);
        };
        let next_item = self.new_item_id();
        let item_id = std::mem::replace(&mut self.item_id, next_item);
        let previous = self.previous_item.replace(item_id.clone());
        let committed = json!({
            "type": "input_audio_buffer.committed", "event_id": self.event_id(),
            "item_id": item_id, "previous_item_id": previous,
        });
        let created = json!({
            "type": "conversation.item.created", "event_id": self.event_id(),
            "previous_item_id": previous,
            "item": {"id": item_id, "object": "realtime.item", "type": "message",
                     "status": "completed", "role": "user",
                     "content": [{"type": "input_audio", "transcript": null}]},
        });
        if !send(socket, &committed).await || !send(socket, &created).await {
            return Ok(false);
        }
        let tail = frames
            .finish()
            .map_err(|e| Refusal::new(CLOSE_POLICY, ApiError::bad_request(None, e)))?;
        live.push(&tail);
        let seconds = live.received_s();
        let events = tokio::select! {
            events = live.finish() => events.map_err(step_failed)?,
            _ = super::stream_ws::client_gone(socket) => return Ok(false),
        };
        // The deltas of this item (its id: `live` was taken out of `self`).
        let current = std::mem::replace(&mut self.item_id, item_id.clone());
        let sent = self.send_deltas(socket, &events).await;
        self.item_id = current;
        if !sent {
            return Ok(false);
        }
        let transcript = events.iter().rev().find_map(|e| match e {
            StreamEvent::Done { text } => Some(text.clone()),
            _ => None,
        });
        let completed = json!({
            "type": "conversation.item.input_audio_transcription.completed",
            "event_id": self.event_id(), "item_id": item_id, "content_index": 0,
            "transcript": transcript.unwrap_or_default(),
            "usage": {"type": "duration", "seconds": seconds},
        });
        Ok(send(socket, &completed).await)
    }

    /// Committed text as `delta` events of the current item (partials are not sent: a delta
    /// is never taken back).
    async fn send_deltas(&mut self, socket: &mut WebSocket, events: &[StreamEvent]) -> bool {
        for e in events {
            if let StreamEvent::Committed { text, .. } = e {
                let event = json!({
                    "type": "conversation.item.input_audio_transcription.delta",
                    "event_id": self.event_id(), "item_id": self.item_id,
                    "content_index": 0, "delta": text,
                });
                if !send(socket, &event).await {
                    return false;
                }
            }
        }
        true
    }
}

fn step_failed(e: crate::error::Error) -> Refusal {
    tracing::warn!("realtime step failed: {e}");
    Refusal::new(super::stream_ws::CLOSE_INTERNAL, ApiError::from(e))
}

async fn send(socket: &mut WebSocket, event: &Value) -> bool {
    socket
        .send(Message::Text(event.to_string().into()))
        .await
        .is_ok()
}
