#!/usr/bin/env bash
# Packs what tools/device/run{1,2,3}.sh need on a lent GPU machine (this workplace's `device`
# tool: at most 64 MiB travel per call, the repository's tracked files included, and ignored
# paths survive between calls only while the machine stays warm, 30 s).
#
# tiny.en's f16 safetensors (75.5 MB) does not fit one call, and does not compress (zstd -19:
# 69 MB). Split into the low and high byte of each f16 (xz: 37.4 + 26.5 MB) it fits two calls;
# run2.sh joins them and checks the sha256. CTranslate2's model.bin is not sent at all: the same
# f16 bytes are in the safetensors, and `recipe.json` (mkrecipe.py, verified here by rebuilding)
# says where each of its variables lies there.
#
#   .devc1: our binary (stripped) + low bytes             -> run1.sh (machine facts, adapters)
#   .devc2: high bytes + the GPU test binaries            -> run2.sh (GPU tests, benches)
#   .devc3: CTranslate2 + faster-whisper (cp312, no PyAV) -> run3.sh (peers.py, CPU vs peers)
#   .devc4: the library's unit tests + the int8 matmul bench -> run4.sh (AMX kernels on the host)
#
# Then: run(command="bash .devc1/run1.sh", carry=[".gl", ".devc1"]), and the next two at once,
# before the machine goes cold. `.gl` holds the Vulkan loader and libglvnd debs (the NVIDIA ICD
# needs both); see the device tool's README. Add `/.devc1/ /.devc2/ /.devc3/ /.gl/` to
# .git/info/exclude first.
set -euo pipefail
cd "$(dirname "$0")/../.."
H=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
SNAP=$(ls -d "$H"/models--openai--whisper-tiny.en/snapshots/*/ | head -1)
CT2_MODEL=target/peer-models/tiny.en   # tools/compare_peers.py puts CTranslate2's tiny.en here
rm -rf .devc1 .devc2 .devc3 .devc4 && mkdir -p .devc1 .devc2 .devc3 .devc4 /tmp/devpack

cargo build --release --quiet
bins=$(cargo test --release --no-run --test kernels_vs_cpu --test gpu_end_to_end 2>&1 | sed -n 's/.*Executable .* (\(.*\))/\1/p')
strip -o /tmp/devpack/dattavani-asr target/release/dattavani-asr
for b in $bins; do strip -o "/tmp/devpack/$(basename "${b%-*}")" "$b"; done
lib=$(cargo test --release --no-run --lib 2>&1 | sed -n 's/.*Executable .* (\(.*\))/\1/p')
matmul=$(cargo bench --no-run --bench cpu_matmul 2>&1 | sed -n 's/.*Executable .* (\(.*\))/\1/p')
strip -o /tmp/devpack/lib_tests "$lib"; strip -o /tmp/devpack/cpu_matmul "$matmul"
xz -9e -T2 -c /tmp/devpack/lib_tests > .devc4/lib_tests.xz
xz -9e -T2 -c /tmp/devpack/cpu_matmul > .devc4/cpu_matmul.xz

python3 - "$SNAP/model.safetensors" /tmp/devpack <<'PY'
import sys
b = open(sys.argv[1], 'rb').read(); n = int.from_bytes(b[:8], 'little'); body = b[8 + n:]
open(sys.argv[2] + '/st_head', 'wb').write(b[:8 + n])
open(sys.argv[2] + '/st_lo', 'wb').write(body[0::2]); open(sys.argv[2] + '/st_hi', 'wb').write(body[1::2])
PY
xz -9e -T2 -c /tmp/devpack/st_lo > .devc1/lo.xz
xz -9e -T2 -c /tmp/devpack/dattavani-asr > .devc1/dattavani-asr.xz
xz -9e -T2 -c /tmp/devpack/st_hi > .devc2/hi.xz
xz -9e -T2 -c /tmp/devpack/kernels_vs_cpu > .devc2/kernels_vs_cpu.xz
xz -9e -T2 -c /tmp/devpack/gpu_end_to_end > .devc2/gpu_end_to_end.xz
cp /tmp/devpack/st_head .devc2/
tar -C "$H" --exclude='*.safetensors' -cf - models--openai--whisper-tiny.en | xz -9 -c > .devc2/hfsmall.tar.xz

python3 tools/device/mkrecipe.py "$CT2_MODEL/model.bin" "$SNAP/model.safetensors" .devc3/recipe.json
cp "$CT2_MODEL/config.json" "$CT2_MODEL/vocabulary.txt" .devc3/
rm -rf /tmp/devpack/site && mkdir -p /tmp/devpack/site/av
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d /tmp/devpack/whl \
  ctranslate2==4.8.5 faster-whisper==1.2.1
for w in /tmp/devpack/whl/*.whl; do (cd /tmp/devpack/site && unzip -q -o "$w"); done
# faster_whisper imports PyAV at the top but only decode_audio uses it; peers.py passes arrays.
touch /tmp/devpack/site/av/__init__.py
tar -C /tmp/devpack/site -cf - . | xz -9 -T2 -c > .devc3/peers.tar.xz

cp tools/device/run1.sh .devc1/; cp tools/device/{run2.sh,join.py,brief.py} .devc2/
cp tools/device/{run3.sh,peers.py,rebuild_ct2.py} .devc3/
cp tools/device/run4.sh .devc4/
tracked=$(git ls-files -z | xargs -0 stat -c %s | awk '{s += $1} END {print s}')
for c in 1 2 3 4; do
  echo ".devc$c + tracked files: $(( $(du -cb .devc$c .gl 2>/dev/null | tail -1 | cut -f1) + tracked )) bytes (limit $((64 << 20)))"
done
