#!/usr/bin/env bash
# Run the cargo-fuzz targets of fuzz/ for SECONDS each (default 600), one after the other, and
# print per target the executions, the time and whether it crashed.
#   tools/fuzz.sh [SECONDS] [TARGET...]      (no TARGET: all of them)
# Needs a nightly toolchain (libFuzzer + ASan); installs cargo-fuzz from crates.io if missing.
# Crashers land in fuzz/artifacts/TARGET/; replay one with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-600}"
# libFuzzer reads -max_total_time=0 as "no limit": refuse it (and anything not a positive count).
case "$seconds" in
  ''|*[!0-9]*) seconds=0 ;;
esac
if [ "$((10#$seconds))" -le 0 ]; then
  echo "usage: tools/fuzz.sh [SECONDS>0] [TARGET...]" >&2
  exit 2
fi
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
cargo +nightly fuzz build -O
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  started=$SECONDS
  # Memory cap per input; -timeout flags a single input that hangs longer than 10 s.
  if cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    verdict="no crash"
  else
    verdict="CRASHED (see $log and artifacts/$t/)"
    failed=1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  secs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' | tail -1 || true)
  # libFuzzer prints "Done N runs in S second(s)" only when it ran to the end; else wall time.
  printf '%-20s %12s execs %6s s  %s\n' "$t" "${execs:-?}" "${secs:-$((SECONDS - started))}" "$verdict"
done
exit $failed
