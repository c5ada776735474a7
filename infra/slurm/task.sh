#!/usr/bin/env bash
# One Slurm task = one process of a vemo cluster (index.sbatch starts one per node with srun;
# runs without Slurm given the variables). Writes the hostfile from the job's node list and the
# step's tasks per node (srun's default block distribution; the J-th task of a node listens on
# VEMO_PORT + J), then execs `vemo index` as process SLURM_PROCID of SLURM_NTASKS.
# Usage: task.sh JOB.toml [vemo index flags...]
# Env (srun sets the SLURM_ ones): SLURM_JOB_NODELIST, SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID,
# SLURM_CPUS_PER_TASK, SLURM_STEP_TASKS_PER_NODE (e.g. 2(x3),1; absent: one task per node); VEMO_PORT (2101), VEMO_WORKERS (default SLURM_CPUS_PER_TASK),
# VEMO_JOB_ID (default vemo-slurm-SLURM_JOB_ID; a --job-id flag wins), VEMO_BIN (default
# $CARGO_TARGET_DIR/debug/vemo when built, else vemo on PATH), VEMO_HOSTFILE (default in
# $TMPDIR), VEMO_BIND_ADDR (if set, this task listens on it, e.g. 0.0.0.0, not on its node name).
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 JOB.toml [vemo index flags...]" >&2; exit 2; }
job=$1
shift
: "${SLURM_JOB_NODELIST:?not in a Slurm job}" "${SLURM_PROCID:?}" "${SLURM_NTASKS:?}" "${SLURM_JOB_ID:?}"
port=${VEMO_PORT:-2101}
workers=${VEMO_WORKERS:-${SLURM_CPUS_PER_TASK:-1}}
job_id=${VEMO_JOB_ID:-vemo-slurm-$SLURM_JOB_ID}

bin=${VEMO_BIN:-}
if [[ -z $bin ]]; then
  env_sh="$(dirname "${BASH_SOURCE[0]}")/../env.sh"
  # shellcheck source=infra/env.sh
  if [[ -f $env_sh ]]; then source "$env_sh"; fi
  if [[ -n ${CARGO_TARGET_DIR:-} && -x $CARGO_TARGET_DIR/debug/vemo ]]; then
    bin=$CARGO_TARGET_DIR/debug/vemo
  else
    bin=vemo
  fi
fi

# Expands one node-list item, e.g. rack[1-2]-n[08-10,12] (zero padding kept), a line per host.
expand_item() {
  local item=$1 prefix rest ranges suffix range lo hi i
  local -a parts
  if [[ $item != *\[* ]]; then
    echo "$item"
    return
  fi
  prefix=${item%%\[*} rest=${item#*\[}
  ranges=${rest%%\]*} suffix=${rest#*\]}
  IFS=, read -ra parts <<<"$ranges"
  for range in "${parts[@]}"; do
    lo=${range%-*} hi=${range#*-}
    for ((i = 10#$lo; i <= 10#$hi; i++)); do
      expand_item "$prefix$(printf '%0*d' "${#lo}" "$i")$suffix"
    done
  done
}

# Expands Slurm's compressed node list (node[01-03,07],gpu-a1): commas outside brackets split.
expand_nodelist() {
  local list=$1 item="" c depth=0 k
  for ((k = 0; k < ${#list}; k++)); do
    c=${list:k:1}
    case $c in
      '[') depth=$((depth + 1)) ;;
      ']') depth=$((depth - 1)) ;;
      ,) if ((depth == 0)); then expand_item "$item"; item=""; continue; fi ;;
    esac
    item+=$c
  done
  [[ -z $item ]] || expand_item "$item"
}

# Expands a tasks-per-node list (2(x3),1) into one count per node.
expand_counts() {
  local part n r
  local -a parts
  IFS=, read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
      for ((r = 0; r < BASH_REMATCH[2]; r++)); do echo "${BASH_REMATCH[1]}"; done
    else
      n=$part
      echo "$n"
    fi
  done
}

if command -v scontrol >/dev/null; then
  hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
else
  hosts=$(expand_nodelist "$SLURM_JOB_NODELIST")
fi
if [[ -n ${SLURM_STEP_TASKS_PER_NODE:-} ]]; then
  counts=$(expand_counts "$SLURM_STEP_TASKS_PER_NODE")
else
  counts=$(while read -r _; do echo 1; done <<<"$hosts")
fi

hostfile=${VEMO_HOSTFILE:-${TMPDIR:-/tmp}/vemo-hosts-$SLURM_JOB_ID-$SLURM_PROCID}
i=0
while read -r host && read -r tasks <&3; do
  for ((j = 0; j < tasks; j++)); do
    line=$host
    if ((i == SLURM_PROCID)) && [[ -n ${VEMO_BIND_ADDR:-} ]]; then line=$VEMO_BIND_ADDR; fi
    echo "$line:$((port + j))"
    i=$((i + 1))
  done
done <<<"$hosts" 3<<<"$counts" >"$hostfile"
if ((i != SLURM_NTASKS)); then
  echo "task.sh: the node list and tasks per node give $i tasks, not SLURM_NTASKS=$SLURM_NTASKS;" \
    "run one task per node (--ntasks-per-node=1, threads with --cpus-per-task) or set" \
    "SLURM_STEP_TASKS_PER_NODE" >&2
  exit 2
fi

flags=(-n "$SLURM_NTASKS" -p "$SLURM_PROCID" -w "$workers" -h "$hostfile")
[[ " $* " == *" --no-progress "* ]] || flags+=(--no-progress)
[[ " $* " =~ \ --job-id[\ =] ]] || flags+=(--job-id "$job_id")
exec "$bin" index --job "$job" "${flags[@]}" "$@"
