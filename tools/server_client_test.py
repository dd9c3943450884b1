#!/usr/bin/env python3
"""The official `openai` Python client against `dattavani-asr serve` on loopback.

Run by tools/server_client_test.sh (which builds the binary and installs the pinned client
into its own venv under target/). Starts the server on a free port with tiny.en (the default)
and base, then checks every response format, both endpoints, word and segment granularities,
streaming, and the client's exception classes for 400/401/404/413/429; then the live endpoints:
a `websockets` client session on /v1/audio/stream, the official client's Realtime transcription
sessions (`client.beta.realtime.connect` and the GA `client.realtime.connect`) on /v1/realtime,
and a session past --max-sessions
refused with 429. Exits non-zero on the first failure; prints one line per check.
"""
import array
import base64
import json
import os
import sys
import threading
import warnings

import openai
import websockets
from websockets.sync.client import connect as ws_connect

import asr_server

# The client marks `audio.translations` deprecated; the endpoint is still OpenAI's API.
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JFK = os.path.join(ROOT, "samples", "jfk.wav")
LONG = os.path.join(ROOT, "tests", "data", "speech", "long_concat.wav")
KEY = "sk-local-test"


def start(*extra):
    proc, url = asr_server.start("--api-key", KEY, *extra)
    return proc, url, openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)


def realtime_transcription(conn, pcm24):
    """Sends `pcm24` (24 kHz PCM16) on a configured Realtime transcription session, 200 ms per
    append, commits, and reads events to the transcription's end: (the event types, the
    deltas, the `completed` event or None after an error)."""
    for i in range(0, len(pcm24), 9600):
        conn.input_audio_buffer.append(audio=base64.b64encode(pcm24[i:i + 9600]).decode())
    conn.input_audio_buffer.commit()
    kinds, deltas = [], []
    for event in conn:
        kinds.append(event.type)
        if event.type == "conversation.item.input_audio_transcription.delta":
            deltas.append(event.delta)
        elif event.type == "conversation.item.input_audio_transcription.completed":
            return kinds, deltas, event
        elif event.type == "error":
            break
    return kinds, deltas, None


def check(name, cond, detail=""):
    if not cond:
        sys.exit(f"FAIL {name}: {detail}")
    print(f"ok   {name}")


def expect(name, exc_class, fn):
    try:
        fn()
    except exc_class as e:
        check(name, True)
        return e
    except Exception as e:  # noqa: BLE001
        sys.exit(f"FAIL {name}: got {type(e).__name__}: {e}")
    sys.exit(f"FAIL {name}: no exception")


def pcm16(path, rate=16000):
    """A 16-kHz mono 16-bit WAV's samples as s16le bytes, linearly resampled to `rate`."""
    import wave

    with wave.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        samples = array.array("h", w.readframes(w.getnframes()))
    if rate != 16000:
        n = len(samples) * rate // 16000
        out = array.array("h", bytes(2 * n))
        for i in range(n):
            x = i * 16000 / rate
            j = int(x)
            a, b = samples[j], samples[min(j + 1, len(samples) - 1)]
            out[i] = int(a + (b - a) * (x - j))
        samples = out
    return samples.tobytes()


def live_checks(url):
    """A `websockets` session on /v1/audio/stream and the official Realtime client."""
    phrase = "ask not what your country can do for you"
    ws_url = "ws" + url[len("http"):]
    auth = {"Authorization": f"Bearer {KEY}"}
    pcm = pcm16(JFK)
    with ws_connect(ws_url + "/v1/audio/stream", additional_headers=auth) as ws:
        ws.send(json.dumps({"model": "whisper-1", "step_ms": 1000}))
        for i in range(0, len(pcm), 16000):  # half a second per frame
            ws.send(pcm[i:i + 16000])
        ws.send(json.dumps({"type": "end"}))
        events = [json.loads(m) for m in ws]  # until the server's close
        code = ws.close_code
    committed = "".join(e["text"] for e in events if e["type"] == "committed")
    done = events[-1] if events else {}
    check("websockets /v1/audio/stream", done.get("type") == "done" and committed == done["text"]
          and phrase in done["text"].lower() and code == 1000, (events, code))

    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0,
                           websocket_base_url=ws_url + "/v1")
    pcm24 = pcm16(JFK, 24000)
    with client.beta.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as conn:
        conn.transcription_session.update(session={
            "input_audio_format": "pcm16",
            "input_audio_transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": None})
        kinds, deltas, completed = realtime_transcription(conn, pcm24)
    check("openai realtime session", completed is not None and completed.transcript == "".join(deltas)
          and phrase in completed.transcript.lower(), (kinds, deltas, completed))
    check("realtime events", kinds[:2] == ["transcription_session.created", "transcription_session.updated"]
          and "input_audio_buffer.committed" in kinds, kinds)

    # The GA interface: `session.update` with a transcription session (ws:// from an http base URL).
    ga = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    with ga.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": None}}})
        kinds, deltas, completed = realtime_transcription(conn, pcm24)
    check("openai realtime session (GA interface)", completed is not None
          and completed.transcript == "".join(deltas) and phrase in completed.transcript.lower()
          and kinds[:2] == ["session.created", "session.updated"], (kinds, deltas, completed))


