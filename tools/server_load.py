#!/usr/bin/env python3
"""A bounded load run against `dattavani-asr serve` on loopback (stdlib only).

    python3 tools/server_load.py URL [--clips DIR_OR_FILE,...] [--concurrency 1,4,8,16]
                                     [--requests-per-level 2] [--long-minutes 10]
                                     [--soak 1000 --soak-minutes 10 --pid PID] [--api-key K]

Table: for each concurrency C, C client threads send `requests-per-level x C` transcriptions
(at least 8) of real short clips (one 30-s window each; by default every WAV of at most 30 s
under tests/data/speech), round robin, each thread sending its next request when the previous
one is answered. Columns: requests/s, seconds of audio transcribed per second, latency
p50/p95/p99, failed (an HTTP error status), lost (no HTTP answer at all: reset, timeout) and
wrong (text other than that clip's transcript at concurrency 1: the server promises the same
tokens however requests are batched).

`--long-minutes M`: a 5-s clip's latency idle (median of 3), then while an M-minute file is
being transcribed (three submissions, spread over the long file's run), and the ratio. The long
file is real speech: the clips concatenated (the `wave` module) into a file under /tmp, not kept
in the repository.

`--soak N --soak-minutes T`: N requests spread evenly over T minutes (at most 8 in flight; a
request due while 8 are in flight waits, so a server slower than N/T requests per second makes
the run longer), recording the server's resident memory (VmRSS of `--pid`) at start, middle and
end. Only loopback URLs are accepted.
"""
import argparse
import concurrent.futures as cf
import glob
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import wave

MAX_CLIP_SECONDS = 30.0


def post(url, audio, fields=(), key=None, timeout=1800):
    """(status or None when no HTTP answer came, seconds, body)."""
    boundary = uuid.uuid4().hex
    parts = []
    for k, v in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + audio + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url + "/v1/audio/transcriptions", data=b"".join(parts),
                                 method="POST", headers=headers)
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, time.monotonic() - start, r.read()
    except urllib.error.HTTPError as e:
        return e.code, time.monotonic() - start, e.read()
    except (OSError, urllib.error.URLError):
        return None, time.monotonic() - start, b""


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def wav_seconds(path):
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def load_clips(spec):
    """(name, seconds, bytes) of the WAVs named; a directory gives its recordings of people
    (the `synth_*` text-to-speech clips left out)."""
    paths = []
    for item in spec.split(","):
        if os.path.isdir(item):
            paths += [p for p in sorted(glob.glob(os.path.join(item, "*.wav")))
                      if not os.path.basename(p).startswith("synth_")]
        else:
            paths.append(item)
    clips = []
    for p in paths:
        try:
            seconds = wav_seconds(p)
        except (wave.Error, EOFError):
            continue  # not a PCM WAV the wave module reads
        if seconds <= MAX_CLIP_SECONDS:
            with open(p, "rb") as f:
                clips.append((os.path.basename(p), seconds, f.read()))
    if not clips:
        sys.exit(f"no WAV clips of at most {MAX_CLIP_SECONDS:.0f} s in {spec}")
    return clips


def text_of(body):
    return json.loads(body)["text"]


def level(url, clips, concurrency, n, key, reference):
    """One row of the table: n requests, `concurrency` at a time (closed loop)."""
    latencies, failed, lost, wrong, audio = [], 0, 0, 0, 0.0
    lock = threading.Lock()
    next_index = iter(range(n))

    def client():
        nonlocal failed, lost, wrong, audio
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            name, seconds, data = clips[i % len(clips)]
            status, took, body = post(url, data, key=key)
            with lock:
                if status is None:
                    lost += 1
                elif status != 200:
                    failed += 1
                else:
                    latencies.append(took)
                    audio += seconds
                    text = text_of(body)
                    if reference.setdefault(name, text) != text:
                        wrong += 1

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - start
    print(f"| {concurrency} | {n} | {len(latencies) / wall:.2f} | {audio / wall:.1f} | "
          f"{pct(latencies, 50):.2f} | {pct(latencies, 95):.2f} | {pct(latencies, 99):.2f} | "
          f"{failed} | {lost} | {wrong} |", flush=True)


def make_long(clips_dir, minutes, path):
    """Recorded speech (the 16-kHz mono 16-bit WAVs of `clips_dir`, `synth_*` left out)
    concatenated to `minutes` minutes."""
    sources = []
    for p in sorted(glob.glob(os.path.join(clips_dir, "*.wav"))):
        if os.path.basename(p).startswith("synth_"):
            continue
        with wave.open(p) as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2):
                sources.append(p)
    target = int(minutes * 60 * 16000)
    written = 0
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        while written < target:
            for p in sources:
                with wave.open(p) as w:
                    frames = w.readframes(min(w.getnframes(), target - written))
                out.writeframes(frames)
                written += len(frames) // 2
                if written >= target:
                    break
    return written / 16000


