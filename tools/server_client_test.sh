#!/usr/bin/env bash
# The official `openai` Python client (pinned) against `dattavani-asr serve` on loopback:
# installs the client into its own venv under target/, builds the binary, runs
# tools/server_client_test.py. Needs tiny.en and base in the model cache (tools/test.sh pulls them).
set -euo pipefail
cd "$(dirname "$0")/.."
OPENAI_VERSION=3.57.0
# The client's realtime extra (openai[realtime]) wants websockets >=13,<16; the live checks use it too.
WEBSOCKETS_VERSION=15.0.1
VENV=target/openai-venv
if ! "$VENV/bin/python" -c "import openai, websockets, sys; sys.exit(openai.__version__ != '$OPENAI_VERSION' or websockets.__version__ != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "openai==$OPENAI_VERSION" "websockets==$WEBSOCKETS_VERSION"
fi
cargo build --release --quiet
exec "$VENV/bin/python" tools/server_client_test.py
