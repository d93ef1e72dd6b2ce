#!/usr/bin/env bash
# Cloud TPU VM launcher for vmae_jax: create a slice (a plain TPU VM or a queued resource, spot or not), install
# the package and Cloud Storage FUSE on every worker, mount the bucket and run `python -m vmae_jax.main` on every
# worker at once with its workdir on that mount, follow and stop the run, delete the slice. launch/README.md has the
# full commands.
#
# Every external command goes through `run`, so `--dry-run` (or DRY_RUN=1) prints the exact commands, one per line
# prefixed with '+ ', and runs nothing (no gcloud needed). Multi-host: the same command runs on every worker
# (`--worker=all`) and vmae_jax.main calls jax.distributed.initialize(), which finds the other workers by itself on
# a TPU VM; VMAE_MULTIHOST=1 states that explicitly. Workdir: the trainer writes with plain file operations, so it
# gets a local path, ~/gcs/BUCKET/runs/RUN, on a gcsfuse mount of gs://BUCKET that `train` makes on every worker.
# Preemption: checkpoints live in the bucket, so after a spot slice is preempted, recreating it and running the same
# `train` (or `up`) command resumes the run.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/tpu_vm.sh COMMAND --name=TPU --zone=ZONE [options] [-- extra vmae_jax.main flags]

commands
  create    create the slice: `tpu-vm create`, or `queued-resources create` with --queued
  wait      poll until the slice is usable (queued resource ACTIVE, TPU VM READY)
  install   copy this checkout (or --git) to every worker, make a venv, pip install -e . 'jax[tpu]', and install
            gcsfuse from Google's apt repository where it is missing
  train     mount the bucket with gcsfuse on every worker (unless mounted already), then start vmae_jax.main there
            in the background (nohup), one log per worker
  up        create + wait + install + train
  logs      show the end of a worker's log (--worker=N, default 0)
  stop      send SIGTERM to the run on every worker: it saves a checkpoint at the next step and exits
  status    describe the slice (or the queued resource)
  delete    delete the slice (a queued resource with --force, which deletes its TPU VM too)

slice options
  --name=TPU               TPU VM name (node id)                                   required
  --zone=ZONE              e.g. us-central2-b                                      required
  --project=PROJECT        gcloud project (default: gcloud's configured project)
  --accelerator=TYPE       accelerator type, e.g. v4-32, v5litepod-32, v5p-64, v6e-16   [v4-32]
  --runtime-version=V      TPU software version [from the accelerator: v4 and older tpu-ubuntu2204-base,
                           v5litepod v2-alpha-tpuv5-lite, v5p v2-alpha-tpuv5, v6e v2-alpha-tpuv6e]
  --spot                   Spot VMs (preemptible at any time; resume by recreating and rerunning)
  --queued                 request the slice through a queued resource (waits for capacity)
  --qr-id=ID               queued resource id [the --name]
  --scopes=SCOPES          service-account scopes of the VMs [https://www.googleapis.com/auth/cloud-platform]
  --poll=SECONDS           `wait`: seconds between state checks [60]
  --yes                    `delete`: no confirmation prompt (gcloud --quiet)

install options
  --git=URL                clone this repository URL on the workers instead of copying the local checkout
  --ref=REF                `--git`: branch, tag or commit to check out [main]
  --python=PYTHON          interpreter for the venv, >= 3.11; apt-installed when missing [python3.11]
  --jax=SPEC               pip requirement for jax with the TPU runtime ['jax[tpu]']

run options
  --config=FILE[:ARG]      config, relative to the repository root, e.g. configs/vitg_dual.py   (train, up)
  --bucket=gs://BUCKET     with --run: the run's files go to gs://BUCKET/runs/RUN, which vmae_jax.main sees as
                           its workdir ~/MOUNT_DIR/BUCKET/runs/RUN on the gcsfuse mount of the bucket
  --run=RUN                run name (letters, digits, . _ -); default: the last part of --workdir
  --workdir=gs://BUCKET/PATH   instead of --bucket/--run: any path in the bucket (vmae_jax.main gets
                           ~/MOUNT_DIR/BUCKET/PATH); PATH: letters, digits, . _ - and /
  --gcsfuse-flags=FLAGS    gcsfuse mount flags [--implicit-dirs --rename-dir-limit=100000]
  --env=KEY=VALUE          extra environment for vmae_jax.main (repeatable), e.g. LIBTPU_INIT_ARGS=...
  --worker=N               `logs`: which worker [0]
  --lines=N                `logs`: how many lines [50]

remote layout (relative to the home directory of each worker)
  --remote-dir=DIR         the code [vmae_jax]
  --venv=DIR               the virtualenv [vmae_venv]
  --log-dir=DIR            RUN.HOSTNAME.log and RUN.HOSTNAME.pid of each worker [vmae_logs]
  --mount-dir=DIR          where `train` mounts the bucket: DIR/BUCKET [gcs]

  --dry-run                print the commands instead of running them (also DRY_RUN=1)
  -h, --help               this text
EOF
}

