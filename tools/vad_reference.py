#!/usr/bin/env python3
"""Reference values for tests/vad.rs, computed once at development time and committed.

For each fixture clip it writes tests/data/vad/<clip>.json holding:
- `probs_onnx`: per-window speech probabilities from onnxruntime running the package's
  `silero_vad.onnx`, driven exactly as the package's `OnnxWrapper` drives it (512-sample windows,
  64 samples of context, state carried, last window zero-padded);
- `probs_safetensors`: the same run of the package's `silero_vad_16k_op15.onnx` graph with its
  weights replaced by `silero_vad_16k.safetensors` (the two ship different weights; see
  src/vad/mod.rs);
- `segments`: the package's own `get_speech_timestamps_from_probs` (what `get_speech_timestamps`
  returns) on `probs_onnx`, for each option set in OPTION_SETS, in samples.

Usage (a venv with onnxruntime, onnx, numpy, safetensors, packaging; torch is not needed: the
segment logic is plain Python, and a stub stands in for the `torch` import of utils_vad):
    python3 -m pip download --no-deps silero-vad==6.2.3 -d /tmp/w && unzip /tmp/w/*.whl -d /tmp/w
    python3 tools/vad_reference.py /tmp/w tests/data/vad
"""
import json
import os
import sys
import types
import wave

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from safetensors.numpy import load_file

CLIPS = [
    "tests/data/speech/jfk.wav",
    "tests/data/speech/ast_demo-congrats.wav",
    "tests/data/speech/ps_librivox_0870.wav",
    "tests/data/speech/synth_espeak_2.wav",
]
# faster-whisper's VadOptions defaults, its batched defaults, and silero's own defaults.
OPTION_SETS = {
    "faster_whisper": dict(threshold=0.5, min_speech_duration_ms=0, max_speech_duration_s=float("inf"),
                           min_silence_duration_ms=2000, speech_pad_ms=400),
    "batched": dict(threshold=0.5, min_speech_duration_ms=0, max_speech_duration_s=5.0,
                    min_silence_duration_ms=160, speech_pad_ms=400),
    "silero": dict(threshold=0.5, min_speech_duration_ms=250, max_speech_duration_s=float("inf"),
                   min_silence_duration_ms=100, speech_pad_ms=30),
    "legacy_cut": dict(threshold=0.4, min_speech_duration_ms=0, max_speech_duration_s=3.0,
                       min_silence_duration_ms=100, speech_pad_ms=30,
                       use_max_poss_sil_at_max_speech=False),
}
WINDOW, CONTEXT = 512, 64


def read_wav(path):
    with wave.open(path) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def session(model_bytes):
    opts = ort.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"], sess_options=opts)


def run(sess, audio):
    names = [i.name for i in sess.get_inputs()]
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros(CONTEXT, np.float32)
    probs = []
    for start in range(0, len(audio), WINDOW):
        chunk = audio[start:start + WINDOW]
        chunk = np.pad(chunk, (0, WINDOW - len(chunk)))
        x = np.concatenate([context, chunk])[None, :]
        feed = {"input": x, "state": state}
        if "sr" in names:
            feed["sr"] = np.array(16000, dtype=np.int64)
        out, state = sess.run(None, feed)
        probs.append(float(out[0, 0]))
        context = x[0, -CONTEXT:]
    return probs


def op15_with_safetensors(data_dir):
    model = onnx.load(os.path.join(data_dir, "silero_vad_16k_op15.onnx"))
    weights = load_file(os.path.join(data_dir, "silero_vad_16k.safetensors"))
    rename = {"model.stft.forward_basis_buffer": "stft_conv.weight",
              "model.encoder.0.reparam_conv": "conv1", "model.encoder.1.reparam_conv": "conv2",
              "model.encoder.2.reparam_conv": "conv3", "model.encoder.3.reparam_conv": "conv4",
              "model.decoder.rnn": "lstm_cell", "model.decoder.decoder.2": "final_conv"}
    replaced = 0
    for init in model.graph.initializer:
        for old, new in rename.items():
            if init.name.startswith(old):
                key = new + init.name[len(old):]
                init.CopyFrom(numpy_helper.from_array(weights[key], init.name))
                replaced += 1
    assert replaced == len(weights), (replaced, len(weights))
    return model.SerializeToString()


def package_timestamps(pkg_dir):
    stub = types.ModuleType("torch")
    stub.no_grad = lambda: (lambda f: f)
    stub.device = lambda name: name
    stub.Tensor = object
    stub.set_num_threads = lambda n: None
    sys.modules.setdefault("torch", stub)
    sys.path.insert(0, pkg_dir)
    from silero_vad.utils_vad import get_speech_timestamps_from_probs
    return get_speech_timestamps_from_probs


def main():
    wheel_dir, out_dir = sys.argv[1], sys.argv[2]
    data_dir = os.path.join(wheel_dir, "silero_vad", "data")
    onnx_sess = session(os.path.join(data_dir, "silero_vad.onnx"))
    st_sess = session(op15_with_safetensors(data_dir))
    timestamps = package_timestamps(wheel_dir)
    os.makedirs(out_dir, exist_ok=True)
    for clip in CLIPS:
        audio = read_wav(clip)
        probs = run(onnx_sess, audio)
        result = {
            "clip": clip,
            "samples": len(audio),
            "probs_onnx": [round(p, 7) for p in probs],
            "probs_safetensors": [round(p, 7) for p in run(st_sess, audio)],
            "segments": {name: [[s["start"], s["end"]] for s in
                                timestamps(probs, audio_length_samples=len(audio), **opts)]
                         for name, opts in OPTION_SETS.items()},
        }
        name = os.path.splitext(os.path.basename(clip))[0]
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump(result, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print(name, len(probs), "windows;", {k: len(v) for k, v in result["segments"].items()})


if __name__ == "__main__":
    main()
