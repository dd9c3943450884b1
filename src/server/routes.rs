//! The HTTP side: routes, the per-request middleware (request id, API key, metrics), and the
//! transcription handler that spools, decodes, queues and answers.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::error::ApiError;
use super::respond::{self, Shape};
use super::upload::{self, Form};
use super::worker::{Job, JobEvent, ModelInfo, StepSlot};
use super::{metrics as m, models, AppState};
use crate::audio::{OpenOptions, SpooledMel};
use crate::decode::CancelHandle;
use crate::error::Error;
use crate::tokenizer::{Task, LANGUAGES};
use crate::transcribe::TranscribeOptions;

type Shared = Arc<AppState>;

/// Model names OpenAI's clients send that mean "the default model" here.
const DEFAULT_ALIASES: [&str; 3] = ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"];

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/audio/transcriptions", audio_endpoint(Task::Transcribe))
        .route("/audio/transcriptions", audio_endpoint(Task::Transcribe))
        .route("/v1/audio/translations", audio_endpoint(Task::Translate))
        .route("/audio/translations", audio_endpoint(Task::Translate))
        .route("/v1/models", get(list_models))
        .route("/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .route("/models/{id}", get(get_model))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/audio/stream", get(super::stream_ws::handler))
        .route("/audio/stream", get(super::stream_ws::handler))
        .route("/v1/realtime", get(super::realtime::handler))
        .route("/realtime", get(super::realtime::handler))
        .fallback(fallback)
        // The upload limit is ours, checked as the body streams (upload.rs), in OpenAI's shape.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            around_request,
        ))
        .with_state(state)
}

/// Request id (the client's `x-request-id` or a new one) echoed and on every log line, too
/// many header lines refused (431), the API key where one is set, and the request counted by
/// route and status.
async fn around_request(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "req-{:x}-{}",
                std::process::id(),
                state.next_request.fetch_add(1, Ordering::Relaxed)
            )
        });
    let span = tracing::info_span!("request", request_id = %request_id);
    let open = matches!(
        route.as_str(),
        "/health" | "/ready" | "/metrics" | "/openapi.json"
    );
    let header_lines = request.headers().len();
    let mut response = if header_lines > super::MAX_HEADER_LINES {
        ApiError::too_many_headers(header_lines, super::MAX_HEADER_LINES).into_response()
    } else if !open && !authorized(&state, request.headers()) {
        ApiError::unauthorized().into_response()
    } else {
        let mut request = request;
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        next.run(request).instrument(span.clone()).await
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let status = response.status().as_u16();
    m::request(&route, status, start.elapsed().as_secs_f64());
    span.in_scope(|| tracing::debug!("{route} -> {status}"));
    response
}

#[derive(Clone)]
pub(super) struct RequestId(pub(super) String);

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = &state.config.api_key else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == key)
}

async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): State<Shared>) -> Response {
    if state.pool.is_ready() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        ApiError::loading().into_response()
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::internal("metrics are recorded by another recorder in this process")
            .into_response(),
    }
}

async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document())
}

fn model_object(id: &str) -> serde_json::Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": "dattavani-asr" })
}

/// The served models, OpenAI's names for the default, then the OpenAI checkpoints of the
/// model cache that would load on demand.
async fn list_models(State(state): State<Shared>) -> Response {
    let mut ids: Vec<String> = state.config.models.clone();
    ids.extend(DEFAULT_ALIASES.iter().map(|m| m.to_string()));
    if loads_on_demand(&state) {
        for alias in models::cached_aliases() {
            if !ids.contains(&alias) {
                ids.push(alias);
            }
        }
    }
    let data: Vec<serde_json::Value> = ids.iter().map(|m| model_object(m)).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn get_model(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    if DEFAULT_ALIASES.contains(&id.as_str())
        || state.config.models.contains(&id)
        || (loads_on_demand(&state) && models::cached_info(&id).is_some())
    {
        Json(model_object(&id)).into_response()
    } else {
        ApiError::model_not_found(&id).into_response()
    }
}

fn loads_on_demand(state: &AppState) -> bool {
    state.config.max_models > state.config.models.len()
}

/// The handler of an audio endpoint: both take the same form and differ only in the task.
fn audio_endpoint(task: Task) -> axum::routing::MethodRouter<Shared> {
    post(
        move |State(state): State<Shared>,
              request_id: axum::Extension<RequestId>,
              multipart: Result<Multipart, MultipartRejection>| async move {
            handle(state, task, request_id.0 .0, multipart)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        },
    )
}

/// Cancels the job when the handler (or its event stream) is dropped: the client went away.
/// A step of the job alone in progress is interrupted at once.
pub(super) struct CancelOnDrop {
    pub(super) cancel: CancelHandle,
    pub(super) request_id: String,
    pub(super) step: Arc<StepSlot>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.step.interrupt_for(&self.request_id);
    }
}

