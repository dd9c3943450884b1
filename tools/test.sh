#!/usr/bin/env bash
# The whole test suite, with its own set-up: system packages (Vulkan software driver for the GPU
# tests), the default model (fetched into the Hugging Face cache on first use), then
# `cargo test --release` (optimized build: the model tests run real networks).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# lavapipe: a real Vulkan driver that runs our WGSL on the CPU where there is no GPU.
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need_apt+=(mesa-vulkan-drivers)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need_apt+=(libvulkan1)
# CMake builds libopus from the sources audiopus_sys ships (Opus decoding; see src/audio/opus.rs).
command -v cmake >/dev/null || need_apt+=(cmake)
if [ ${#need_apt[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: ${need_apt[*]} missing and cannot be installed here; GPU tests will skip" >&2
  fi
fi
export NODEVICE_SELECT=1   # silences Mesa's device-select layer warning

# Fetch the default model once, before tests run in parallel (a smoke run of the main job too).
cargo run --release --quiet -- transcribe samples/jfk.wav
# The multilingual checkpoint the language tests use.
cargo run --release --quiet -- models pull base
# The Silero VAD weights (tests/vad.rs, tests/vad_cli.rs).
cargo run --release --quiet -- models pull silero-vad

cargo test --release "$@"

# The official openai Python client against `serve` (its own venv under target/).
if [ $# -eq 0 ]; then
  if command -v python3 >/dev/null; then
    bash tools/server_client_test.sh
  else
    echo "warning: python3 missing; the openai-client server test is skipped" >&2
  fi
fi
