#!/usr/bin/env bash
# Multi-node GPU launcher for vmae_jax under Slurm: one task per node owning all of that node's GPUs, the nodes
# joined by jax.distributed with the first node as coordinator. launch/README.md has the full commands.
#
# Outside an allocation the script submits itself with sbatch; inside one (the batch job, or an salloc shell) it
# starts the tasks with srun. Each task gets JAX_COORDINATOR_ADDRESS (first node:port), JAX_NUM_PROCESSES
# ($SLURM_NTASKS) and JAX_PROCESS_ID ($SLURM_PROCID), which vmae_jax.main passes to jax.distributed.initialize().
# Every external command goes through `run`, so `--dry-run` (or DRY_RUN=1) prints the exact commands, one per line
# prefixed with '+ ', and runs nothing (no Slurm needed). Time limit and preemption: Slurm's SIGTERM makes the run
# save a checkpoint at the next step and exit 0; submitting the same command again (or --requeue) resumes it.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/gpu_slurm.sh --config=FILE[:ARG] --workdir=DIR [options] [-- extra vmae_jax.main flags]

run
  --config=FILE[:ARG]    config, relative to the repository root, e.g. configs/vitg_dual.py       required
  --workdir=DIR          checkpoints, metrics, results: a directory every node sees (a shared file system
                         or a bucket mounted at the same path); rerunning with it resumes          required
  --python=PYTHON        interpreter with vmae_jax and jax[cuda12] installed, on every node [python3]
  --env=KEY=VALUE        extra environment for vmae_jax.main (repeatable), e.g. XLA_FLAGS=...
  --repo=DIR             the checkout the tasks run in [the repository holding this script]

resources
  --nodes=N              nodes, one task each [1; inside an allocation: all of its nodes]
  --gpus-per-node=G      GPUs per node, all owned by the node's task [8]
  --cpus-per-task=C      CPU cores per task (video decoding workers) [Slurm's default]
  --partition=P, --account=A, --time=T (e.g. 2-00:00:00), --job-name=NAME [vmae]
  --requeue              let Slurm requeue the job after a preemption or node failure (it then resumes)
  --grace=SECONDS        SIGTERM the run this long before the time limit so it saves and exits; 0: off [300]
  --sbatch-arg=ARG       an extra sbatch option, e.g. --sbatch-arg=--exclusive (repeatable)
  --srun-arg=ARG         an extra srun option (repeatable)
  --port=PORT            jax.distributed coordinator port on the first node [12355]
  --log-dir=DIR          sbatch writes DIR/NAME-JOBID.out there [REPO/logs]
  --mode=MODE            auto (srun inside an allocation, else sbatch), sbatch or srun [auto]

  --dry-run              print the commands instead of running them (also DRY_RUN=1); outside an allocation
                         it also shows what the submitted job will run
  -h, --help             this text
EOF
}

die() {
  printf 'gpu_slurm.sh: %s\n' "$*" >&2
  exit 2
}

# One word as a shell would need it: bare when it holds only safe characters, else in single quotes.
quote() {
  local word=$1
  if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

quote_all() {
  local out="" word
  for word in "$@"; do
    out+="${out:+ }$(quote "$word")"
  done
  printf '%s' "$out"
}

# The one place external commands run; under --dry-run it only prints them (copy-pastable).
run() {
  if ((dry_run)); then
    printf '+ %s\n' "$(quote_all "$@")"
  else
    printf '+ %s\n' "$(quote_all "$@")" >&2
    "$@"
  fi
}

script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

config="" workdir="" python="python3" repo="" nodes="" gpus_per_node=8 cpus_per_task="" partition="" account=""
time_limit="" job_name="vmae" requeue=0 grace=300 port=12355 log_dir="" mode="auto"
dry_run=${DRY_RUN:-0}
env_vars=() sbatch_args=() srun_args=() main_args=()

value_options=(--config --workdir --python --env --repo --nodes --gpus-per-node --cpus-per-task --partition --account
               --time --job-name --grace --sbatch-arg --srun-arg --port --log-dir --mode)

while (($#)); do
  case $1 in
    --) shift; main_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --requeue) requeue=1 ;;
    --config=*) config=${1#*=} ;;
    --workdir=*) workdir=${1#*=} ;;
    --python=*) python=${1#*=} ;;
    --env=*) env_vars+=("${1#*=}") ;;
    --repo=*) repo=${1#*=} ;;
    --nodes=*) nodes=${1#*=} ;;
    --gpus-per-node=*) gpus_per_node=${1#*=} ;;
    --cpus-per-task=*) cpus_per_task=${1#*=} ;;
    --partition=*) partition=${1#*=} ;;
    --account=*) account=${1#*=} ;;
    --time=*) time_limit=${1#*=} ;;
    --job-name=*) job_name=${1#*=} ;;
    --grace=*) grace=${1#*=} ;;
    --sbatch-arg=*) sbatch_args+=("${1#*=}") ;;
    --srun-arg=*) srun_args+=("${1#*=}") ;;
    --port=*) port=${1#*=} ;;
    --log-dir=*) log_dir=${1#*=} ;;
    --mode=*) mode=${1#*=} ;;
    -*)
      for opt in "${value_options[@]}"; do
        [[ $1 != "$opt" ]] || die "option $1 takes a value: $1=VALUE"
      done
      die "unknown option '$1' (see --help)" ;;
    *) die "unexpected argument '$1' (vmae_jax.main flags go after '--')" ;;
  esac
  shift
