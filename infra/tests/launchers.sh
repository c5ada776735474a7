#!/usr/bin/env bash
# Tests of the cluster launchers (infra/local/cluster.sh, infra/slurm/task.sh,
# infra/k8s/entrypoint.sh) against a fake vemo binary: no build, no Slurm, no Kubernetes.
# The fake records its arguments; FAKE_EXIT_P<i>=CODE makes process i fail (after 1 s),
# FAKE_HANG=1 makes the others hang (with a child) until killed.
# Usage: bash infra/tests/launchers.sh   (exit 1 if any check fails)
set -euo pipefail
infra=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vemo-launchers.XXXXXX")
fakes=$tmp/fake
mkdir -p "$fakes"

# Ends the fake processes a failed check may have left (by their recorded pids); forgets them.
reset() {
  local f
  for f in "$fakes"/pid-* "$fakes"/child-*; do if [[ -f $f ]]; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi; done
  rm -f "$fakes"/*
}
trap 'reset; rm -rf "$tmp"' EXIT

passed=0 failed=0
check() { # check DESCRIPTION COMMAND...: runs the command, counts and prints the outcome
  local name=$1
  shift
  if "$@"; then echo "ok   $name"; passed=$((passed + 1)); else echo "FAIL $name"; failed=$((failed + 1)); fi
}
same() { [[ $1 == "$2" ]] || { printf '  expected: %q\n  got:      %q\n' "$2" "$1"; return 1; }; }
has() { [[ $1 == *"$2"* ]] || { printf '  expected %q in %q\n' "$2" "$1"; return 1; }; }
args_of() { tr '\n' ' ' <"$fakes/args-$1"; } # process i's arguments on one line
arg_after() { grep -A1 -x -- "$2" "$fakes/args-$1" | tail -n 1; } # value of flag $2 of process $1
dead() { local f; for f in "$@"; do ! kill -0 "$(cat "$f")" 2>/dev/null || return 1; done; }

cat >"$tmp/vemo" <<'EOF'
#!/usr/bin/env bash
p=0 prev=""
for a in "$@"; do [[ $prev != -p ]] || p=$a; prev=$a; done
printf '%s\n' "$@" >"$FAKE_DIR/args-$p"
echo $$ >"$FAKE_DIR/pid-$p"
code=FAKE_EXIT_P$p
if [[ -n ${!code:-} ]]; then sleep 1; echo "fake process $p fails" >&2; exit "${!code}"; fi
if [[ -n ${FAKE_HANG:-} ]]; then sleep 1000 & echo $! >"$FAKE_DIR/child-$p"; wait; fi
if [[ $p == 0 ]]; then echo "awaiting connections (at 0/2)"; echo '{"items_written": 3}'; fi
EOF
chmod +x "$tmp/vemo"
touch "$tmp/job.toml"
export VEMO_BIN=$tmp/vemo FAKE_DIR=$fakes
unset VEMO_JOB_ID VEMO_CLUSTER_DIR VEMO_BASE_PORT VEMO_HOSTFILE VEMO_BIND_ADDR VEMO_WORKERS VEMO_PORT

echo "== syntax"
for s in local/cluster.sh slurm/task.sh slurm/index.sbatch k8s/entrypoint.sh tests/launchers.sh; do
  check "bash -n $s" bash -n "$infra/$s"
  check "$s is executable" test -x "$infra/$s"
done

echo "== (a) cluster.sh 3 2: three processes, one hostfile, one job id"
rc=0
out=$(TMPDIR=$tmp "$infra/local/cluster.sh" 3 2 "$tmp/job.toml" --output "$tmp/out" 2>"$tmp/a.err") || rc=$?
check "exit 0" same "$rc" 0
dir=$(sed -n 's/^cluster.sh: run folder //p' "$tmp/a.err")
check "run folder printed on stderr, made in TMPDIR" has "$dir/hosts" "$tmp/vemo-cluster."
check "hostfile: 3 loopback lines" same "$(grep -cE '^127\.0\.0\.1:[0-9]+$' "$dir/hosts")" 3
check "hostfile: 3 distinct ports" same "$(sort -u "$dir/hosts" | wc -l | tr -d ' ')" 3
id=$(arg_after 0 --job-id || true)
check "default job id cluster-<time>" has "$id" cluster-
for i in 0 1 2; do
  check "process $i flags" has "$(args_of $i)" \
    "index --job $tmp/job.toml -n 3 -p $i -w 2 -h $dir/hosts --job-id $id --no-progress --output $tmp/out "
done
check "summary (JSON only) on stdout" same "$out" '{"items_written": 3}'
check "summary.json written" same "$(cat "$dir/summary.json")" '{"items_written": 3}'
check "timely's stdout notice moved to process-0.log" grep -q 'awaiting connections' "$dir/process-0.log"
reset

VEMO_CLUSTER_DIR=$tmp/a2 VEMO_BASE_PORT=4500 "$infra/local/cluster.sh" 2 1 "$tmp/job.toml" \
  --job-id given-7 >/dev/null 2>&1 || true
check "VEMO_CLUSTER_DIR and VEMO_BASE_PORT" same "$(tr '\n' ' ' <"$tmp/a2/hosts")" \
  "127.0.0.1:4500 127.0.0.1:4501 "
check "--job-id flag given to all, once" same "$(cat "$fakes"/args-* | grep -c -- --job-id) $(arg_after 1 --job-id)" "2 given-7"
reset

echo "== (b) process 1 fails: the others are killed, the status passed on"
rc=0
start=$(date +%s)
FAKE_EXIT_P1=3 FAKE_HANG=1 VEMO_CLUSTER_DIR=$tmp/b "$infra/local/cluster.sh" 3 1 "$tmp/job.toml" \
  >/dev/null 2>"$tmp/b.err" || rc=$?
elapsed=$(($(date +%s) - start))
check "exit 3" same "$rc" 3
check "within 5 s (took ${elapsed} s)" test "$elapsed" -le 5
check "names the failed process" grep -q 'process 1 failed (exit 3)' "$tmp/b.err"
check "shows the tail of its log" grep -q 'fake process 1 fails' "$tmp/b.err"
check "hanging processes started" test -f "$fakes/child-0" -a -f "$fakes/child-2"
check "no process left (nor their children)" dead "$fakes"/pid-* "$fakes"/child-*
reset

echo "== (b2) cluster.sh killed by TERM: it stops its processes"
FAKE_HANG=1 VEMO_CLUSTER_DIR=$tmp/b2 "$infra/local/cluster.sh" 2 1 "$tmp/job.toml" >/dev/null 2>&1 &
launcher=$!
for _ in {1..50}; do [[ -f $fakes/child-0 && -f $fakes/child-1 ]] && break; sleep 0.1; done
kill -TERM "$launcher"
rc=0
wait "$launcher" || rc=$?
check "exit 143" same "$rc" 143
check "no process left (nor their children)" dead "$fakes"/pid-* "$fakes"/child-*
reset

echo "== (c) slurm task.sh: node list, process index, workers, job id"
# A PATH without scontrol, so task.sh expands the node list itself.
nobin=$tmp/path
mkdir -p "$nobin"
for t in bash env dirname wc cat sleep; do ln -s "$(command -v "$t")" "$nobin/$t"; done
slurm() { # slurm NODELIST PROCID NTASKS [VAR=VALUE...]: runs task.sh as that task
  local list=$1 procid=$2 ntasks=$3
  shift 3
  env -i PATH="$nobin" HOME="$tmp" TMPDIR="$tmp" VEMO_BIN="$VEMO_BIN" FAKE_DIR="$fakes" \
    SLURM_JOB_NODELIST="$list" SLURM_PROCID="$procid" SLURM_NTASKS="$ntasks" SLURM_JOB_ID=77 \
    SLURM_CPUS_PER_TASK=8 "$@" bash "$infra/slurm/task.sh" "$tmp/job.toml" >/dev/null 2>"$tmp/c.err"
}
hosts_of() { tr '\n' ' ' <"$(arg_after "$1" -h)"; } # process i's hostfile on one line
rc=0
slurm 'node[01-03],gpu-a1' 2 4 || rc=$?
check "exit 0" same "$rc" 0
check "hostfile node[01-03],gpu-a1" same "$(hosts_of 2)" "node01:2101 node02:2101 node03:2101 gpu-a1:2101 "
check "hostfile in TMPDIR" same "$(arg_after 2 -h)" "$tmp/vemo-hosts-77-2"
check "flags -n 4 -p 2 -w 8" has "$(args_of 2)" "index --job $tmp/job.toml -n 4 -p 2 -w 8 -h "
check "job id vemo-slurm-77" has "$(args_of 2)" "--no-progress --job-id vemo-slurm-77"
slurm 'node[1-2]' 0 2 || true
check "hostfile node[1-2]" same "$(hosts_of 0)" "node1:2101 node2:2101 "
slurm 'n[008-010]' 1 3 VEMO_PORT=3000 VEMO_WORKERS=2 || true
check "hostfile n[008-010] (zero padding), VEMO_PORT" same "$(hosts_of 1)" "n008:3000 n009:3000 n010:3000 "
check "VEMO_WORKERS" has "$(args_of 1)" " -w 2 "
slurm 'r[1-2]-n[1,3],x' 3 5 VEMO_BIND_ADDR=0.0.0.0 || true
check "hostfile r[1-2]-n[1,3],x; own line VEMO_BIND_ADDR" same "$(hosts_of 3)" \
  "r1-n1:2101 r1-n3:2101 r2-n1:2101 0.0.0.0:2101 x:2101 "
rc=0
slurm 'node[1-3]' 0 2 || rc=$?
check "nodes != tasks: exit 2" same "$rc" 2
slurm 'a,b[1-2]' 2 4 SLURM_STEP_TASKS_PER_NODE='2,1(x2)' || true
check "two tasks on a node: ports 2101 and 2102" same "$(hosts_of 2)" "a:2101 a:2102 b1:2101 b2:2101 "
rc=0
slurm 'a,b' 0 3 SLURM_STEP_TASKS_PER_NODE='1(x2)' || rc=$?
check "tasks per node != tasks: exit 2" same "$rc" 2
printf '#!/usr/bin/env bash\necho alpha; echo beta\n' >"$nobin/scontrol"
chmod +x "$nobin/scontrol"
slurm 'ignored[1-9]' 1 2 || true
check "scontrol show hostnames preferred when present" same "$(hosts_of 1)" "alpha:2101 beta:2101 "
reset
rm -f "$nobin/scontrol"

echo "== (d) k8s entrypoint.sh: pod DNS names, completion index"
k8s() { # k8s [VAR=VALUE...] [-- FLAGS...]: runs entrypoint.sh as pod 1 of 3
  env JOB_COMPLETION_INDEX=1 VEMO_PROCESSES=3 VEMO_JOB_NAME=vemo-index VEMO_SERVICE=vemo \
    VEMO_HOSTFILE="$tmp/k8s-hosts" VEMO_WORKERS=4 VEMO_JOB_UID=abc "$@"
}
rc=0
k8s bash "$infra/k8s/entrypoint.sh" "$tmp/job.toml" || rc=$?
check "exit 0" same "$rc" 0
check "hostfile <job>-<i>.<service>:2101" same "$(hosts_of 1)" \
  "vemo-index-0.vemo:2101 vemo-index-1.vemo:2101 vemo-index-2.vemo:2101 "
check "flags -n 3 -p 1 -w 4, job id" has "$(args_of 1)" \
  "index --job $tmp/job.toml -n 3 -p 1 -w 4 -h $tmp/k8s-hosts --no-progress --job-id vemo-index-abc"
k8s VEMO_NAMESPACE=ns VEMO_BIND_ADDR=0.0.0.0 bash "$infra/k8s/entrypoint.sh" "$tmp/job.toml" --job-id mine || true
check "VEMO_NAMESPACE (FQDNs), VEMO_BIND_ADDR (own line)" same "$(hosts_of 1)" \
  "vemo-index-0.vemo.ns.svc.cluster.local:2101 0.0.0.0:2101 vemo-index-2.vemo.ns.svc.cluster.local:2101 "
check "--job-id flag wins, once" same "$(grep -c -- --job-id "$fakes/args-1") $(arg_after 1 --job-id)" "1 mine"
reset

echo "== (e) cluster.sh usage errors exit 2"
usage_rc() { local rc=0; "$infra/local/cluster.sh" "$@" >/dev/null 2>&1 || rc=$?; same "$rc" 2; }
check "no arguments" usage_rc
check "N missing" usage_rc "$tmp/job.toml"
check "N = 0" usage_rc 0 2 "$tmp/job.toml"
check "W not a number" usage_rc 2 x "$tmp/job.toml"
check "no job file" usage_rc 2 2 "$tmp/missing.toml"
check "launcher's flag -w given" usage_rc 2 2 "$tmp/job.toml" -w 3
check "no process started" test -z "$(ls "$fakes")"

echo "== $passed passed, $failed failed"
((failed == 0))
