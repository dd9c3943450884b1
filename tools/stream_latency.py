#!/usr/bin/env python3
"""Live-transcription latency and accuracy: `stream --simulate-realtime` on the long dev clips.

    python3 tools/stream_latency.py [--data DIR] [--clips N] [--model tiny.en] [--device cpu]
                                    [--step-ms 1000] [--threads 2] [--json] [FILE ...]

For each clip (default: the refs.tsv rows of kind 'real' longer than 30 s, longest last; --clips
N keeps the N shortest), runs the release binary's `stream --simulate-realtime --words` (the
file is read at 1x by its audio clock) and the offline `transcribe --beam-size 1` (greedy, the
CLI's other defaults), then reports:
- commit latency: for every committed word, `emitted_at` (seconds since the stream started)
  minus the word's end time; p50 / p95 / max over all words of all clips;
- final WER of the streamed `done` text and of the offline transcript against the reference,
  corpus-level over the clips, with a small English normaliser (case, punctuation, number
  words; a subset of Whisper's EnglishTextNormalizer, applied alike to both);
- real-time margin: the steps' compute time over the audio time (the `stream:` line on stderr),
  above 1 meaning the stream falls behind (it then catches up in longer steps).
Build first: `cargo build --release`. Targets (issue 16): p50 <= 1.5 s, p95 <= 3 s, WER within
1.5 points of offline. On a machine shared with other work, say its load (printed).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "dattavani-asr"
NUMBERS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10", "mr": "mister", "mrs": "missus",
           "dr": "doctor"}


def normalize(text):
    text = re.sub(r"[\[(][^\])]*[\])]", " ", text.lower())
    text = text.replace("n't", " not").replace("'re", " are").replace("'ll", " will")
    words = re.sub(r"[^\w']+", " ", text).split()
    return [NUMBERS.get(w.strip("'"), w.strip("'")) for w in words if w.strip("'")]


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def duration(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def common_args(args):
    return ["--model", args.model, "--device", args.device, "--threads", str(args.threads)]


def stream(args, path):
    cmd = [str(BINARY), "stream", *common_args(args), "--simulate-realtime", "--words",
           "--step-ms", str(args.step_ms), str(path)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    done = [l for l in lines if l["type"] == "done"]
    if len(done) != 1:
        sys.exit(f"{path}: no done line; stderr: {p.stderr}")
    latencies = [l["emitted_at"] - w["end"] for l in lines if l["type"] == "committed"
                 for w in l.get("words", [])]
    m = re.search(r"stream: ([\d.]+) s of audio in (\d+) steps; compute ([\d.]+) s", p.stderr)
    audio_s, steps, compute_s = (float(m[1]), int(m[2]), float(m[3])) if m else (None, None, None)
    return {"text": done[0]["text"], "latencies": latencies, "wall": wall, "audio_s": audio_s,
            "steps": steps, "compute_s": compute_s,
            "commits": sum(l["type"] == "committed" for l in lines)}


def offline(args, path):
    cmd = [str(BINARY), "--quiet", "transcribe", *common_args(args), "--beam-size", "1",
           "--output-format", "json", str(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)["text"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="clips (default: the long real clips of refs.tsv)")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/speech"))
    ap.add_argument("--clips", type=int, help="keep the N shortest long clips")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step-ms", type=int, default=1000)
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release")

    refs = {}
    refs_file = args.data / "refs.tsv"
    if refs_file.exists():
        for row in refs_file.read_text().splitlines()[1:]:
            cols = row.split("\t")
            if len(cols) >= 5:
                refs[cols[0]] = (cols[1], cols[4])
    files = args.files or sorted(
        (args.data / name for name, (_, kind) in refs.items()
         if kind == "real" and (args.data / name).exists() and duration(args.data / name) > 30),
        key=duration)
    if args.clips:
        files = files[: args.clips]
    if not files:
        sys.exit(f"no clips: none given and no real clip over 30 s in {refs_file}")

    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    rows, latencies = [], []
    errors = {"stream": 0, "offline": 0}
    words = 0
    audio = compute = 0.0
    for path in files:
        s = stream(args, path)
        o = offline(args, path)
        latencies += s["latencies"]
        row = {"file": path.name, "audio_s": round(duration(path), 1), "commits": s["commits"],
               "steps": s["steps"], "compute_s": s["compute_s"], "wall_s": round(s["wall"], 1),
               "p50": round(percentile(s["latencies"], 50), 2),
               "p95": round(percentile(s["latencies"], 95), 2)}
        if s["audio_s"] and s["compute_s"] is not None:
            audio += s["audio_s"]
            compute += s["compute_s"]
            row["rt_margin"] = round(s["compute_s"] / s["audio_s"], 2)
        ref = refs.get(path.name, (None,))[0]
        if ref:
            r = normalize(ref)
            words += len(r)
            es, eo = edit_distance(r, normalize(s["text"])), edit_distance(r, normalize(o))
            errors["stream"] += es
            errors["offline"] += eo
            row["wer_stream"] = round(100 * es / len(r), 2)
            row["wer_offline"] = round(100 * eo / len(r), 2)
        row["stream_vs_offline_edits"] = edit_distance(normalize(o), normalize(s["text"]))
        rows.append(row)
        if not args.json:
            print(json.dumps(row), flush=True)

    summary = {
        "model": args.model, "device": args.device, "threads": args.threads, "step_ms": args.step_ms,
        "clips": len(files), "audio_s": round(audio, 1), "committed_words": len(latencies),
        "latency_p50_s": round(percentile(latencies, 50), 2),
        "latency_p95_s": round(percentile(latencies, 95), 2),
        "latency_max_s": round(max(latencies), 2) if latencies else None,
        "rt_margin": round(compute / audio, 2) if audio else None,
        "wer_stream_pct": round(100 * errors["stream"] / words, 2) if words else None,
        "wer_offline_pct": round(100 * errors["offline"] / words, 2) if words else None,
        "loadavg_before": load,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[:3] if load else [],
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
        if os.path.exists("/proc/cpuinfo") else None,
    }
    if args.json:
        print(json.dumps({"clips": rows, "summary": summary}, indent=1))
    else:
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