async fn handle(
    state: Shared,
    task: Task,
    request_id: String,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::shutting_down());
    }
    if !state.pool.is_ready() {
        return Err(ApiError::loading());
    }
    let multipart = multipart.map_err(|e| {
        ApiError::bad_request(
            None,
            format!("Expected a multipart/form-data body: {}", e.body_text()),
        )
    })?;
    let limit = state.config.max_upload_bytes;
    let form = upload::read_form(multipart, limit).await?;
    let model = resolve_model(&state, form.model.as_deref())?;
    let options = request_options(&state.config.options, &form, &model, task)?;
    let admission = state
        .pool
        .admit()
        .ok_or_else(|| ApiError::queue_full(retry_after(&state)))?;

    // Decode the upload into a spooled mel off the async threads; bad audio is a 400 here,
    // before the job takes a place on a worker.
    let Form {
        file, file_name, ..
    } = form;
    let n_mels = model.n_mels;
    let name = file_name.clone();
    let mel = tokio::task::spawn_blocking(move || {
        let mel = SpooledMel::open(file.path(), &OpenOptions::default(), n_mels);
        drop(file);
        mel
    })
    .await
    .map_err(|e| ApiError::internal(format!("decoder task: {e}")))?
    .map_err(|e| match e {
        Error::Audio { msg, .. } => ApiError::bad_request(Some("file"), format!("{name}: {msg}")),
        other => ApiError::from(other),
    })?;
    if mel.n_samples() == 0 {
        return Err(ApiError::bad_request(
            Some("file"),
            format!("{file_name}: the audio holds no samples."),
        ));
    }
    tracing::info!(
        "{file_name}: {:.1} s of audio, model {}, {} bytes",
        mel.duration(),
        model.name,
        form.file_bytes
    );

    let (events_tx, events) = mpsc::unbounded_channel();
    let cancel = CancelHandle::new();
    let step = state
        .pool
        .submit(Job {
            request_id: request_id.clone(),
            model: model.name.clone(),
            options,
            mel,
            events: events_tx,
            cancel: cancel.clone(),
            keep_tails: false,
        })
        .map_err(ApiError::from)?;
    let guard = CancelOnDrop {
        cancel,
        request_id,
        step,
    };
    let shape = Shape {
        format: form.response_format,
        task,
        words: form.words,
        segments: form.segments,
    };
    if form.stream {
        return Ok(sse(events, guard, admission).into_response());
    }
    let wait = collect(events);
    let outcome = match state.config.request_timeout {
        Some(limit) => tokio::time::timeout(limit, wait)
            .await
            .map_err(|_| ApiError::timeout(limit.as_secs()))?,
        None => wait.await,
    };
    drop(admission);
    drop(guard);
    let transcript = outcome?;
    Ok(respond::render(&transcript, &shape))
}

