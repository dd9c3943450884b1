#!/usr/bin/env python3
"""Long-form with and without VAD, ours against faster-whisper, on the long dev clips (> 30 s).

    python3 tools/compare_vad.py [--runs 1] [--beam-size 1] [--batch-size 8]

Ours: the sequential seek loop, `--vad`, and `--vad --batch-size N` (tiny.en, CPU f32, 2 threads).
faster-whisper 1.2.1 (float32, 2 threads, same search): `transcribe()` without VAD, with
`vad_filter=True`, and `BatchedInferencePipeline(batch_size=N)` (its VAD on by default).
WER with Whisper's English normalizer over all clips; wall is each engine's whole run (ours:
one process, model load included; the peer's excludes its model load). Reuses compare_peers.py's
venv (target/peer-venv) and peer model.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_peers as cp  # noqa: E402

PEER_SCRIPT = r"""
import json, sys, time
from faster_whisper import WhisperModel, BatchedInferencePipeline
model_dir, mode, beam, batch, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
m = WhisperModel(model_dir, device="cpu", compute_type="float32", cpu_threads=2)
t = time.perf_counter()
out = {}
for f in files:
    if mode == "batched":
        segs, _ = BatchedInferencePipeline(model=m).transcribe(f, beam_size=beam, batch_size=batch)
    else:
        segs, _ = m.transcribe(f, beam_size=beam, vad_filter=(mode == "vad"))
    out[f] = "".join(s.text for s in segs)
print(json.dumps({"wall": time.perf_counter() - t, "texts": out}))
"""


def run_peer(py, model, mode, beam, batch, files):
    out = cp.sh(str(py), "-c", PEER_SCRIPT, str(model), mode, str(beam), str(batch), *map(str, files),
                capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = cp.ROOT.parent / "shared" / "data" / "speech"
    if not default_data.exists():
        default_data = cp.ROOT / "tests" / "data" / "speech"
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    rows = [l.split("\t") for l in (args.data / "refs.tsv").read_text().splitlines() if l and not l.startswith("#")]
    clips = [(args.data / r[0], r[1]) for r in rows if r[4].strip() == "real"]
    clips = [(f, r) for f, r in clips if f.exists() and cp.duration(f) > 30.0]
    files = [f for f, _ in clips]
    refs = [r for _, r in clips]
    audio_s = sum(cp.duration(f) for f in files)
    print(f"{len(files)} long clips ({', '.join(f.name for f in files)}), {audio_s:.1f} s, beam {args.beam_size}",
          flush=True)
    cp.sh("cargo", "build", "--release", "--quiet", cwd=cp.ROOT)
    py = cp.ensure_venv()
    model = cp.ensure_peer_model()
    b, n = args.beam_size, args.batch_size
    engines = {
        "ours sequential": lambda: cp.run_ours(files, 2, b),
        "ours --vad": lambda: cp.run_ours(files, 2, b, ["--vad"]),
        f"ours --vad --batch-size {n}": lambda: cp.run_ours(files, 2, b, ["--vad", "--batch-size", str(n)]),
        "faster-whisper sequential": lambda: run_peer(py, model, "plain", b, n, files),
        "faster-whisper vad_filter": lambda: run_peer(py, model, "vad", b, n, files),
        f"faster-whisper batched {n}": lambda: run_peer(py, model, "batched", b, n, files),
    }
    walls = {k: [] for k in engines}
    texts = {}
    for _ in range(args.runs):
        for name, run in engines.items():
            r = run()
            walls[name].append(r["wall"])
            texts[name] = r["texts"]
    print(f"| engine | WER | errors/words | wall (median of {args.runs}) |")
    print("|---|---|---|---|")
    for name in engines:
        w = cp.wer(py, refs, [texts[name][str(f)] for f in files])
        print(f"| {name} | {100 * w['wer']:.2f}% | {w['errors']}/{w['words']} | "
              f"{statistics.median(walls[name]):.1f} s |")


if __name__ == "__main__":
    main()