die() {
  printf 'tpu_vm.sh: %s\n' "$*" >&2
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

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

command="" name="" zone="" project="" accelerator="v4-32" runtime_version="" spot=0 queued=0 qr_id=""
scopes="https://www.googleapis.com/auth/cloud-platform" poll=60 yes=0
git_url="" git_ref="main" python="python3.11" jax_spec="jax[tpu]"
config="" bucket="" run_name="" workdir="" bucket_name="" bucket_path="" worker=0 lines=50
gcsfuse_flags="--implicit-dirs --rename-dir-limit=100000"
remote_dir="vmae_jax" venv="vmae_venv" log_dir="vmae_logs" mount_dir="gcs"
dry_run=${DRY_RUN:-0}
env_vars=() main_args=()

value_options=(--name --zone --project --accelerator --runtime-version --qr-id --scopes --poll --git --ref --python
               --jax --config --bucket --run --workdir --gcsfuse-flags --env --worker --lines --remote-dir --venv
               --log-dir --mount-dir)

while (($#)); do
  case $1 in
    --) shift; main_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --spot) spot=1 ;;
    --queued) queued=1 ;;
    --yes) yes=1 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --accelerator=*) accelerator=${1#*=} ;;
    --runtime-version=*) runtime_version=${1#*=} ;;
    --qr-id=*) qr_id=${1#*=} ;;
    --scopes=*) scopes=${1#*=} ;;
    --poll=*) poll=${1#*=} ;;
    --git=*) git_url=${1#*=} ;;
    --ref=*) git_ref=${1#*=} ;;
    --python=*) python=${1#*=} ;;
    --jax=*) jax_spec=${1#*=} ;;
    --config=*) config=${1#*=} ;;
    --bucket=*) bucket=${1#*=} ;;
    --run=*) run_name=${1#*=} ;;
    --workdir=*) workdir=${1#*=} ;;
    --gcsfuse-flags=*) gcsfuse_flags=${1#*=} ;;
    --env=*) env_vars+=("${1#*=}") ;;
    --worker=*) worker=${1#*=} ;;
    --lines=*) lines=${1#*=} ;;
    --remote-dir=*) remote_dir=${1#*=} ;;
    --venv=*) venv=${1#*=} ;;
    --log-dir=*) log_dir=${1#*=} ;;
    --mount-dir=*) mount_dir=${1#*=} ;;
    -*)
      for opt in "${value_options[@]}"; do
        [[ $1 != "$opt" ]] || die "option $1 takes a value: $1=VALUE"
      done
      die "unknown option '$1' (see --help)" ;;
    *)
      [[ -z $command ]] || die "one command at a time: got '$command' and '$1'"
      command=$1 ;;
  esac
  shift
done

# ---- checks: everything is validated before the first command runs ----

[[ $dry_run == 0 || $dry_run == 1 ]] || die "DRY_RUN must be 0 or 1, got '$dry_run'"
[[ -n $command ]] || { usage >&2; die "no command given"; }
case $command in
  create|wait|install|train|up|logs|stop|status|delete) ;;
  *) die "unknown command '$command' (create, wait, install, train, up, logs, stop, status, delete)" ;;
esac
[[ -n $name ]] || die "--name=TPU is required"
[[ $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name='$name': lowercase letters, digits and '-'"
[[ -n $zone ]] || die "--zone=ZONE is required"
qr_id=${qr_id:-$name}
[[ $accelerator =~ ^v[0-9]+[a-z]*-[0-9]+$ ]] || die "--accelerator='$accelerator' is not like v4-32 or v5litepod-16"
if [[ -z $runtime_version ]]; then
  case $accelerator in
    v6e-*) runtime_version=v2-alpha-tpuv6e ;;
    v5p-*) runtime_version=v2-alpha-tpuv5 ;;
    v5litepod-*) runtime_version=v2-alpha-tpuv5-lite ;;
    v2-*|v3-*|v4-*) runtime_version=tpu-ubuntu2204-base ;;
    *) die "no default runtime for --accelerator=$accelerator; give --runtime-version=VERSION" ;;
  esac
