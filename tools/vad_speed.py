#!/usr/bin/env python3
"""Silero VAD speed: onnxruntime (the package's silero_vad.onnx) against our Rust forward pass,
in the same run, on one 16 kHz mono 16-bit WAV.

onnxruntime runs as the package's OnnxWrapper drives it (one session.run per 512-sample window
with 64 samples of context, one thread intra- and inter-op), minus torch. Both report the best of
RUNS full passes. Our side is `target/release/examples/vad bench` (build it first:
`cargo build --release --example vad`; weights from `cargo run --release --example vad -- pull`).

    python3 tools/vad_speed.py WHEEL_DIR FILE.wav [RUNS]
(WHEEL_DIR: the unzipped silero-vad 6.2.3 wheel; see tools/vad_reference.py.)
"""
import json
import os
import subprocess
import sys
import time
import wave

import numpy as np
import onnxruntime as ort


def main():
    wheel_dir, path = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(wheel_dir, "silero_vad", "data", "silero_vad.onnx"),
                                providers=["CPUExecutionProvider"], sess_options=opts)
    n = (len(audio) + 511) // 512
    padded = np.zeros(n * 512, np.float32)
    padded[:len(audio)] = audio
    sr = np.array(16000, dtype=np.int64)

    def onnxruntime_pass(run):
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, 64), np.float32)
        probs = []
        for i in range(n):
            x = np.concatenate([context, padded[None, i * 512:(i + 1) * 512]], axis=1)
            out, state = run({"input": x, "state": state, "sr": sr})
            context = x[:, -64:]
            probs.append(out[0, 0])
        return probs

    # The Python loop alone (session.run replaced by a stub), to show what it costs.
    stub_out = (np.zeros((1, 1), np.float32), np.zeros((2, 1, 128), np.float32))
    best, loop, speech, ours = float("inf"), float("inf"), 0, None
    # Rounds interleaved, best of each: the machine may be shared.
    for _ in range(runs):
        t = time.perf_counter()
        probs = onnxruntime_pass(lambda feed: sess.run(None, feed))
        best = min(best, time.perf_counter() - t)
        speech = sum(p >= 0.5 for p in probs)
        t = time.perf_counter()
        onnxruntime_pass(lambda feed: stub_out)
        loop = min(loop, time.perf_counter() - t)
        r = json.loads(subprocess.check_output(
            [os.path.join("target", "release", "examples", "vad"), "bench", path, "1"]))
        if ours is None or r["best_s"] < ours["best_s"]:
            ours = r
    print(json.dumps({"engine": "onnxruntime " + ort.__version__, "audio_s": round(len(audio) / 16000, 2),
                      "windows": n, "best_s": round(best, 4), "us_per_window": round(best * 1e6 / n, 2),
                      "speech_windows": int(speech), "python_loop_s": round(loop, 4)}))
    print(json.dumps(ours))
    print(f"speed-up: {best / ours['best_s']:.1f}x "
          f"({best * 1e6 / n:.1f} vs {ours['us_per_window']:.1f} us per 32 ms window)")


if __name__ == "__main__":
    main()