done

# ---- checks: everything is validated before the first command runs ----

[[ $dry_run == 0 || $dry_run == 1 ]] || die "DRY_RUN must be 0 or 1, got '$dry_run'"
repo=${repo:-$(dirname "$(dirname "$script")")}
[[ -f $repo/setup.py && -d $repo/vmae_jax ]] || die "--repo=$repo is not a vmae_jax checkout (no setup.py, vmae_jax/)"
repo=$(cd "$repo" && pwd)
[[ -n $config ]] || die "--config=configs/NAME.py[:ARG] is required"
[[ -f $repo/${config%%:*} ]] || die "--config: no file $repo/${config%%:*} (paths are relative to the repository root)"
[[ -n $workdir ]] || die "--workdir=DIR is required (a directory every node sees)"
[[ $workdir != *://* ]] || die "--workdir=$workdir: give a path, not a URL (mount a bucket at the same path on every node)"
# The tasks run in the repository: a relative workdir means one relative to where this command was typed.
[[ $workdir == /* ]] || workdir="$PWD/$workdir"
log_dir=${log_dir:-$repo/logs}
[[ $log_dir == /* ]] || log_dir="$PWD/$log_dir"
case $mode in
  auto) if [[ -n ${SLURM_JOB_ID-} ]]; then mode=srun; else mode=sbatch; fi ;;
  sbatch|srun) ;;
  *) die "--mode='$mode' must be auto, sbatch or srun" ;;
esac
if [[ $mode == srun && -n ${SLURM_JOB_ID-} ]]; then
  allocated=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-}}
  [[ -n $allocated ]] || die "inside job $SLURM_JOB_ID but SLURM_JOB_NUM_NODES is not set"
  nodes=${nodes:-$allocated}
  if [[ $nodes =~ ^[0-9]+$ ]] && ((10#$nodes > allocated)); then
    die "--nodes=$nodes but the allocation has $allocated nodes"
  fi
elif [[ $mode == srun ]] && ((!dry_run)); then
  die "--mode=srun needs a Slurm allocation (run it in the batch job or an salloc shell)"
fi
nodes=${nodes:-1}
[[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes='$nodes' must be a positive number"
[[ $gpus_per_node =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node='$gpus_per_node' must be a positive number"
[[ -z $cpus_per_task || $cpus_per_task =~ ^[1-9][0-9]*$ ]] || die "--cpus-per-task='$cpus_per_task' must be a positive number"
[[ $grace =~ ^[0-9]+$ ]] || die "--grace='$grace' must be a number of seconds"
if [[ ! $port =~ ^[0-9]+$ ]] || ((10#$port < 1024 || 10#$port > 65535)); then
  die "--port='$port' must be in 1024..65535"
fi
[[ $job_name =~ ^[A-Za-z0-9._-]+$ ]] || die "--job-name='$job_name': letters, digits, '.', '_' and '-' only"
if [[ -n ${env_vars[*]-} ]]; then
  for kv in "${env_vars[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env='$kv' must be KEY=VALUE"
    case ${kv%%=*} in
      JAX_COORDINATOR_ADDRESS|JAX_NUM_PROCESSES|JAX_PROCESS_ID) die "--env: ${kv%%=*} is set by this script" ;;
    esac
  done
fi
if [[ -n ${main_args[*]-} ]]; then
  for arg in "${main_args[@]}"; do
    case $arg in
      --config=*|--config|--workdir=*|--workdir) die "give $arg as an option of gpu_slurm.sh, not after '--'" ;;
    esac
  done
fi

# ---- inside an allocation: one task per node ----

launch_tasks() {
  local first_node
  if ((dry_run)); then
    run scontrol show hostnames "${SLURM_JOB_NODELIST-\$SLURM_JOB_NODELIST}"
    first_node=FIRST_NODE   # stands for the first line the command above prints
  else
    # The whole list is read, then cut here: `| head -n 1` would make scontrol die of SIGPIPE under pipefail.
    local hosts
    hosts=$(run scontrol show hostnames "$SLURM_JOB_NODELIST")
    first_node=${hosts%%$'\n'*}
    [[ -n $first_node ]] || die "scontrol printed no host for SLURM_JOB_NODELIST='$SLURM_JOB_NODELIST'"
  fi
  local cmd=(env "JAX_COORDINATOR_ADDRESS=$first_node:$port")
  if [[ -n ${env_vars[*]-} ]]; then
    cmd+=("${env_vars[@]}")
  fi
  cmd+=(srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --gpus-per-task="$gpus_per_node")
  if [[ -n $cpus_per_task ]]; then
    cmd+=(--cpus-per-task="$cpus_per_task")
  fi
  # One failed task stops the others (they would wait forever in a collective); output lines carry the task id.
  cmd+=(--kill-on-bad-exit=1 --label --chdir="$repo")
  if [[ -n ${srun_args[*]-} ]]; then
    cmd+=("${srun_args[@]}")
  fi
  # The process count and id are per task, so they are read from Slurm's task environment by a small bash -c
  # (single quotes on purpose: they expand in each task, not here).
  # shellcheck disable=SC2016
  cmd+=(bash -c 'export JAX_NUM_PROCESSES="$SLURM_NTASKS" JAX_PROCESS_ID="$SLURM_PROCID"; exec "$@"' vmae_task
        "$python" -m vmae_jax.main --config="$config" --workdir="$workdir")
  if [[ -n ${main_args[*]-} ]]; then
    cmd+=("${main_args[@]}")
  fi
  run "${cmd[@]}"
}

# ---- outside: submit this script as the batch job, which then takes the branch above ----

submit() {
  # The same GPU request as the srun below (per task); Slurm wants an explicit --ntasks with --gpus-per-task.
  local cmd=(sbatch --job-name="$job_name" --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1
             --gpus-per-task="$gpus_per_node")
  if [[ -n $cpus_per_task ]]; then cmd+=(--cpus-per-task="$cpus_per_task"); fi
  if [[ -n $partition ]]; then cmd+=(--partition="$partition"); fi
  if [[ -n $account ]]; then cmd+=(--account="$account"); fi
  if [[ -n $time_limit ]]; then cmd+=(--time="$time_limit"); fi
  if ((requeue)); then cmd+=(--requeue); fi
  if ((grace > 0)); then cmd+=(--signal="TERM@$grace"); fi
  cmd+=(--output="$log_dir/%x-%j.out")
  if [[ -n ${sbatch_args[*]-} ]]; then cmd+=("${sbatch_args[@]}"); fi
  # sbatch runs a copy of the script, so the job is told where the checkout is and to launch the tasks.
  cmd+=("$script" --mode=srun --repo="$repo" --config="$config" --workdir="$workdir" --nodes="$nodes"
        --gpus-per-node="$gpus_per_node" --port="$port" --python="$python")
  if [[ -n $cpus_per_task ]]; then cmd+=(--cpus-per-task="$cpus_per_task"); fi
  local item
  if [[ -n ${env_vars[*]-} ]]; then
    for item in "${env_vars[@]}"; do cmd+=(--env="$item"); done
  fi
  if [[ -n ${srun_args[*]-} ]]; then
    for item in "${srun_args[@]}"; do cmd+=(--srun-arg="$item"); done
  fi
  if [[ -n ${main_args[*]-} ]]; then
    cmd+=(-- "${main_args[@]}")
  fi
  run mkdir -p "$log_dir"
  run "${cmd[@]}"
  if ((dry_run)); then
    printf '# the job then runs, in its allocation:\n'
    launch_tasks
  fi
}

if [[ $mode == srun ]]; then
  launch_tasks
else
  submit
fi
