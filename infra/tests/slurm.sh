#!/usr/bin/env bash
# Slurm for real: a one-node Slurm cluster on this machine (Debian's slurm-wlm and munge:
# munged, slurmctld and slurmd in the foreground, state in a temporary folder, free ports),
# then `sbatch infra/slurm/index.sbatch` as a user would submit it:
#   (a) the sample job with 2 tasks (one node, two processes of one timely cluster) equals a
#       1-process run, row for row;
#   (b) a bigger job cancelled with scancel after its first commits, then submitted again:
#       every id exactly once in items or errors.
# Needs root (or sudo) for apt and the daemons. Called by infra/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/env.sh
repo=$PWD

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "== installing slurm-wlm and munge"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq slurm-wlm munge >/dev/null
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  scancel --user="$(id -un)" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$tmp/munge/munged.pid" ] && kill "$(cat "$tmp/munge/munged.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/log/*.log "$tmp"/slurm-*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done >&2; exit 1; }

echo "== starting munged, slurmctld and slurmd"
mkdir -p "$tmp"/{munge,state,spool,log}
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$tmp/munge/munge.key"
munged --force --key-file="$tmp/munge/munge.key" --socket="$tmp/munge/munge.socket" \
  --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/log/munged.log" --seed-file="$tmp/munge/seed"
node=$(hostname -s)
cat >"$tmp/slurm.conf" <<EOF
ClusterName=vemotest
SlurmctldHost=$node
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$node CPUs=$(nproc) State=UNKNOWN
PartitionName=vemo Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -D >"$tmp/log/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D >"$tmp/log/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qx idle && break
  sleep 1
done
sinfo -h -o %T | grep -qx idle || fail "the node never became idle"

export VEMO_BIN=$VEMO VEMO_PORT=$(free_port) VEMO_WORKERS=1
submit() { # submit OUT_LOG_NAME JOB.toml [vemo flags...]: sbatch with 2 tasks on this node
  local log=$1
  shift
  sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 \
    --output="$tmp/slurm-$log-%j.log" infra/slurm/index.sbatch "$@"
}
wait_gone() { # wait_gone JOBID: until squeue no longer lists it
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  fail "job $1 never ended"
}
state_of() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }

echo "== (a) the sample job: 2 Slurm tasks vs 1 process"
"$VEMO" index --job jobs/examples/sample.toml --output "$tmp/one" --no-progress >/dev/null 2>"$tmp/log/one.log" \
  || fail "the 1-process run failed"
job=$(submit sample jobs/examples/sample.toml --output "$tmp/two" --job-id slurm-sample)
wait_gone "$job"
[ "$(state_of "$job")" = COMPLETED ] || fail "job $job ended $(state_of "$job")"
python3 - "$tmp/one" "$tmp/two" <<'EOF' || fail "the Slurm run differs from the 1-process run"
import sys, lance, numpy as np
def rows(root):
    t = lance.dataset(f"{root}/items.lance").to_table().to_pylist()
    ids = [r["id"] for r in t]
    assert len(ids) == len(set(ids)), f"{root}: an id twice"
    return {r["id"]: r for r in t}
one, two = rows(sys.argv[1]), rows(sys.argv[2])
assert one.keys() == two.keys(), (sorted(one), sorted(two))
assert len({r["job_id"] for r in two.values()}) == 1
for i, a in one.items():
    b = two[i]
    assert a["content_hash"] == b["content_hash"] and a["entity_keys"] == b["entity_keys"], i
    assert a["spotted_text"] == b["spotted_text"], i
    for col in [c for c in a if "_emb_" in c or "_feat_" in c]:
        assert np.abs(np.array(a[col]) - np.array(b[col])).max() < 1e-4, (i, col)
print(f"   {len(one)} items equal, row for row")
EOF
grep -q '"items_written": 16' "$tmp"/slurm-sample-"$job".log || fail "no run summary in the job log"

echo "== (b) scancel mid-job, then submit again: every id once"
"$VEMO" corpus synth --items 600 --output "$tmp/corpus" --size 96 >/dev/null
cat >"$tmp/big.toml" <<EOF
[input]
uri = "$tmp/corpus"
[output]
uri = "$tmp/three"
[model]
tasks = ["semantic"]
[run]
shard_size = 8
EOF
job=$(submit big "$tmp/big.toml" --job-id slurm-big)
for _ in $(seq 600); do
  done_shards=$("$VEMO" status --output "$tmp/three" --json 2>/dev/null | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["shards_committed"])' 2>/dev/null || echo 0)
  ((done_shards >= 4)) && break
  sleep 0.5
done
scancel "$job"
wait_gone "$job"
partial=$("$VEMO" status --output "$tmp/three" --json 2>/dev/null | python3 -c \
  'import json,sys; s=json.load(sys.stdin); print(s["items"] + s["errors"])')
echo "   cancelled job $job ($(state_of "$job")) with $partial of 600 ids written"
((partial > 0 && partial < 600)) || fail "the cancel did not land mid-job ($partial of 600)"
job=$(submit big-again "$tmp/big.toml" --job-id slurm-big)
wait_gone "$job"
[ "$(state_of "$job")" = COMPLETED ] || fail "the resubmitted job $job ended $(state_of "$job")"
python3 - "$tmp/three" "$tmp/corpus/manifest.jsonl" <<'EOF' || fail "not every id exactly once"
import json, sys, lance
root, manifest = sys.argv[1], sys.argv[2]
want = {json.loads(l)["id"] for l in open(manifest) if l.strip()}
items = lance.dataset(f"{root}/items.lance").to_table(columns=["id"])["id"].to_pylist()
errors = lance.dataset(f"{root}/errors.lance").to_table(columns=["id"])["id"].to_pylist()
assert len(items) == len(set(items)) and len(errors) == len(set(errors)), "an id twice"
assert not set(items) & set(errors), "an id in both tables"
assert set(items) | set(errors) == want, "ids missing or extra"
print(f"   {len(items)} items + {len(errors)} errors = the 600 ids, each once")
EOF
echo "== slurm: ok"