fi
[[ $poll =~ ^[1-9][0-9]*$ ]] || die "--poll='$poll' must be a positive number of seconds"
[[ $worker =~ ^[0-9]+$ ]] || die "--worker='$worker' must be a worker number"
[[ $lines =~ ^[1-9][0-9]*$ ]] || die "--lines='$lines' must be a positive number"
# The remote paths are written into remote shell commands unquoted (next to $HOME), so they must be plain.
for pair in "--remote-dir=$remote_dir" "--venv=$venv" "--log-dir=$log_dir" "--mount-dir=$mount_dir"; do
  [[ ${pair#*=} =~ ^[A-Za-z0-9_][A-Za-z0-9_./-]*$ ]] || die "$pair: a plain path relative to the remote home"
done
[[ $python =~ ^[A-Za-z0-9_./-]+$ ]] || die "--python='$python' is not a plain interpreter name"
# Split into words on the worker, so no shell syntax in it.
[[ $gcsfuse_flags =~ ^[-A-Za-z0-9_=.,/:\ ]*$ ]] || die "--gcsfuse-flags='$gcsfuse_flags': plain flags only (letters, digits, - _ = . , / : and spaces)"
if [[ -n ${env_vars[*]-} ]]; then
  for kv in "${env_vars[@]}"; do
    [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env='$kv' must be KEY=VALUE"
  done
fi

# The run: where its files go in the bucket (the only state that must survive a preemption), the workdir that
# vmae_jax.main gets for it on the gcsfuse mount, and the run's name (log and pid file names). The workers share no
# disk and a TPU VM's disk is gone after a preemption, so the files must go to the bucket; the trainer writes with
# plain file operations, so it gets the mount path, never the gs:// URL.
needs_run() {
  if [[ -z $workdir ]]; then
    [[ -n $bucket && -n $run_name ]] || die "$command needs --bucket=gs://BUCKET and --run=NAME (or --workdir=gs://BUCKET/PATH)"
    [[ $bucket =~ ^gs://[a-z0-9][-a-z0-9_.]*[a-z0-9]/?$ ]] || die "--bucket='$bucket' must be gs://BUCKET"
    workdir="${bucket%/}/runs/$run_name"
  else
    [[ -z $bucket ]] || die "give --bucket=gs://BUCKET (with --run) or --workdir=gs://BUCKET/PATH, not both"
  fi
  [[ $workdir =~ ^gs://([a-z0-9][-a-z0-9_.]*[a-z0-9])/([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)/?$ ]] ||
    die "--workdir='$workdir' must be gs://BUCKET/PATH, PATH of letters, digits, . _ - and / (the bucket keeps the run after a preemption)"
  bucket_name=${BASH_REMATCH[1]} bucket_path=${BASH_REMATCH[2]}
  # '.' or '..' would lead off the mount onto the worker's own disk, which a preemption wipes.
  [[ ! /$bucket_path/ =~ /\.\.?/ ]] || die "--workdir='$workdir': no '.' or '..' in the path"
  workdir=gs://$bucket_name/$bucket_path
  run_name=${run_name:-${bucket_path##*/}}
  [[ $run_name =~ ^[A-Za-z0-9._-]+$ ]] || die "--run='$run_name': letters, digits, '.', '_' and '-' only"
}

needs_config() {
  [[ -n $config ]] || die "$command needs --config=configs/NAME.py[:ARG]"
  [[ -f $repo_root/${config%%:*} ]] || die "--config: no file $repo_root/${config%%:*} (paths are relative to the repository root)"
  if [[ -n ${main_args[*]-} ]]; then
    for arg in "${main_args[@]}"; do
      case $arg in
        --config=*|--config|--workdir=*|--workdir) die "give $arg as an option of tpu_vm.sh, not after '--'" ;;
      esac
    done
  fi
}

case $command in
  train|up) needs_run; needs_config ;;
  stop|logs) needs_run ;;
esac

gcloud_where=(--zone="$zone")
[[ -z $project ]] || gcloud_where+=(--project="$project")

# ---- the steps ----

create() {
  local cmd
  if ((queued)); then
    cmd=(gcloud compute tpus queued-resources create "$qr_id" --node-id="$name" "${gcloud_where[@]}"
         --accelerator-type="$accelerator" --runtime-version="$runtime_version" --scopes="$scopes")
  else
    cmd=(gcloud compute tpus tpu-vm create "$name" "${gcloud_where[@]}"
         --accelerator-type="$accelerator" --version="$runtime_version" --scopes="$scopes")
  fi
  if ((spot)); then
    cmd+=(--spot)
  fi
  run "${cmd[@]}"
}

# Sets `describe` to the command that shows the slice (the queued resource with --queued).
describe_cmd() {
  if ((queued)); then
    describe=(gcloud compute tpus queued-resources describe "$qr_id" "${gcloud_where[@]}")
  else
    describe=(gcloud compute tpus tpu-vm describe "$name" "${gcloud_where[@]}")
  fi
}

status() {
  describe_cmd
  run "${describe[@]}"
}

# Queued resources go WAITING_FOR_RESOURCES -> PROVISIONING -> ACTIVE; a plain TPU VM CREATING -> READY.
wait_ready() {
  local state ready field
  if ((queued)); then ready=ACTIVE field='value(state.state)'; else ready=READY field='value(state)'; fi
  describe_cmd
  describe+=(--format="$field")
  if ((dry_run)); then
    run "${describe[@]}"
    printf '# (dry run) the command above is repeated every %ss until it prints %s\n' "$poll" "$ready"
    return
  fi
  local failures=0
  while true; do
    # A failed describe (a passing network error over hours of queueing) is retried; five in a row stop.
    if state=$(run "${describe[@]}"); then
      failures=0
    else
      failures=$((failures + 1))
      ((failures < 5)) || { printf 'tpu_vm.sh: describe failed %s times in a row\n' "$failures" >&2; exit 1; }
    fi
    case $state in
      "$ready") printf 'tpu_vm.sh: %s is %s\n' "$name" "$state" >&2; return ;;
      FAILED|SUSPENDING|SUSPENDED|PREEMPTED|TERMINATED|STOPPED)
        printf 'tpu_vm.sh: %s is %s; delete it and create it again\n' "$name" "$state" >&2; exit 1 ;;
    esac
    printf 'tpu_vm.sh: %s is %s; next check in %ss\n' "$name" "${state:-unknown}" "$poll" >&2
    sleep "$poll"
  done
}

# Remote shell function: is process $1 running? A finished process that nobody reaped yet (a zombie, where the
# init process does not reap, e.g. in containers) does not count. Single quotes: it expands on the worker.
# shellcheck disable=SC2016
alive='alive() { kill -0 "$1" 2>/dev/null && ! ps -o stat= -p "$1" | grep -q Z; }'

on_workers() {  # on_workers WORKER SHELL_COMMAND
  run gcloud compute tpus tpu-vm ssh "$name" "${gcloud_where[@]}" --worker="$1" --command="$2"
}

install() {
  local fetch
  if [[ -n $git_url ]]; then
    fetch="rm -rf $remote_dir; git clone --quiet $(quote "$git_url") $remote_dir"
    fetch+="; git -C $remote_dir checkout --quiet $(quote "$git_ref")"
  else
    # Only what `pip install -e .` and the run need: no .git, no local venv or caches.
    local tarball="${TMPDIR:-/tmp}/vmae_jax_src_$name.tgz"
    run tar -czf "$tarball" --exclude=__pycache__ -C "$repo_root" setup.py vmae_jax configs
    run gcloud compute tpus tpu-vm scp "$tarball" "$name:vmae_jax_src.tgz" "${gcloud_where[@]}" --worker=all
    run rm -f "$tarball"
    fetch="rm -rf $remote_dir; mkdir -p $remote_dir; tar -xzf vmae_jax_src.tgz -C $remote_dir"
  fi
  # TPU VM images ship Python 3.10; the project needs >= 3.11. gcsfuse (the bucket mount of `train`) comes from
  # Google's apt repository gcsfuse-CODENAME, its key kept in a keyring that only that repository trusts.
  local repo="https://packages.cloud.google.com/apt" keyring=/usr/share/keyrings/cloud.google.asc
  local setup="set -e; $fetch"
  # `if` rather than `||`: under `set -e` a failed step inside `a || { b && c; }` would not stop the script.
  setup+="; if ! command -v $python >/dev/null; then sudo apt-get update -q; sudo apt-get install -y -q $python $python-venv; fi"
  setup+="; if ! command -v gcsfuse >/dev/null; then"
  setup+=" echo \"deb [signed-by=$keyring] $repo gcsfuse-\$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list"
  setup+="; sudo curl -fsSL -o $keyring $repo/doc/apt-key.gpg"
  setup+="; sudo apt-get update -q; sudo apt-get install -y -q gcsfuse; fi"
  setup+="; $python -m venv \$HOME/$venv"
  setup+="; \$HOME/$venv/bin/pip install -q -U pip"
  setup+="; \$HOME/$venv/bin/pip install -q -e \$HOME/$remote_dir $(quote "$jax_spec")"
  setup+="; \$HOME/$venv/bin/python -c 'import jax, vmae_jax; print(\"vmae_jax installed, jax\", jax.__version__)'"
  setup+="; gcsfuse --version"
  on_workers all "$setup"
}

train() {
  local envs="VMAE_MULTIHOST=1" kv
  if [[ -n ${env_vars[*]-} ]]; then
    for kv in "${env_vars[@]}"; do envs+=" ${kv%%=*}=$(quote "${kv#*=}")"; done
  fi
  # The bucket's mount point and the workdir under it: plain (checked) words, unquoted next to $HOME.
  local mnt="\$HOME/$mount_dir/$bucket_name"
  local main
  main="\$HOME/$venv/bin/python -m vmae_jax.main $(quote "--config=$config") --workdir=$mnt/$bucket_path"
  if [[ -n ${main_args[*]-} ]]; then
    main+=" $(quote_all "${main_args[@]}")"
  fi
  # Per worker: refuse a second copy of a live run; mount the bucket unless it is mounted already (a failed mount
  # stops here, before the trainer could write to the worker's own disk); then detach the run from the ssh session
  # (nohup, stdin closed) so a dropped connection does not stop it; its pid is kept for `stop`. The log is
  # appended across restarts.
  local files="\$HOME/$log_dir/$run_name.\$(hostname)"
  local start="set -e; $alive; mkdir -p \$HOME/$log_dir; cd \$HOME/$remote_dir"
  start+="; if [ -f $files.pid ] && alive \"\$(cat $files.pid)\";"
  start+=" then echo \"$run_name is already running on \$(hostname)\" >&2; exit 1; fi"
  start+="; mkdir -p $mnt; if ! mountpoint -q $mnt; then"
  start+=" command -v gcsfuse >/dev/null || { echo \"no gcsfuse on \$(hostname): run tpu_vm.sh install\" >&2; exit 1; }"
  start+="; gcsfuse $gcsfuse_flags $bucket_name $mnt; fi"
  start+="; $envs nohup $main >> $files.log 2>&1 < /dev/null & echo \$! > $files.pid"
  start+="; echo \"started $run_name on \$(hostname): log $files.log, workdir $mnt/$bucket_path (gs://$bucket_name/$bucket_path)\""
  on_workers all "$start"
}

logs() {
  on_workers "$worker" "tail -n $lines \$HOME/$log_dir/$run_name.\$(hostname).log"
}

# SIGTERM: vmae_jax saves a checkpoint at the next step boundary and exits 0; `train` resumes from it.
stop() {
  local pid="\$HOME/$log_dir/$run_name.\$(hostname).pid"
  on_workers all "$alive; if [ -f $pid ] && alive \"\$(cat $pid)\" && kill -TERM \"\$(cat $pid)\"; then echo \"\$(hostname): SIGTERM sent\"; else echo \"\$(hostname): $run_name is not running\"; fi"
}

delete() {
  local cmd
  if ((queued)); then
    cmd=(gcloud compute tpus queued-resources delete "$qr_id" "${gcloud_where[@]}" --force)
  else
    cmd=(gcloud compute tpus tpu-vm delete "$name" "${gcloud_where[@]}")
  fi
  if ((yes)); then
    cmd+=(--quiet)
  fi
  run "${cmd[@]}"
}

case $command in
  create) create ;;
  wait) wait_ready ;;
  install) install ;;
  train) train ;;
  up) create; wait_ready; install; train ;;
  logs) logs ;;
  stop) stop ;;
  status) status ;;
  delete) delete ;;
esac
