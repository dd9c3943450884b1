"""Device call 3: ours against CTranslate2 4.8.5 / faster-whisper 1.2.1 on this machine's CPU, two
threads pinned to two distinct physical cores (taskset), the same 16 real clips and settings as
tools/compare_peers.py; texts go to $OUT for WER here (jiwer + Whisper's normalizer)."""
import json, os, statistics, subprocess, sys, tempfile, time

OUT = os.environ["OUT"]; B = "/root/dv/dattavani-asr"; CT2 = "/root/ct2"
ROOT = os.getcwd(); DATA = ROOT + "/tests/data/speech"
cpus = [l.split(",") for l in subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET"], capture_output=True,
                                             text=True).stdout.splitlines() if l[:1].isdigit()]
a = cpus[0]; b = next((c for c in cpus[1:] if c[1] != a[1] and c[2] == a[2]), cpus[1])
PIN = {1: ["taskset", "-c", a[0]], 2: ["taskset", "-c", f"{a[0]},{b[0]}"]}
results = {"cpus": [a, b], "encoder": [], "e2e": {}}
print("pinned to cpus", a, b, flush=True)

def save():
    json.dump(results, open(OUT + "/peers.json", "w"), indent=1)

rows = [l.split("\t") for l in open(DATA + "/refs.tsv").read().splitlines() if l and not l.startswith("#")]
files = [DATA + "/" + r[0] for r in rows if r[4].strip() == "real" and r[0] != "long_concat.wav"]
results["files"] = [os.path.basename(f) for f in files]

FW = r"""
import sys, json, time, wave
import numpy as np
from faster_whisper import WhisperModel
model_dir, ct, beam, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def load(f):  # 16 kHz mono s16 WAV, as decode_audio returns it: int16 / 32768
    w = wave.open(f); x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return x.astype(np.float32) / 32768.0
audio = {f: load(f) for f in files}
m = WhisperModel(model_dir, device="cpu", compute_type=ct, cpu_threads=2)
t = time.perf_counter(); out = {}
for f in files:
    segs, _ = m.transcribe(audio[f], beam_size=beam)
    out[f] = "".join(s.text for s in segs)
print(json.dumps({"wall": time.perf_counter() - t, "texts": out}))
"""
ENC = r"""
import json, statistics, sys, time, wave
import numpy as np, ctranslate2
from faster_whisper.feature_extractor import FeatureExtractor
model_dir, ct, threads, runs, wav = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
m = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type=ct, intra_threads=threads)
w = wave.open(wav); audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
fe = FeatureExtractor()
mel = fe(audio)[:, : fe.nb_max_frames]
mel = np.pad(mel, ((0, 0), (0, fe.nb_max_frames - mel.shape[1])))
x = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
m.encode(x, to_cpu=True)
ms = []
for _ in range(runs):
    t = time.perf_counter(); m.encode(x, to_cpu=True); ms.append(1e3 * (time.perf_counter() - t))
print(json.dumps({"ms": statistics.median(ms)}))
"""

def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        print("FAILED", cmd[:6], r.stderr[-2000:], flush=True)
        return None
    return r.stdout

def ours_encoder(dtype, threads):
    o = run(PIN[threads] + [B, "bench", ROOT + "/samples/jfk.wav", "--quiet", "--device", "cpu", "--dtype", dtype,
                            "--threads", str(threads), "--beam-size", "1", "--runs", "5", "--json"])
    if o:
        j = json.loads(o); results.setdefault("bench_paths", j.get("cpu_paths")); results["cpu_model"] = j.get("cpu_model")
        # The network alone (what CTranslate2's encode times), and the whole call (+ cross K/V).
        return j.get("encoder_network_ms_per_window", j["encoder_ms_per_window"]), j["encoder_ms_per_window"]

def ct2_encoder(ct, threads):
    o = run(PIN[threads] + [sys.executable, "-c", ENC, CT2, ct, str(threads), "5", ROOT + "/samples/jfk.wav"])
    return json.loads(o.strip().splitlines()[-1])["ms"] if o else None

print(f"{'threads':>7} {'dtype':>10} {'ours ms':>9} {'+K/V ms':>9} {'ct2 ms':>9}", flush=True)
for threads in (2, 1):
    for ours_dt, ct in (("int8", "int8"), ("int8-bf16v", "int8"), ("int8-bf16", None), ("f32", "float32")):
        o, o_kv = ours_encoder(ours_dt, threads) or (None, None); p = ct2_encoder(ct, threads) if ct else None
        results["encoder"].append({"threads": threads, "dtype": ours_dt, "ours_ms": o, "ours_with_cross_kv_ms": o_kv,
                                   "ct2_ms": p}); save()
        print(f"{threads:>7} {ours_dt:>10} {o or 0:>9.1f} {o_kv or 0:>9.1f} {p or 0:>9.1f}", flush=True)

def ours_e2e(beam, extra=()):
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        o = run(PIN[2] + [B, "transcribe", "--quiet", "--device", "cpu", "--threads", "2", "--beam-size", str(beam), *extra,
                          "--output-format", "json", "--output-dir", d, *files])
        wall = time.perf_counter() - t
        if o is None: return None
        return {"wall": wall, "texts": {f: json.load(open(d + "/" + os.path.basename(f)[:-4] + ".json"))["text"] for f in files}}

def fw_e2e(ct, beam):
    o = run(PIN[2] + [sys.executable, "-c", FW, CT2, ct, str(beam), *files])
    return json.loads(o.strip().splitlines()[-1]) if o else None

runs = int(os.environ.get("RUNS", "2"))
for beam in (1, 5):
    engines = {"ours auto": lambda: ours_e2e(beam), "fw int8": lambda: fw_e2e("int8", beam),
               "fw float32": lambda: fw_e2e("float32", beam)}
    if beam == 1:
        engines["ours f32"] = lambda: ours_e2e(beam, ["--dtype", "f32"])
    res = {k: {"walls": []} for k in engines}
    for _ in range(runs):
        for k, f in engines.items():
            r = f()
            if r: res[k]["walls"].append(r["wall"]); res[k]["texts"] = r["texts"]
            results["e2e"][f"beam{beam}"] = res; save()
    base = statistics.median(res["fw int8"]["walls"]) if res["fw int8"]["walls"] else float("nan")
    for k in engines:
        w = statistics.median(res[k]["walls"]) if res[k]["walls"] else float("nan")
        print(f"beam {beam} {k:<12} wall {w:6.2f} s  {w / base:5.2f}x of fw int8", flush=True)
