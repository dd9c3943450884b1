#!/usr/bin/env bash
# The metric deploy/k8s/server-hpa.yaml scales on, moving under load: starts `serve` on a free
# loopback port, scrapes /metrics once a second (asr_queue_depth, asr_in_flight) while
# tools/server_load.py sends REQUESTS transcriptions CONCURRENCY at a time, then stops the server
# with SIGTERM (its graceful shutdown) and prints the samples. Bounded: the load run gets
# TIMEOUT seconds.
#
#   bash tools/queue_depth_demo.sh          (REQUESTS=16 CONCURRENCY=16 TIMEOUT=300 CLIP=samples/jfk.wav)
#
# Not part of tools/test.sh (it measures, it asserts only that the depth rose above zero and
# fell back to zero).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-16}
CONCURRENCY=${CONCURRENCY:-16}
TIMEOUT=${TIMEOUT:-300}
CLIP=${CLIP:-samples/jfk.wav}
cargo build --release --quiet --bin dattavani-asr
T=$(mktemp -d)
SERVER_PID=
SCRAPER_PID=
cleanup() {
  if [ -n "$SCRAPER_PID" ]; then kill "$SCRAPER_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$T"
}
trap cleanup EXIT

target/release/dattavani-asr --quiet serve --host 127.0.0.1 --port 0 --model tiny.en \
  --max-batch 8 --max-queue 64 >"$T/server.out" 2>"$T/server.err" &
SERVER_PID=$!
for _ in $(seq 120); do
  grep -q '^listening on ' "$T/server.out" 2>/dev/null && break
  sleep 0.5
done
URL=$(sed -n 's/^listening on //p' "$T/server.out")
[ -n "$URL" ] || { cat "$T/server.err" >&2; exit 1; }
for _ in $(seq 240); do
  curl -fsS "$URL/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
echo "server $URL ready; load: $REQUESTS requests of $CLIP, $CONCURRENCY at a time"

python3 - "$URL" >"$T/samples.tsv" <<'PY' &
import sys, time, urllib.request
url = sys.argv[1] + "/metrics"
start = time.monotonic()
print("t_s\tasr_queue_depth\tasr_in_flight", flush=True)
while True:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("asr_queue_depth", "asr_in_flight"):
            values[parts[0]] = parts[1]
    print(f"{time.monotonic() - start:.1f}\t{values.get('asr_queue_depth', '-')}\t"
          f"{values.get('asr_in_flight', '-')}", flush=True)
    time.sleep(1)
PY
SCRAPER_PID=$!
sleep 2
timeout "$TIMEOUT" python3 tools/server_load.py "$URL" --clip "$CLIP" --requests "$REQUESTS" \
  --concurrency "$CONCURRENCY"
sleep 3
kill "$SCRAPER_PID"; wait "$SCRAPER_PID" 2>/dev/null || true
SCRAPER_PID=
kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
SERVER_PID=
echo "== /metrics samples, one a second"
cat "$T/samples.tsv"
python3 - "$T/samples.tsv" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()[1:]]
depth = [float(r[1]) for r in rows if r[1] != "-"]
print(f"asr_queue_depth: max {max(depth):g}, first {depth[0]:g}, last {depth[-1]:g}")
if not (max(depth) > 0 and depth[-1] == 0):
    sys.exit("the queue depth did not rise and fall back")
PY
