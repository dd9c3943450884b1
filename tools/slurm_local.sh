#!/usr/bin/env bash
# A real Slurm run on this machine: a single-node cluster (munged, slurmctld and slurmd on
# localhost, from Debian's slurm-wlm and munge packages) runs deploy/slurm/transcribe-array.sbatch
# as a 4-task array over the dev clips (/work/shared/data/speech, or tests/data/speech), then
# checks that every clip's output exists exactly once with its sidecar and that the status lines
# account for every item exactly once, each in the shard `item mod 4`. Then a killed task is
# simulated (one output and its sidecar deleted, another output's sidecar deleted) and the same
# array submitted again, as a requeue runs it: only those two items may be redone. The daemons
# are stopped at the end (by the pids they wrote), whatever happened.
#
#   bash tools/slurm_local.sh [extra transcribe args]   (default: --beam-size 1, to be quick)
#
# Needs root (it installs the packages when missing and runs the daemons as root, in a temporary
# directory with its own config, key and ports). Not part of tools/test.sh: it installs system
# packages and takes minutes. Environment: MODEL (default tiny.en), TIMEOUT (seconds per
# submission, default 1200), KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODEL=${MODEL:-tiny.en}
TIMEOUT=${TIMEOUT:-1200}
TASKS=4
EXTRA=("$@")
[ ${#EXTRA[@]} -gt 0 ] || EXTRA=(--beam-size 1)

if [ "$(id -u)" != 0 ]; then
  echo "error: tools/slurm_local.sh runs the Slurm daemons as root; run it as root" >&2
  exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

DATA=/work/shared/data/speech
[ -d "$DATA" ] || DATA=$ROOT/tests/data/speech
cargo build --release --quiet --bin dattavani-asr
BIN=$ROOT/target/release/dattavani-asr

T=$(mktemp -d /tmp/dattavani-slurm.XXXXXX)
chmod 755 "$T"
stop_daemons() {
  for f in "$T"/slurmd.pid "$T"/slurmctld.pid "$T"/munged.pid; do
    if [ -s "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
  done
  sleep 1
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap stop_daemons EXIT

# munge: its own key, socket and files in $T.
mkdir -p "$T/munge"
chmod 700 "$T/munge"
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$T/munge/munge.key"
SOCK=$T/munge/munge.socket
munged --force --socket="$SOCK" --key-file="$T/munge/munge.key" --pid-file="$T/munged.pid" \
  --log-file="$T/munge/munged.log" --seed-file="$T/munge/munged.seed"

# slurm: one node with this machine's CPUs and memory, free ports.
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
PORT=$(( 20000 + RANDOM % 20000 ))
mkdir -p "$T/state" "$T/spool"
cat >"$T/slurm.conf" <<EOF
ClusterName=dattavani-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$T/slurm.conf
slurmctld -c
slurmd -c
for _ in $(seq 60); do
  sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)' && break
  sleep 1
done
sinfo

# The manifest: every dev clip, by absolute path.
JOB=$T/job
mkdir -p "$JOB/logs"
find "$DATA" -maxdepth 1 -name '*.wav' | sort >"$JOB/manifest.txt"
N=$(wc -l <"$JOB/manifest.txt")
echo "manifest: $N clips from $DATA; $TASKS array tasks; model $MODEL; transcribe ${EXTRA[*]}"

submit() {
  local t0=$SECONDS code=0
  timeout "$TIMEOUT" sbatch --wait --quiet --array=0-$((TASKS - 1)) --cpus-per-task=1 --mem=1G \
    --chdir="$JOB" \
    --export="ALL,MANIFEST=$JOB/manifest.txt,OUT_DIR=$JOB/out,MODEL=$MODEL,DATTAVANI_ASR=$BIN" \
    "$ROOT/deploy/slurm/transcribe-array.sbatch" "${EXTRA[@]}" || code=$?
  echo "sbatch --wait exit $code after $((SECONDS - t0)) s"
  return $code
}

echo "== first submission"
submit
echo "== logs"
tail -n +1 "$JOB"/logs/*.out | grep -v '^$' || true

echo "== checks"
python3 - "$JOB" "$TASKS" <<'PY'
import json, os, pathlib, sys
job, tasks = pathlib.Path(sys.argv[1]), int(sys.argv[2])
clips = [l for l in (job / "manifest.txt").read_text().splitlines() if l]
out = job / "out"
problems = []
lines = {}
for t in range(tasks):
    for raw in (out / "status" / f"task-{t}.jsonl").read_text().splitlines():
        s = json.loads(raw)
        lines.setdefault(s["item"], []).append((t, s))
for i, clip in enumerate(clips):
    stem = pathlib.Path(clip).stem
    found = sorted(p.name for p in out.iterdir() if p.name.split(".")[0] == stem and p.suffix == ".txt")
    if found != [stem + ".txt"]:
        problems.append(f"{clip}: outputs {found}")
    if not (out / (stem + ".txt.dattavani.json")).is_file():
        problems.append(f"{clip}: no sidecar")
    got = lines.get(i, [])
    if len(got) != 1:
        problems.append(f"item {i}: {len(got)} status lines")
        continue
    t, s = got[0]
    if t != i % tasks or s["status"] != "ok" or s["audio"] != clip:
        problems.append(f"item {i}: task {t}, {s}")
texts = {p.name: p.read_text().strip() for p in out.glob("*.txt")}
print(f"{len(clips)} items, {sum(len(v) for v in lines.values())} status lines, "
      f"{len(texts)} outputs, {sum(1 for v in texts.values() if v)} non-empty")
for t in range(tasks):
    items = [i for i, v in lines.items() if v[0][0] == t]
    secs = sum(v[0][1].get("seconds", 0) for i, v in lines.items() if v[0][0] == t)
    print(f"task {t}: items {sorted(items)}, {secs:.1f} s of transcription")
print("jfk.txt:", texts.get("jfk.txt", "(missing)"))
if problems:
    print("FAILED:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("every output exactly once, every item one ok status line in shard item mod", tasks)
PY

echo "== a task killed part-way, simulated: jfk.txt and its sidecar removed, ps_goforward.txt's"
echo "   sidecar removed (killed between the two writes); resubmitted as a requeue would run it"
rm -f "$JOB/out/jfk.txt" "$JOB/out/jfk.txt.dattavani.json" "$JOB/out/ps_goforward.txt.dattavani.json"
submit
python3 - "$JOB" "$TASKS" <<'PY'
import json, pathlib, sys
job, tasks = pathlib.Path(sys.argv[1]), int(sys.argv[2])
clips = [l for l in (job / "manifest.txt").read_text().splitlines() if l]
second = []
for t in range(tasks):
    rows = [json.loads(r) for r in (job / "out" / "status" / f"task-{t}.jsonl").read_text().splitlines()]
    first = len([i for i in range(len(clips)) if i % tasks == t])
    second += rows[first:]
print("a status line of the rerun:", json.dumps(next(r for r in second if r["status"] == "ok")))
redone = sorted(pathlib.Path(r["audio"]).name for r in second if r["status"] == "ok")
skipped = [r for r in second if r["status"] == "skipped"]
print(f"second run: {len(second)} status lines, {len(skipped)} skipped, redone {redone}")
if len(second) != len(clips) or redone != ["jfk.wav", "ps_goforward.wav"]:
    print("FAILED: expected exactly the two interrupted items redone, the rest skipped")
    sys.exit(1)
print("the rerun finished only the interrupted items")
PY
echo "slurm_local: OK"
