//! An OpenAI-compatible transcription server (`dattavani-asr serve`): OpenAI's audio API as its
//! official clients send and parse it, over axum, with one worker thread per device that steps
//! the 30-s windows of every active request together (`worker`).
//!
//! Routes: `POST /v1/audio/transcriptions` and `/v1/audio/translations` (also without `/v1`),
//! `GET /v1/models`, `/v1/models/{id}`, `/health`, `/ready`, `/metrics`, `/openapi.json`, and
//! the live WebSockets `/v1/audio/stream` (`stream_ws`) and `/v1/realtime` (`realtime`).
//! Errors are always `{"error": {"message", "type", "param", "code"}}`.

mod error;
mod live;
mod metrics;
mod models;
mod openapi;
mod places;
mod realtime;
mod respond;
mod routes;
mod stream_ws;
mod upload;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use self::error::ApiError;
use crate::error::{Error, Result};
use crate::transcribe::{Device, TranscribeOptions};

/// What `serve` takes; [`ServerConfig::new`] has the command line's defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Served models (alias, repo id or directory); the first is the default, and what
    /// `whisper-1` maps to. Loaded at start, on every device.
    pub models: Vec<String>,
    /// Most models a worker holds at once, `models` included: past those, a request may name
    /// any checkpoint in the local model cache, loaded on demand (the least recently used
    /// evicted). `models.len()` turns on-demand loading off.
    pub max_models: usize,
    /// One worker per device.
    pub devices: Vec<Device>,
    /// Required as `Authorization: Bearer KEY` when set.
    pub api_key: Option<String>,
    /// Request bodies past this many bytes are refused with 413 while they stream in.
    pub max_upload_bytes: u64,
    /// Requests that may wait beyond those being transcribed (`devices x max_batch`); past
    /// that, 429 with `Retry-After`.
    pub max_queue: usize,
    /// Windows of different requests decoded together in one scheduler step.
    pub max_batch: usize,
    /// A request not finished after this long is cancelled and answered 504.
    pub request_timeout: Option<Duration>,
    /// After SIGTERM/SIGINT: how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// Decoding options before a request's fields (the CLI's defaults: beam 5, fallback).
    pub options: TranscribeOptions,
    /// Live sessions (`/v1/audio/stream`, `/v1/realtime`) open at once; past it, 429 before
    /// the WebSocket upgrade.
    pub max_sessions: usize,
    /// A live session with no message from its client for this long is closed (1008).
    pub stream_idle_timeout: Duration,
}

impl ServerConfig {
    pub fn new(models: Vec<String>) -> Self {
        ServerConfig {
            max_models: models.len() + 1,
            models,
            devices: vec![Device::Cpu],
            api_key: None,
            max_upload_bytes: 25 * 1024 * 1024,
            max_queue: 64,
            max_batch: 8,
            request_timeout: None,
            shutdown_grace: Duration::from_secs(30),
            options: TranscribeOptions::default(),
            max_sessions: 8,
            stream_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    config: ServerConfig,
    pool: Arc<worker::Pool>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    shutting_down: AtomicBool,
    next_request: AtomicU64,
    sessions: live::Sessions,
}

/// Bind `addr` (port 0: any free port) and serve until `shutdown` resolves (e.g.
/// [`shutdown_signal`]); `on_bound` hears the bound address first. Returns when in-flight
/// requests have finished (or the grace period ran out) and the workers have stopped.
pub async fn serve(
    config: ServerConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    on_bound(bound);
    serve_on(config, listener, shutdown).await
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if config.models.is_empty() || config.devices.is_empty() {
        return Err(Error::Usage(
            "serve needs at least one model and one device".into(),
        ));
    }
    let metrics = metrics::install();
    let pool = worker::Pool::start(
        &config.models,
        &config.devices,
        config.max_batch,
        config.max_queue,
        config.max_models,
    );
    let grace = config.shutdown_grace;
    let sessions = live::Sessions::new(config.max_sessions);
    let state = Arc::new(AppState {
        sessions,
        config,
        pool: pool.clone(),
        metrics,
        shutting_down: AtomicBool::new(false),
        next_request: AtomicU64::new(1),
    });
    let app = routes::router(state.clone());

    // Stop on the caller's signal, or when a worker could not load its models.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = signal_tx.send(true);
    });
    let watch_pool = pool.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if watch_pool.load_error().is_some() {
                let _ = stop_tx.send(true);
                return;
            }
            if stop_tx.is_closed() || *stop_tx.borrow() {
                return;
            }
        }
    });
    let mut graceful_rx = stop_rx.clone();
    let graceful_state = state.clone();
    let server = serve_connections(listener, app, async move {
        let _ = graceful_rx.wait_for(|stop| *stop).await;
        graceful_state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        graceful_state.sessions.stop();
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
    });
    let mut server = tokio::spawn(server);
    let mut stop_rx = stop_rx;
    tokio::select! {
        r = &mut server => {
            r.map_err(|e| Error::Internal(format!("server task: {e}")))?;
        }
        _ = stop_rx.wait_for(|stop| *stop) => {
            match tokio::time::timeout(grace, &mut server).await {
                Ok(r) => {
                    r.map_err(|e| Error::Internal(format!("server task: {e}")))?;
                }
                Err(_) => {
                    tracing::warn!("grace period of {} s over; requests still open are dropped", grace.as_secs());
                    server.abort();
                }
            }
        }
    }
    let stopping = pool.clone();
    tokio::task::spawn_blocking(move || stopping.shutdown())
        .await
        .map_err(|e| Error::Internal(format!("worker shutdown: {e}")))?;
    match pool.load_error() {
        Some(e) => Err(Error::Usage(format!("serve: {e}"))),
        None => Ok(()),
    }
}

/// Most header lines a request may have; past it, a 431 in OpenAI's shape
/// ([`ApiError::too_many_headers`]). Hyper's own default limit.
pub(crate) const MAX_HEADER_LINES: usize = 100;

/// Header lines hyper parses before answering a bare 431 itself: far above
/// [`MAX_HEADER_LINES`], so that a request with too many gets our answer (unless its head also
/// passes hyper's ~400-KB buffer, or this many lines: then hyper's bare 431 it is).
const PARSED_HEADER_LINES: usize = 16_384;

/// `axum::serve` with graceful shutdown, on hyper's HTTP/1 connection builder so that the
/// header-line limit is ours: accept connections until `signal` resolves, then stop accepting,
/// let every connection finish its request in progress (idle keep-alive ones close) and
/// return when all have. WebSocket upgrades are served (the upgraded socket then belongs to
/// its session, which `signal`'s side stops). Written by hand because hyper-util 0.1's
/// `GracefulShutdown` does not take http1's `UpgradeableConnection` (WebSockets need it).
async fn serve_connections(
    listener: TcpListener,
    app: axum::Router,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    // Connection tasks hold a receiver each; `closed()` on the sender is "all have ended".
    let (close_tx, close_rx) = tokio::sync::watch::channel(());
    // Dropped when `signal` resolves: every connection task then shuts down gracefully.
    let (signal_tx, signal_rx) = tokio::sync::watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(signal_rx);
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_headers(PARSED_HEADER_LINES);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = signal_tx.closed() => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, as axum::serve does.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let (signal_tx, close_rx) = (signal_tx.clone(), close_rx.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut stopping = std::pin::pin!(signal_tx.closed());
            let mut told = false;
            loop {
                tokio::select! {
                    r = connection.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!("connection: {e}");
                        }
                        break;
                    }
                    _ = &mut stopping, if !told => {
                        told = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
