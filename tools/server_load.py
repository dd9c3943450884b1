#!/usr/bin/env python3
"""A bounded load run against `dattavani-asr serve` on loopback (stdlib only).

    python3 tools/server_load.py URL [--clip samples/jfk.wav] [--requests 8] [--concurrency 1,4,8]
                                     [--long tests/data/speech/long_concat.wav]

For each concurrency: `--requests` transcriptions of the clip, that many at a time; prints
throughput (requests/s and audio s/s), latency p50/p95/p99 and failures. With `--long`: the
clip's idle latency, then its latency when submitted while the long file is being transcribed.
Only loopback URLs are accepted.
"""
import argparse
import concurrent.futures as cf
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid


def post(url, path, fields=()):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        audio = f.read()
    parts = []
    for k, v in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + audio + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(
        url + "/v1/audio/transcriptions", data=b"".join(parts), method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    start = time.monotonic()
    with urllib.request.urlopen(req, timeout=1800) as r:
        body = r.read()
        ok = r.status == 200
    return ok, time.monotonic() - start, body


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clip", default="samples/jfk.wav")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--long")
    a = ap.parse_args()
    host = urllib.parse.urlparse(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback URLs only")
    clip_seconds = None
    print("| concurrency | requests | failed | req/s | audio s/s | p50 s | p95 s | p99 s |")
    print("|---|---|---|---|---|---|---|---|")
    for c in [int(x) for x in a.concurrency.split(",")]:
        latencies, failed = [], 0
        start = time.monotonic()
        with cf.ThreadPoolExecutor(c) as pool:
            for ok, seconds, body in pool.map(lambda _: post(a.url, a.clip, [("response_format", "verbose_json")]),
                                              range(a.requests)):
                if not ok:
                    failed += 1
                    continue
                latencies.append(seconds)
                if clip_seconds is None:
                    import json
                    clip_seconds = json.loads(body)["duration"]
        wall = time.monotonic() - start
        print(f"| {c} | {a.requests} | {failed} | {a.requests / wall:.2f} | "
              f"{a.requests * clip_seconds / wall:.1f} | {pct(latencies, 50):.2f} | "
              f"{pct(latencies, 95):.2f} | {pct(latencies, 99):.2f} |")
    if a.long:
        idle = statistics.median(post(a.url, a.clip)[1] for _ in range(3))
        result = {}

        def run_long():
            result["long"] = post(a.url, a.long)[1]

        t = threading.Thread(target=run_long)
        t.start()
        time.sleep(3)  # the long file is decoded and its first window is in progress
        busy = post(a.url, a.clip)[1]
        still_running = t.is_alive()
        t.join()
        print(f"short clip idle latency {idle:.2f} s; submitted during the long file {busy:.2f} s "
              f"({busy / idle:.2f}x; long file still running then: {still_running}; "
              f"long file took {result['long']:.1f} s)")


if __name__ == "__main__":
    main()
