#!/bin/bash
# Device call 4 (after run1.sh and run2.sh, which leave our binary in /root/dv and tiny.en in
# /root/hf): the AMX kernels on the lent machine's host CPU (Intel Xeon with AMX), which no
# development machine has had. Pinned to 2 vCPUs on distinct cores, as the peer comparison.
#  1. the library's unit tests of both AMX kernels: the CPU's tiles against VNNI's bits (int8)
#     and against f64 (bf16 attention, plain and split), besides the emulator, and the
#     process's self-checks;
#  2. the int8 products alone (benches/cpu_matmul.rs), AMX off and on;
#  3. the encoder per window (`bench`), int8, int8-bf16v (the default where the CPU has AVX-512
#     BF16, since stop 18), int8-bf16 and int8-bf16x3, AMX off and on;
#  4. the 16 reference clips, default settings, AMX off and on: the JSON must be byte-identical
#     (int8 sums the same integers on the tiles, and int8-bf16v's attention is AVX-512's); then
#     `--dtype int8` (f32 attention, the default before stop 18) and `--dtype int8-bf16x3` (the
#     split bf16 attention, near f32), whose texts come back in $OUT/json for
#     `tools/device/wer.py`.
exec > >(tee $OUT/run4.log) 2>&1
set -x
D=$PWD/.devc4
ux() { if command -v xz >/dev/null; then xz -T0 -dc "$1" > "$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"), 1 << 22)' "$1" "$2"; fi; }
grep -m1 -o -w -E 'amx_[a-z0-9]+' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; uname -r
B=/root/dv/dattavani-asr
[ -x $B ] || { echo "call 1's binary is gone (the machine went cold)"; exit 3; }
export HF_HUB_CACHE=/root/hf
P="taskset -c 0,1"
ux $D/lib_tests.xz /root/dv/lib_tests; ux $D/cpu_matmul.xz /root/dv/cpu_matmul
chmod +x /root/dv/lib_tests /root/dv/cpu_matmul
# On an AMX host the tests must run the CPU's tiles (they fail instead of passing on the emulator).
grep -q -w amx_int8 /proc/cpuinfo && export DATTAVANI_REQUIRE_AMX=1
RUST_LOG=debug $P /root/dv/lib_tests --test-threads 2 --nocapture amx bf16 2>&1 | tail -20
$P /root/dv/lib_tests --test-threads 2 int8 attention 2>&1 | tail -12
unset DATTAVANI_REQUIRE_AMX
$B bench --device cpu --threads 2 --beam-size 1 --runs 1 2>&1 | grep -E "cpu:|matmul|attention"
for amx in 0 1; do
  DATTAVANI_AMX=$amx BENCH_ONLY=tiny BENCH_ITERS=5 RAYON_NUM_THREADS=2 $P /root/dv/cpu_matmul
done
for dtype in int8 int8-bf16v int8-bf16 int8-bf16x3; do
  for amx in 0 1 0 1; do
    echo "AMX=$amx $dtype"
    DATTAVANI_AMX=$amx $P $B bench --device cpu --threads 2 --beam-size 1 --runs 5 --dtype $dtype 2>&1 | grep -E "encoder /|total"
  done
done
FILES=$(awk -F'\t' 'NR > 1 && $5 == "real" && $1 !~ /long_concat/ {print "tests/data/speech/" $1}' tests/data/speech/refs.tsv)
run_clips() {  # name, DATTAVANI_AMX, transcribe flags...
  local name=$1 amx=$2; shift 2
  rm -rf $OUT/json/$name; mkdir -p $OUT/json/$name
  /usr/bin/time -f "$name wall %e s" env DATTAVANI_AMX=$amx $P $B transcribe --quiet --device cpu --threads 2 --output-format json --output-dir $OUT/json/$name "$@" $FILES
}
run_clips amx0 0
run_clips amx1 1
diff -r -q $OUT/json/amx0 $OUT/json/amx1 && echo "AMX on and off: JSON byte-identical"
run_clips int8_amx1 1 --dtype int8
run_clips bf16x3_amx1 1 --dtype int8-bf16x3
run_clips bf16x3_amx0 0 --dtype int8-bf16x3
python3 -c '
import json, pathlib
d = pathlib.Path("'$OUT'/json")
files = sorted((d / "amx0").glob("*.json"))
text = lambda run, f: json.loads((d / run / f.name).read_text())["text"]
for run in ("amx1", "int8_amx1", "bf16x3_amx1", "bf16x3_amx0"):
    same = sum(text("amx0", f) == text(run, f) for f in files)
    print(f"{run}: the text of the default with AMX off in {same} of {len(files)} clips")
'