def long_latency(url, clip, long_path, key):
    name, seconds, data = clip
    idle = statistics.median(post(url, data, key=key)[1] for _ in range(3))
    with open(long_path, "rb") as f:
        long_audio = f.read()
    result = {}

    def run_long():
        result["long"] = post(url, long_audio, key=key)

    t = threading.Thread(target=run_long)
    started = time.monotonic()
    t.start()
    busy = []
    # Spread over the long file's run: it is uploaded and decoded, then transcribed window by
    # window; each probe is sent only while it is still running.
    for wait in (5, 20, 40):
        while time.monotonic() - started < wait and t.is_alive():
            time.sleep(0.2)
        if not t.is_alive():
            break
        status, took, _ = post(url, data, key=key)
        busy.append((round(time.monotonic() - started, 1), status, took, t.is_alive()))
    t.join()
    long_status, long_took, _ = result["long"]
    print(f"{name} ({seconds:.1f} s) idle latency {idle:.2f} s (median of 3)")
    for at, status, took, alive in busy:
        print(f"  sent at {at:.1f} s into the long file: HTTP {status}, {took:.2f} s "
              f"= {took / idle:.2f}x idle (long file still running at the answer: {alive})")
    print(f"long file: {wav_seconds(long_path) / 60:.1f} min, HTTP {long_status}, {long_took:.1f} s")
    if busy:
        worst = max(b[2] for b in busy)
        print(f"worst ratio {worst / idle:.2f}x (target <= 2x)")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def soak(url, clips, n, minutes, pid, key):
    interval = minutes * 60 / n
    in_flight = threading.Semaphore(8)
    counts = {"ok": 0, "failed": 0, "lost": 0}
    latencies = []
    lock = threading.Lock()
    rss = [("start", 0, rss_kib(pid))]
    print(f"soak: {n} requests over {minutes} min (one every {interval:.2f} s), VmRSS of {pid}", flush=True)

    def one(i):
        try:
            _, _, data = clips[i % len(clips)]
            status, took, _ = post(url, data, key=key)
            with lock:
                if status is None:
                    counts["lost"] += 1
                elif status != 200:
                    counts["failed"] += 1
                else:
                    counts["ok"] += 1
                    latencies.append(took)
        finally:
            in_flight.release()

    start = time.monotonic()
    threads = []
    for i in range(n):
        due = start + i * interval
        time.sleep(max(0.0, due - time.monotonic()))
        in_flight.acquire()
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        if i == n // 2:
            rss.append(("middle", i, rss_kib(pid)))
    for t in threads:
        t.join()
    rss.append(("end", n, rss_kib(pid)))
    wall = time.monotonic() - start
    print(f"soak: {counts['ok']} ok, {counts['failed']} failed, {counts['lost']} lost in {wall / 60:.1f} min; "
          f"latency p50 {pct(latencies, 50):.2f} s, p99 {pct(latencies, 99):.2f} s")
    print("| when | requests sent | VmRSS MiB |")
    print("|---|---|---|")
    for when, sent, kib in rss:
        print(f"| {when} | {sent} | {kib / 1024:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--clips", default="tests/data/speech",
                    help="WAV files or directories (comma-separated); clips over 30 s are left out")
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--requests-per-level", type=int, default=2,
                    help="requests per client thread at each concurrency (at least 8 in all)")
    ap.add_argument("--long-minutes", type=float, help="measure the short-clip latency during a long file")
    ap.add_argument("--long-clip", default="tests/data/speech/ps_librivox_0890.wav",
                    help="the short clip of --long-minutes (5.3 s)")
    ap.add_argument("--long-file", default="/tmp/dattavani-long.wav")
    ap.add_argument("--long-sources", default="tests/data/speech",
                    help="the directory whose recordings make up the long file")
    ap.add_argument("--soak", type=int, metavar="N", help="N requests spread over --soak-minutes")
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--pid", type=int, help="the server's process id (for --soak's VmRSS)")
    ap.add_argument("--api-key")
    a = ap.parse_args()
    host = urllib.parse.urlparse(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback URLs only")
    clips = load_clips(a.clips)
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().strip()}")
    if a.concurrency:
        print(f"{len(clips)} clips of at most {MAX_CLIP_SECONDS:.0f} s, "
              f"{sum(c[1] for c in clips):.1f} s in all, round robin")
        print("| concurrency | requests | req/s | audio s/s | p50 s | p95 s | p99 s | failed | lost | wrong |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        reference = {}
        for c in [int(x) for x in a.concurrency.split(",") if x]:
            level(a.url, clips, c, max(8, c * a.requests_per_level), a.api_key, reference)
    if a.long_minutes:
        seconds = make_long(a.long_sources, a.long_minutes, a.long_file)
        print(f"long file {a.long_file}: {seconds / 60:.1f} min of the clips concatenated")
        clip = load_clips(a.long_clip)[0]
        long_latency(a.url, clip, a.long_file, a.api_key)
    if a.soak:
        if not a.pid:
            sys.exit("--soak needs --pid (the server's process id)")
        soak(a.url, clips, a.soak, a.soak_minutes, a.pid, a.api_key)
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().strip()}")


if __name__ == "__main__":
    main()
