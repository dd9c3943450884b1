#!/usr/bin/env bash
# The portable path on aarch64 (issue 12: "aarch64 NEON at least compiles and is tested for
# equality where it runs"), on an x86-64 Debian machine: cross-build for
# aarch64-unknown-linux-gnu (NEON is aarch64's baseline, so the portable kernels vectorise to
# it), run the library's unit tests under qemu-user, then transcribe samples/jfk.wav with the
# aarch64 binary (f32 and int8) and compare its token ids with this machine's native build.
# Takes about 5 minutes on 2 cores (the tests' build is most of it). Not part of
# tools/test.sh: qemu runs the model 10-50x slower than native.
#
#   bash tools/aarch64.sh            (root on Debian installs the cross toolchain and qemu)
set -euo pipefail
cd "$(dirname "$0")/.."
T=aarch64-unknown-linux-gnu
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "need gcc-aarch64-linux-gnu and qemu-user" >&2; exit 2; }
  apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null; }
fi
rustup target list --installed 2>/dev/null | grep -q "^$T$" || rustup target add "$T"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
# C dependencies (libopus through cmake) build with the cross C compiler; none is C++.
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
cargo test --release --target "$T" --lib
cargo build --release --target "$T" --quiet
cargo build --release --quiet
out=$(mktemp -d)
for dtype in f32 int8; do
  mkdir -p "$out/arm-$dtype" "$out/x86-$dtype"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "target/$T/release/dattavani-asr" transcribe --quiet \
    --device cpu --dtype "$dtype" --output-format json --output-dir "$out/arm-$dtype" samples/jfk.wav
  target/release/dattavani-asr transcribe --quiet --device cpu --dtype "$dtype" \
    --output-format json --output-dir "$out/x86-$dtype" samples/jfk.wav
  python3 - "$out/arm-$dtype/jfk.json" "$out/x86-$dtype/jfk.json" "$dtype" <<'PY'
import json, sys
arm, x86 = (json.load(open(p)) for p in sys.argv[1:3])
ids = lambda t: [s["tokens"] for s in t["segments"]]
same = ids(arm) == ids(x86)
print(f"aarch64 vs native, {sys.argv[3]}: token ids {'equal' if same else 'DIFFER'}: {arm['text'].strip()}")
sys.exit(0 if same else 1)
PY
done
rm -rf "$out"
