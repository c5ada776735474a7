#!/usr/bin/env bash
# Local cluster: runs N `vemo index` processes of one timely cluster on this host (loopback
# ports), W workers each. Timely has no fault tolerance, so one failed process stops the rest.
# Usage: infra/local/cluster.sh N W JOB.toml [vemo index flags...]
# Env: VEMO_BIN (default $CARGO_TARGET_DIR/debug/vemo), VEMO_CLUSTER_DIR (run folder; default a
# new temp folder), VEMO_BASE_PORT (ports BASE..BASE+N-1; default free ones), VEMO_JOB_ID
# (default cluster-<UTC time>; a --job-id flag wins).
# The run folder holds hosts, process-I.log (process 0: its stderr) and summary.json (process
# 0's stdout), printed on success. Exit: 0, the first failing process's status, 2 on bad usage.
set -euo pipefail
# shellcheck source=infra/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../env.sh"

usage() {
  echo "usage: $0 N W JOB.toml [vemo index flags...]   (N processes x W workers)" >&2
  exit 2
}
[[ $# -ge 3 && $1 =~ ^[1-9][0-9]*$ && $2 =~ ^[1-9][0-9]*$ ]] || usage
n=$1 w=$2 job=$3
shift 3
[[ -f $job ]] || { echo "cluster.sh: no job file $job" >&2; exit 2; }
bin=${VEMO_BIN:-$CARGO_TARGET_DIR/debug/vemo}
[[ -x $bin ]] || { echo "cluster.sh: no binary $bin (build it, or set VEMO_BIN)" >&2; exit 2; }

# The launcher owns the cluster flags; --job-id is taken out and given to every process.
job_id=${VEMO_JOB_ID:-cluster-$(date -u +%Y%m%dT%H%M%SZ)}
extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --job-id) [[ $# -ge 2 ]] || usage; job_id=$2; shift ;;
    --job-id=*) job_id=${1#*=} ;;
    --no-progress) ;;
    -[nphw]* | --processes* | --process | --process=* | --workers* | --hostfile* | --job | --job=*)
      echo "cluster.sh: $1 is set by the launcher" >&2; usage ;;
    *) extra+=("$1") ;;
  esac
  shift
done

dir=${VEMO_CLUSTER_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/vemo-cluster.XXXXXX")}
mkdir -p "$dir"
echo "cluster.sh: run folder $dir" >&2
if [[ -n ${VEMO_BASE_PORT:-} ]]; then
  ports=$(seq "$VEMO_BASE_PORT" $((VEMO_BASE_PORT + n - 1)))
else # free ports: bind N sockets at once (so they differ), then release them
  ports=$(python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$n")
fi
for port in $ports; do echo "127.0.0.1:$port"; done >"$dir/hosts"

pids=() # pid (= process group) per process; "" once reaped
signal() { kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null; } # group, else pid
# Stops every process still running: TERM to its process group, KILL after 5 s.
stop_all() {
  local pid live _
  for pid in ${pids[@]+"${pids[@]}"}; do [[ -z $pid ]] || signal TERM "$pid" || true; done
  for _ in {1..50}; do
    live=0
    for pid in ${pids[@]+"${pids[@]}"}; do [[ -z $pid ]] || ! signal 0 "$pid" || live=1; done
    ((live)) || break
    sleep 0.1
  done
  for pid in ${pids[@]+"${pids[@]}"}; do [[ -z $pid ]] || { signal KILL "$pid"; wait "$pid"; } || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

set -m # each process gets its own process group, so stop_all also takes its children
for ((i = 0; i < n; i++)); do
  args=(index --job "$job" -n "$n" -p "$i" -w "$w" -h "$dir/hosts" --job-id "$job_id" --no-progress)
  args+=(${extra[@]+"${extra[@]}"})
  if ((i == 0)); then
    "$bin" "${args[@]}" >"$dir/summary.json" 2>"$dir/process-0.log" </dev/null &
  else
    "$bin" "${args[@]}" >"$dir/process-$i.log" 2>&1 </dev/null &
  fi
  pids+=($!)
done
set +m # (and no job notices on stderr)

# Poll: reap the processes that ended; the first non-zero exit stops the others.
left=$n
while ((left > 0)); do
  for i in "${!pids[@]}"; do
    pid=${pids[i]}
    if [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null; then continue; fi # reaped, or running
    status=0
    wait "$pid" || status=$?
    pids[i]=""
    left=$((left - 1))
    if ((status != 0)); then
      stop_all
      log=$dir/process-$i.log
      echo "cluster.sh: process $i failed (exit $status); stopped the others. Tail of $log:" >&2
      tail -n 20 "$log" >&2 || true
      exit "$status"
    fi
  done
  ((left == 0)) || sleep 0.2
done

# Timely prints connection notices on stdout before the run: keep the JSON only.
summary=$dir/summary.json
if grep -q '^{' "$summary"; then
  sed '/^{/,$d' "$summary" >>"$dir/process-0.log"
  sed -n '/^{/,$p' "$summary" >"$summary.tmp" && mv "$summary.tmp" "$summary"
fi
cat "$summary"
