#!/usr/bin/env bash
# Kubernetes entrypoint: one pod of an Indexed Job (index-job.yaml) = one process of a vemo
# cluster. Writes the hostfile from the pods' DNS names (<job>-<i>.<service>, given by the
# Job's headless Service) and execs `vemo index` as process JOB_COMPLETION_INDEX.
# Usage: entrypoint.sh JOB.toml [vemo index flags...]
# Env: JOB_COMPLETION_INDEX (set by Kubernetes), VEMO_PROCESSES (= the Job's completions),
# VEMO_JOB_NAME, VEMO_SERVICE, VEMO_NAMESPACE (if set: FQDNs <...>.NS.svc.cluster.local),
# VEMO_PORT (2101), VEMO_WORKERS (default nproc), VEMO_JOB_ID (default VEMO_JOB_NAME-VEMO_JOB_UID;
# a --job-id flag wins), VEMO_BIND_ADDR (if set, this pod listens on it, e.g. 0.0.0.0, not on
# its own DNS name), VEMO_BIN (default vemo), VEMO_HOSTFILE (default /tmp/vemo-hosts).
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 JOB.toml [vemo index flags...]" >&2; exit 2; }
job=$1
shift
: "${JOB_COMPLETION_INDEX:?not in an Indexed Job}" "${VEMO_PROCESSES:?}" "${VEMO_JOB_NAME:?}" "${VEMO_SERVICE:?}"
port=${VEMO_PORT:-2101}
workers=${VEMO_WORKERS:-$(nproc)}
job_id=${VEMO_JOB_ID:-$VEMO_JOB_NAME-${VEMO_JOB_UID:-run}}
domain=${VEMO_NAMESPACE:+.$VEMO_NAMESPACE.svc.${VEMO_CLUSTER_DOMAIN:-cluster.local}}
hostfile=${VEMO_HOSTFILE:-/tmp/vemo-hosts}

for ((i = 0; i < VEMO_PROCESSES; i++)); do
  if ((i == JOB_COMPLETION_INDEX)) && [[ -n ${VEMO_BIND_ADDR:-} ]]; then
    echo "$VEMO_BIND_ADDR:$port"
  else
    echo "$VEMO_JOB_NAME-$i.$VEMO_SERVICE$domain:$port"
  fi
done >"$hostfile"

flags=(-n "$VEMO_PROCESSES" -p "$JOB_COMPLETION_INDEX" -w "$workers" -h "$hostfile")
[[ " $* " == *" --no-progress "* ]] || flags+=(--no-progress)
[[ " $* " =~ \ --job-id[\ =] ]] || flags+=(--job-id "$job_id")
exec "${VEMO_BIN:-vemo}" index --job "$job" "${flags[@]}" "$@"