/// The job's final transcript (segments arrive first and are already in it).
async fn collect(
    mut events: mpsc::UnboundedReceiver<JobEvent>,
) -> Result<crate::transcribe::Transcript, ApiError> {
    while let Some(event) = events.recv().await {
        match event {
            JobEvent::Segment(_) => {}
            JobEvent::Done(t) => return Ok(t),
            JobEvent::Failed(e) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::internal("the worker dropped the request"))
}

/// `stream=true`: one `transcript.text.delta` per final segment, then `transcript.text.done`
/// with the joined deltas; a failure is an `error` event.
fn sse(
    events: mpsc::UnboundedReceiver<JobEvent>,
    guard: CancelOnDrop,
    admission: super::worker::Admission,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct St {
        events: mpsc::UnboundedReceiver<JobEvent>,
        joined: String,
        finished: bool,
        _guard: CancelOnDrop,
        _admission: super::worker::Admission,
    }
    let st = St {
        events,
        joined: String::new(),
        finished: false,
        _guard: guard,
        _admission: admission,
    };
    let stream = stream::unfold(st, |mut st| async move {
        if st.finished {
            return None;
        }
        let event = match st.events.recv().await {
            Some(JobEvent::Segment(s)) => {
                // The first delta without its leading space, so the joined text reads as
                // OpenAI's `text`.
                let delta = if st.joined.is_empty() {
                    s.text.trim_start().to_string()
                } else {
                    s.text.clone()
                };
                st.joined.push_str(&delta);
                Event::default().data(respond::delta_event(&delta).to_string())
            }
            Some(JobEvent::Done(_)) => {
                st.finished = true;
                let text = st.joined.trim_end().to_string();
                Event::default().data(respond::done_event(&text).to_string())
            }
            Some(JobEvent::Failed(e)) => {
                st.finished = true;
                Event::default()
                    .event("error")
                    .data(ApiError::from(e).body().to_string())
            }
            None => return None,
        };
        Some((Ok(event), st))
    });
    Sse::new(stream)
}

/// `model`: absent or an OpenAI name means the default (the first `--model`); a served name
/// means itself; a checkpoint of the local cache is loaded on demand (when `--max-models`
/// leaves room); anything else is a 404 (a request never fetches a model).
pub(super) fn resolve_model(state: &AppState, asked: Option<&str>) -> Result<ModelInfo, ApiError> {
    let served = state.pool.models();
    let default = served.first().cloned().ok_or_else(ApiError::loading)?;
    match asked {
        None | Some("") => Ok(default),
        Some(a) if DEFAULT_ALIASES.contains(&a) => Ok(default),
        Some(a) => {
            if let Some(m) = served.iter().find(|m| m.name == a) {
                return Ok(m.clone());
            }
            let cached = loads_on_demand(state)
                .then(|| models::cached_info(a))
                .flatten()
                .ok_or_else(|| ApiError::model_not_found(a))?;
            // A served model asked for by another of its names (`openai/whisper-tiny.en`).
            Ok(served
                .into_iter()
                .find(|m| m.name == cached.name)
                .unwrap_or(cached))
        }
    }
}

/// The server's decoding options with the request's fields applied.
fn request_options(
    base: &TranscribeOptions,
    form: &Form,
    model: &ModelInfo,
    task: Task,
) -> Result<TranscribeOptions, ApiError> {
    let mut options = base.clone();
    if let Some(lang) = &form.language {
        options.decode.language = Some(language_code(lang, model)?);
    }
    if task == Task::Translate && !model.multilingual {
        return Err(ApiError::bad_request(
            Some("model"),
            format!(
                "The model {} is English-only and cannot translate.",
                model.name
            ),
        ));
    }
    options.decode.task = task;
    options.initial_prompt = form.prompt.clone();
    if let Some(t) = form.temperature {
        // 0 keeps the fallback schedule from 0 (OpenAI: "automatically increase the
        // temperature"); above 0 it starts there.
        options.temperature = t;
    }
    options.word_timestamps = form.words;
    options
        .validate()
        .map_err(|e| ApiError::bad_request(None, e.to_string()))?;
    Ok(options)
}

/// A language (code or English name) as a code `model` can take.
pub(super) fn language_code(lang: &str, model: &ModelInfo) -> Result<String, ApiError> {
    let code = lang.to_ascii_lowercase();
    let known = LANGUAGES
        .iter()
        .find(|(c, name)| *c == code || *name == code)
        .map(|(c, _)| c.to_string());
    let Some(code) = known else {
        return Err(ApiError::bad_request(
            Some("language"),
            format!("Unsupported language '{lang}': expected an ISO-639-1 code such as 'en'."),
        ));
    };
    if !model.multilingual && code != "en" {
        return Err(ApiError::bad_request(
            Some("language"),
            format!(
                "The model {} is English-only; language '{code}' is not supported.",
                model.name
            ),
        ));
    }
    Ok(code)
}

/// Seconds a refused client should wait: about one window's time per queued request ahead.
fn retry_after(state: &AppState) -> u64 {
    let per_worker = state.config.max_queue / state.config.devices.len().max(1);
    (per_worker as u64).clamp(1, 30)
}