def main():
    proc, url, client = start("--model", "tiny.en", "--model", "base", "--max-upload-mb", "1")
    try:
        with open(JFK, "rb") as f:
            jfk = f.read()
        audio = ("jfk.wav", jfk)
        phrase = "ask not what your country can do for you"

        t = client.audio.transcriptions.create(model="whisper-1", file=audio)
        check("json", phrase in t.text.lower(), t.text)
        for fmt in ("text", "srt", "vtt"):
            r = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt)
            check(fmt, isinstance(r, str) and phrase in r.lower(), repr(r)[:200])
        check("srt cue", "00:00:00,000 --> " in client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="srt"))
        v = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json",
            timestamp_granularities=["word", "segment"])
        check("verbose_json", v.language == "english" and v.duration > 10 and phrase in v.text.lower(), v)
        check("verbose_json segments", len(v.segments) >= 1 and v.segments[0].end > v.segments[0].start)
        check("verbose_json words", len(v.words) >= 20 and v.words[0].word.strip() != "", v.words[:3])
        w = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json",
            timestamp_granularities=["word"])
        check("words only", w.words and not getattr(w, "segments", None))
        tr = client.audio.translations.create(model="base", file=audio)
        check("translation (base)", "country" in tr.text.lower(), tr.text)

        deltas, done = [], None
        for event in client.audio.transcriptions.create(model="whisper-1", file=audio, stream=True):
            if event.type == "transcript.text.delta":
                deltas.append(event.delta)
            elif event.type == "transcript.text.done":
                done = event.text
        check("stream", done is not None and done == "".join(deltas).rstrip() and phrase in done.lower(),
              (deltas, done))

        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        expect("401 AuthenticationError", openai.AuthenticationError,
               lambda: bad.audio.transcriptions.create(model="whisper-1", file=audio))
        expect("404 NotFoundError", openai.NotFoundError,
               lambda: client.audio.transcriptions.create(model="no-such-model", file=audio))
        expect("400 BadRequestError (garbage audio)", openai.BadRequestError,
               lambda: client.audio.transcriptions.create(model="whisper-1", file=("x.bin", bytes(range(256)) * 64)))
        expect("400 BadRequestError (temperature)", openai.BadRequestError,
               lambda: client.audio.transcriptions.create(model="whisper-1", file=audio, temperature=2))
        expect("400 BadRequestError (translate, English-only)", openai.BadRequestError,
               lambda: client.audio.translations.create(model="tiny.en", file=audio))
        e = expect("413 APIStatusError", openai.APIStatusError,
                   lambda: client.audio.transcriptions.create(model="whisper-1", file=("big.wav", b"\0" * (1024 * 1024 + 1))))
        check("413 status", e.status_code == 413, e.status_code)
        live_checks(url)
    finally:
        proc.terminate()
        check("graceful exit on SIGTERM", proc.wait(timeout=60) == 0)

    # 429: room for one request; a long streamed one holds it.
    proc, url, client = start("--max-batch", "1", "--max-queue", "0", "--max-upload-mb", "64",
                              "--max-sessions", "1")
    try:
        with open(LONG, "rb") as f:
            long_audio = ("long.wav", f.read())
        started = threading.Event()
        release = threading.Event()

        def hold():
            stream = client.audio.transcriptions.create(model="whisper-1", file=long_audio, stream=True)
            for _ in stream:
                started.set()
                break
            release.wait(timeout=300)
            # Disconnecting cancels the job on the server.
            stream.response.close()

        holder = threading.Thread(target=hold)
        holder.start()
        check("long request started", started.wait(timeout=300))
        e = expect("429 RateLimitError", openai.RateLimitError,
                   lambda: client.audio.transcriptions.create(model="whisper-1", file=audio))
        check("429 Retry-After", e.response.headers.get("retry-after") is not None)
        release.set()
        holder.join()
        # The disconnect freed the worker: the next request is served (within a few retries
        # while the cancelled job leaves).
        patient = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=8)
        t = patient.audio.transcriptions.create(model="whisper-1", file=audio)
        check("served after the disconnect", "ask not" in t.text.lower(), t.text)
        # One live session open: a second is refused with 429 before the upgrade.
        auth = {"Authorization": f"Bearer {KEY}"}
        ws_url = "ws" + url[len("http"):] + "/v1/audio/stream"
        with ws_connect(ws_url, additional_headers=auth):
            try:
                ws_connect(ws_url, additional_headers=auth).close()
                refused = None
            except websockets.exceptions.InvalidStatus as e:
                refused = e.response.status_code
            check("live session past --max-sessions: 429", refused == 429, refused)
    finally:
        proc.terminate()
        check("graceful exit on SIGTERM", proc.wait(timeout=120) == 0)
    print("all openai-client checks passed")


if __name__ == "__main__":
    main()
