"""The launch scripts: dry runs print the right commands, the real paths work against stand-in gcloud / Slurm
commands, bad options stop with a message, and shellcheck finds nothing."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TPU = ROOT / 'launch' / 'tpu_vm.sh'
SLURM = ROOT / 'launch' / 'gpu_slurm.sh'
BASH = shutil.which('bash')

TPU_SLICE = ['--name=vitg-v4', '--zone=us-central2-b']
TPU_RUN = ['--config=configs/vitg_dual.py', '--bucket=gs://my-bucket', '--run=vitg_dual_v4']
# Extra vmae_jax.main flags with characters a shell must quote: they have to arrive unchanged.
MAIN_FLAGS = ['--config.data.path=/mnt/lists', '--config.mesh_shape=(1,16,1)', "--config.note=it's one arg"]


def _bare_path(tmp_path):
  """A PATH with only the few coreutils the scripts use themselves: no gcloud, sbatch, srun or scontrol."""
  bin_dir = tmp_path / 'bare_bin'
  bin_dir.mkdir()
  for tool in ('dirname', 'basename', 'cat'):
    (bin_dir / tool).symlink_to(shutil.which(tool))
  return str(bin_dir)


def _env(path, **extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'DRY_RUN'))}
  env.update(PATH=path, **extra)
  return env


def _run(script, args, env, cwd=ROOT):
  return subprocess.run([BASH, str(script), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def _commands(stdout):
  """The printed commands ('+ ' lines) as argv lists: the printed quoting must be valid shell quoting."""
  return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith('+ ')]


def _find(commands, *prefix):
  hits = [c for c in commands if c[:len(prefix)] == list(prefix)]
  assert len(hits) == 1, f'expected one command starting {prefix}, got {commands}'
  return hits[0]


def _fake(bin_dir, name, body):
  path = bin_dir / name
  path.write_text('#!/usr/bin/env bash\n' + body)
  path.chmod(0o755)
  return path


# ---------------------------------------------------------------------------------------------------- tpu_vm.sh


def test_tpu_up_dry_run_queued_spot(tmp_path):
  r = _run(TPU, ['up', '--dry-run', *TPU_SLICE, '--accelerator=v4-32', '--queued', '--spot', *TPU_RUN,
                 '--env=LIBTPU_INIT_ARGS=--xla_tpu_flag=true', '--', *MAIN_FLAGS], _env(_bare_path(tmp_path)))
  assert r.returncode == 0, r.stderr
  cmds = _commands(r.stdout)
  create = _find(cmds, 'gcloud', 'compute', 'tpus', 'queued-resources', 'create')
  assert create[5] == 'vitg-v4'
  for flag in ('--node-id=vitg-v4', '--zone=us-central2-b', '--accelerator-type=v4-32',
               '--runtime-version=tpu-ubuntu2204-base', '--spot'):
    assert flag in create
  describe = _find(cmds, 'gcloud', 'compute', 'tpus', 'queued-resources', 'describe')
  assert '--format=value(state.state)' in describe
  assert 'ACTIVE' in r.stdout
  scp = _find(cmds, 'gcloud', 'compute', 'tpus', 'tpu-vm', 'scp')
  assert '--worker=all' in scp
  ssh = [c for c in cmds if c[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh']]
  assert len(ssh) == 2 and all('--worker=all' in c for c in ssh)
  install, train = (next(a for a in c if a.startswith('--command='))[len('--command='):] for c in ssh)
  for remote in (install, train):   # what the workers' shell will run must at least parse
    assert subprocess.run([BASH, '-n', '-c', remote], capture_output=True).returncode == 0, remote
  assert install.endswith("pip install -q -e $HOME/vmae_jax 'jax[tpu]'; $HOME/vmae_venv/bin/python -c "
                          "'import jax, vmae_jax; print(\"vmae_jax installed, jax\", jax.__version__)'; "
                          "gcsfuse --version")
  assert 'gcsfs' not in install
  assert 'python3.11 -m venv $HOME/vmae_venv' in install
  # gcsfuse from Google's apt repository, only where it is missing
  assert ('if ! command -v gcsfuse >/dev/null; then echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] '
          'https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main" | '
          'sudo tee /etc/apt/sources.list.d/gcsfuse.list; '
          'sudo curl -fsSL -o /usr/share/keyrings/cloud.google.asc https://packages.cloud.google.com/apt/doc/apt-key.gpg; '
          'sudo apt-get update -q; sudo apt-get install -y -q gcsfuse; fi') in install
  # the bucket is mounted (unless it is already) before the trainer starts, and the trainer gets the mount path
  mount = ('mkdir -p $HOME/gcs/my-bucket; if ! mountpoint -q $HOME/gcs/my-bucket; then')
  gcsfuse = 'gcsfuse --implicit-dirs --rename-dir-limit=100000 my-bucket $HOME/gcs/my-bucket; fi'
  assert train.startswith('set -e;') and train.index(mount) < train.index(gcsfuse) < train.index(' nohup ')
  assert 'VMAE_MULTIHOST=1 LIBTPU_INIT_ARGS=--xla_tpu_flag=true nohup' in train
  main = shlex.split(train[train.index(' nohup ') + 7:train.index(' >> ')])
  assert main == ['$HOME/vmae_venv/bin/python', '-m', 'vmae_jax.main', '--config=configs/vitg_dual.py',
                  '--workdir=$HOME/gcs/my-bucket/runs/vitg_dual_v4', *MAIN_FLAGS]
  assert 'gs://' not in ' '.join(main)
  assert '>> $HOME/vmae_logs/vitg_dual_v4.$(hostname).log 2>&1 < /dev/null &' in train
  # create, then wait, then install, then train
  order = [cmds.index(create), cmds.index(describe), cmds.index(scp), cmds.index(ssh[1])]
  assert order == sorted(order)


def test_tpu_plain_create_runtime_per_accelerator_and_delete(tmp_path):
  env = _env(_bare_path(tmp_path), DRY_RUN='1')
  for accelerator, runtime in [('v5litepod-32', 'v2-alpha-tpuv5-lite'), ('v5p-64', 'v2-alpha-tpuv5'),
                               ('v6e-16', 'v2-alpha-tpuv6e'), ('v3-32', 'tpu-ubuntu2204-base')]:
    r = _run(TPU, ['create', *TPU_SLICE, f'--accelerator={accelerator}', '--project=p1'], env)
    assert r.returncode == 0, r.stderr
    (create,) = _commands(r.stdout)
    assert create[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'vitg-v4']
    assert f'--version={runtime}' in create and f'--accelerator-type={accelerator}' in create
    assert '--project=p1' in create and '--spot' not in create
  r = _run(TPU, ['create', *TPU_SLICE, '--accelerator=v4-8', '--runtime-version=custom-rt'], env)
  assert '--version=custom-rt' in _commands(r.stdout)[0]
  r = _run(TPU, ['delete', *TPU_SLICE], env)
  assert _commands(r.stdout) == [['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'vitg-v4',
                                  '--zone=us-central2-b']]
  r = _run(TPU, ['delete', *TPU_SLICE, '--queued', '--qr-id=qr1', '--yes'], env)
  assert _commands(r.stdout) == [['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', 'qr1',
                                  '--zone=us-central2-b', '--force', '--quiet']]
  r = _run(TPU, ['install', *TPU_SLICE, '--git=https://example.org/vmae_jax.git', '--ref=v1'], env)
  (ssh,) = _commands(r.stdout)
  assert 'git clone --quiet https://example.org/vmae_jax.git vmae_jax' in ssh[-1]
  assert 'checkout --quiet v1' in ssh[-1]


def test_tpu_workdir_in_the_bucket_mount_dir_and_gcsfuse_flags(tmp_path):
  env = _env(_bare_path(tmp_path), DRY_RUN='1')
  r = _run(TPU, ['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=gs://data.bkt/exp/a_1/',
                 '--mount-dir=mnt/buckets', '--gcsfuse-flags=--implicit-dirs --file-mode=644'], env)
  assert r.returncode == 0, r.stderr
  (ssh,) = _commands(r.stdout)
  train = ssh[-1]
  assert 'mkdir -p $HOME/mnt/buckets/data.bkt; if ! mountpoint -q $HOME/mnt/buckets/data.bkt; then' in train
  assert 'gcsfuse --implicit-dirs --file-mode=644 data.bkt $HOME/mnt/buckets/data.bkt; fi' in train
  assert ' --workdir=$HOME/mnt/buckets/data.bkt/exp/a_1 >> $HOME/vmae_logs/a_1.$(hostname).log' in train
  # --run names the logs; --bucket/--run puts the run under runs/
  r = _run(TPU, ['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=gs://b1/x', '--run=named'], env)
  assert ' --workdir=$HOME/gcs/b1/x >> $HOME/vmae_logs/named.$(hostname).log' in _commands(r.stdout)[0][-1]
  r = _run(TPU, ['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--bucket=gs://b1/', '--run=r2'], env)
  assert ' --workdir=$HOME/gcs/b1/runs/r2 >> ' in _commands(r.stdout)[0][-1]


@pytest.mark.parametrize('args, message', [
    ([], 'no command given'),
    (['launch', *TPU_SLICE], "unknown command 'launch'"),
    (['create', '--zone=z'], '--name=TPU is required'),
    (['create', '--name=t'], '--zone=ZONE is required'),
    (['create', '--name=t', '--zone', 'z'], '--zone takes a value'),
    (['create', *TPU_SLICE, '--spto'], "unknown option '--spto'"),
    (['create', *TPU_SLICE, '--accelerator=big'], "--accelerator='big'"),
    (['create', *TPU_SLICE, '--accelerator=v9-8'], 'give --runtime-version'),
    (['create', '--name=Bad_Name', '--zone=z'], "--name='Bad_Name'"),
    (['train', *TPU_SLICE, '--bucket=gs://my-bucket', '--run=r'], 'train needs --config'),
    (['train', *TPU_SLICE, '--config=configs/nope.py', '--bucket=gs://my-bucket', '--run=r'], 'configs/nope.py'),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py'], 'needs --bucket=gs://BUCKET and --run=NAME'),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=/tmp/run'], "--workdir='/tmp/run' must be gs://"),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=gs://b1'], "--workdir='gs://b1' must be gs://"),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=gs://b1/a b'], "--workdir='gs://b1/a b'"),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--workdir=gs://b1/x/../y'], "no '.' or '..'"),
    (['train', *TPU_SLICE, *TPU_RUN, '--workdir=gs://b1/x'], 'not both'),
    (['train', *TPU_SLICE, *TPU_RUN, '--gcsfuse-flags=--x;rm'], "--gcsfuse-flags='--x;rm'"),
    (['train', *TPU_SLICE, *TPU_RUN, '--mount-dir=/abs'], '--mount-dir=/abs'),
    (['train', *TPU_SLICE, '--config=configs/vitg_dual.py', '--bucket=my-bucket', '--run=r'], "--bucket='my-bucket'"),
    (['train', *TPU_SLICE, *TPU_RUN, '--', '--workdir=/x'], "give --workdir=/x as an option"),
    (['train', *TPU_SLICE, *TPU_RUN, '--env=NOVALUE'], "--env='NOVALUE'"),
    (['install', *TPU_SLICE, '--venv=my venv'], '--venv=my venv'),
    (['stop', *TPU_SLICE], 'stop needs --bucket'),
])
def test_tpu_bad_options_stop_with_a_message(tmp_path, args, message):
  r = _run(TPU, ['--dry-run', *args] if args else args, _env(_bare_path(tmp_path)))
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert message in r.stderr and 'tpu_vm.sh:' in r.stderr
  assert not _commands(r.stdout)   # nothing was run or printed as run


def test_tpu_dry_run_env_must_be_0_or_1(tmp_path):
  r = _run(TPU, ['status', *TPU_SLICE], _env(_bare_path(tmp_path), DRY_RUN='yes'))
  assert r.returncode == 2 and "DRY_RUN must be 0 or 1, got 'yes'" in r.stderr


def _wait_for(path, seconds=15):
  deadline = time.monotonic() + seconds
  while not path.exists():
    assert time.monotonic() < deadline, f'{path} did not appear'
    time.sleep(0.05)


def test_tpu_train_logs_stop_against_a_stand_in_gcloud(tmp_path):
  """Not a dry run: a stand-in gcloud runs each --command in a scratch home, as ssh would on a worker."""
  home = tmp_path / 'home'
  (home / 'vmae_jax').mkdir(parents=True)
  (home / 'vmae_venv' / 'bin').mkdir(parents=True)
  # The trainer's stand-in records how it was started, logs a step, and on SIGTERM "saves" and exits 0.
  _fake(home / 'vmae_venv' / 'bin', 'python', r'''
{ echo "cwd=$PWD"; echo "VMAE_MULTIHOST=${VMAE_MULTIHOST-}"; echo "EXTRA=${EXTRA-}"; printf 'arg=%s\n' "$@"; } > "$HOME/started.tmp"
mv "$HOME/started.tmp" "$HOME/started"
trap 'echo "saved, exiting"; touch "$HOME/terminated"; exit 0' TERM
echo "step 1"
while true; do sleep 0.05; done
''')
  fake_bin = tmp_path / 'fake_bin'
  fake_bin.mkdir()
  _fake(fake_bin, 'gcloud', r'''
printf '%s\n' "$*" >> "$HOME/gcloud_calls"
for arg in "$@"; do
  case $arg in --command=*) cd "$HOME" && exec bash -c "${arg#--command=}" ;; esac
done
''')
  # gcsfuse "mounts" by recording its arguments and leaving a marker that the stand-in mountpoint looks for.
  _fake(fake_bin, 'gcsfuse', r'''
printf '%s\n' "$*" >> "$HOME/gcsfuse_calls"
touch "${@: -1}/.mounted"
''')
  _fake(fake_bin, 'mountpoint', r'''
[[ $1 == -q && -e $2/.mounted ]]
''')
  env = _env(f'{fake_bin}:{os.environ["PATH"]}', HOME=str(home))
  args = [*TPU_SLICE, *TPU_RUN]
  mount = home / 'gcs' / 'my-bucket'
  pid_file = None
  try:
    r = _run(TPU, ['train', *args, '--env=EXTRA=two words', '--', *MAIN_FLAGS], env)
    assert r.returncode == 0, r.stderr
    assert 'started vitg_dual_v4 on' in r.stdout
    _wait_for(home / 'started')
    started = (home / 'started').read_text().splitlines()
    assert started == [f'cwd={home / "vmae_jax"}', 'VMAE_MULTIHOST=1', 'EXTRA=two words',
                       'arg=-m', 'arg=vmae_jax.main', 'arg=--config=configs/vitg_dual.py',
                       f'arg=--workdir={mount}/runs/vitg_dual_v4', *(f'arg={f}' for f in MAIN_FLAGS)]
    assert (home / 'gcsfuse_calls').read_text() == f'--implicit-dirs --rename-dir-limit=100000 my-bucket {mount}\n'
    (pid_file,) = (home / 'vmae_logs').glob('vitg_dual_v4.*.pid')
    assert '--worker=all' in (home / 'gcloud_calls').read_text()

    again = _run(TPU, ['train', *args], env)
    assert again.returncode != 0 and 'vitg_dual_v4 is already running' in again.stderr

    log = _run(TPU, ['logs', *args, '--lines=5'], env)
    assert log.returncode == 0 and 'step 1' in log.stdout

    stop = _run(TPU, ['stop', *args], env)
    assert stop.returncode == 0 and 'SIGTERM sent' in stop.stdout
    _wait_for(home / 'terminated')
    deadline = time.monotonic() + 15
    while 'saved, exiting' not in pid_file.with_suffix('.log').read_text():
      assert time.monotonic() < deadline
      time.sleep(0.05)
    stop_again = _run(TPU, ['stop', *args], env)
    assert 'vitg_dual_v4 is not running' in stop_again.stdout

    # A restart on the same workers finds the bucket mounted and does not mount it again.
    (home / 'terminated').unlink()
    (home / 'started').unlink()
    restart = _run(TPU, ['train', *args], env)
    assert restart.returncode == 0, restart.stderr
    _wait_for(home / 'started')
    assert len((home / 'gcsfuse_calls').read_text().splitlines()) == 1
    assert _run(TPU, ['stop', *args], env).returncode == 0
    _wait_for(home / 'terminated')
  finally:
    if pid_file is not None and not (home / 'terminated').exists():
      os.kill(int(pid_file.read_text()), 9)   # the stand-in trainer this test started


def test_tpu_train_does_not_start_when_the_mount_fails(tmp_path):
  """A failed gcsfuse stops `train` before the trainer starts: it must not write the run to the worker's disk."""
  home = tmp_path / 'home'
  (home / 'vmae_jax').mkdir(parents=True)
  (home / 'vmae_venv' / 'bin').mkdir(parents=True)
  _fake(home / 'vmae_venv' / 'bin', 'python', 'touch "$HOME/started"\n')
  fake_bin = tmp_path / 'fake_bin'
  fake_bin.mkdir()
  _fake(fake_bin, 'gcloud', r'''
for arg in "$@"; do
  case $arg in --command=*) cd "$HOME" && exec bash -c "${arg#--command=}" ;; esac
done
''')
  _fake(fake_bin, 'gcsfuse', 'echo "gcsfuse: mount failed" >&2; exit 1\n')
  _fake(fake_bin, 'mountpoint', 'exit 1\n')
  r = _run(TPU, ['train', *TPU_SLICE, *TPU_RUN], _env(f'{fake_bin}:{os.environ["PATH"]}', HOME=str(home)))
  assert r.returncode != 0 and 'gcsfuse: mount failed' in r.stderr
  time.sleep(0.5)
  assert not (home / 'started').exists() and not list((home / 'vmae_logs').glob('*.pid'))
  # no gcsfuse at all: a message that says what to do
  (fake_bin / 'gcsfuse').unlink()
  path = f'{fake_bin}:' + ':'.join(d for d in os.environ['PATH'].split(':') if not os.path.exists(f'{d}/gcsfuse'))
  r = _run(TPU, ['train', *TPU_SLICE, *TPU_RUN], _env(path, HOME=str(home)))
  assert r.returncode != 0 and 'no gcsfuse on' in r.stderr and 'run tpu_vm.sh install' in r.stderr
  assert not (home / 'started').exists()


# ------------------------------------------------------------------------------------------------ gpu_slurm.sh

SLURM_RUN = ['--config=configs/vitg_dual.py', '--workdir=/shared/runs/vitg_dual_2x8']


def test_slurm_submit_dry_run_shows_sbatch_and_the_job(tmp_path):
  r = _run(SLURM, ['--dry-run', '--nodes=2', '--gpus-per-node=8', '--partition=gpu', '--time=2-00:00:00',
                   '--requeue', *SLURM_RUN, '--', *MAIN_FLAGS], _env(_bare_path(tmp_path)))
  assert r.returncode == 0, r.stderr
  cmds = _commands(r.stdout)
  sbatch = _find(cmds, 'sbatch')
  for flag in ('--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--gpus-per-task=8', '--partition=gpu',
               '--time=2-00:00:00',
               '--requeue', '--signal=TERM@300', f'--output={ROOT}/logs/%x-%j.out'):
    assert flag in sbatch
  script_at = sbatch.index(str(SLURM))
  assert sbatch[script_at + 1:script_at + 3] == ['--mode=srun', f'--repo={ROOT}']
  assert sbatch[-len(MAIN_FLAGS) - 1:] == ['--', *MAIN_FLAGS]
  assert _find(cmds, 'scontrol', 'show', 'hostnames') == ['scontrol', 'show', 'hostnames', '$SLURM_JOB_NODELIST']
  job = _find(cmds, 'env')
  assert job[1] == 'JAX_COORDINATOR_ADDRESS=FIRST_NODE:12355'
  srun = job[2:]
  assert srun[0] == 'srun'
  for flag in ('--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--gpus-per-task=8', f'--chdir={ROOT}'):
    assert flag in srun
  assert 'JAX_PROCESS_ID="$SLURM_PROCID"' in srun[srun.index('-c') + 1]
  assert 'JAX_NUM_PROCESSES="$SLURM_NTASKS"' in srun[srun.index('-c') + 1]
  tail = srun[srun.index('python3'):]
  assert tail == ['python3', '-m', 'vmae_jax.main', *SLURM_RUN, *MAIN_FLAGS]


def test_slurm_end_to_end_with_stand_in_slurm(tmp_path):
  """Not a dry run: sbatch starts the batch script at once in a 2-node "allocation", srun runs each task."""
  out = tmp_path / 'out'
  out.mkdir()
  fake_bin = tmp_path / 'fake_bin'
  fake_bin.mkdir()
  _fake(fake_bin, 'sbatch', r'''
printf '%s\n' "$@" > "$OUT/sbatch_args"
while [[ $1 == --* ]]; do shift; done
export SLURM_JOB_ID=42 SLURM_JOB_NUM_NODES=2 SLURM_JOB_NODELIST='gpu[01-02]'
exec bash "$@"
''')
  _fake(fake_bin, 'scontrol', r'''
[[ "$1 $2 $3" == "show hostnames gpu[01-02]" ]] || { echo "scontrol: unexpected $*" >&2; exit 1; }
printf 'gpu01\ngpu02\n'
''')
  _fake(fake_bin, 'srun', r'''
printf '%s\n' "$@" > "$OUT/srun_args"
ntasks=1 chdir=$PWD
while [[ $1 == --* ]]; do
  case $1 in --ntasks=*) ntasks=${1#*=} ;; --chdir=*) chdir=${1#*=} ;; esac
  shift
done
cd "$chdir" || exit 1
for ((rank = 0; rank < ntasks; rank++)); do
  SLURM_PROCID=$rank SLURM_NTASKS=$ntasks "$@" || exit 1
done
''')
  python = _fake(tmp_path, 'python', r'''
{ echo "cwd=$PWD"; echo "coordinator=$JAX_COORDINATOR_ADDRESS processes=$JAX_NUM_PROCESSES id=$JAX_PROCESS_ID";
  echo "XLA_FLAGS=${XLA_FLAGS-}"; printf 'arg=%s\n' "$@"; } > "$OUT/task_$JAX_PROCESS_ID"
''')
  env = _env(f'{fake_bin}:{os.environ["PATH"]}', OUT=str(out))
  r = _run(SLURM, ['--nodes=2', '--gpus-per-node=8', '--cpus-per-task=4', f'--python={python}', '--port=23456',
                   *SLURM_RUN, f'--log-dir={tmp_path}/logs', '--env=XLA_FLAGS=--xla_gpu_a=1 --xla_gpu_b=2',
                   '--', *MAIN_FLAGS], env, cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  assert (tmp_path / 'logs').is_dir()
  sbatch_args = (out / 'sbatch_args').read_text().splitlines()
  assert {'--nodes=2', '--ntasks=2', '--ntasks-per-node=1', '--gpus-per-task=8', '--cpus-per-task=4'} <= set(sbatch_args)
  srun_args = (out / 'srun_args').read_text().splitlines()
  assert {'--nodes=2', '--ntasks=2', '--gpus-per-task=8', '--cpus-per-task=4'} <= set(srun_args)
  for rank in (0, 1):
    task = (out / f'task_{rank}').read_text().splitlines()
    assert task == [f'cwd={ROOT}', f'coordinator=gpu01:23456 processes=2 id={rank}',
                    'XLA_FLAGS=--xla_gpu_a=1 --xla_gpu_b=2', 'arg=-m', 'arg=vmae_jax.main',
                    *(f'arg={a}' for a in SLURM_RUN), *(f'arg={f}' for f in MAIN_FLAGS)]


def test_slurm_inside_an_allocation_uses_its_nodes(tmp_path):
  env = _env(_bare_path(tmp_path), SLURM_JOB_ID='7', SLURM_JOB_NUM_NODES='4', SLURM_JOB_NODELIST='n[1-4]')
  r = _run(SLURM, ['--dry-run', *SLURM_RUN], env)
  assert r.returncode == 0, r.stderr
  cmds = _commands(r.stdout)
  assert not [c for c in cmds if c[0] == 'sbatch']
  assert _find(cmds, 'scontrol')[-1] == 'n[1-4]'
  srun = _find(cmds, 'env')
  assert '--nodes=4' in srun and '--ntasks=4' in srun
  r = _run(SLURM, ['--dry-run', '--nodes=5', *SLURM_RUN], env)
  assert r.returncode == 2 and '--nodes=5 but the allocation has 4 nodes' in r.stderr


@pytest.mark.parametrize('args, message', [
    (['--workdir=/w'], '--config=configs/NAME.py[:ARG] is required'),
    (['--config=configs/vitg_dual.py'], '--workdir=DIR is required'),
    (['--config=configs/none.py', '--workdir=/w'], 'configs/none.py'),
    ([*SLURM_RUN, '--nodes=0'], "--nodes='0'"),
    ([*SLURM_RUN, '--gpus-per-node=x'], "--gpus-per-node='x'"),
    ([*SLURM_RUN, '--port=80'], "--port='80'"),
    ([*SLURM_RUN, '--mode=local'], "--mode='local'"),
    ([*SLURM_RUN, '--nodes', '2'], '--nodes takes a value'),
    ([*SLURM_RUN, '--gpu=8'], "unknown option '--gpu=8'"),
    ([*SLURM_RUN, 'extra'], "unexpected argument 'extra'"),
    ([*SLURM_RUN, '--env=JAX_PROCESS_ID=3'], 'JAX_PROCESS_ID is set by this script'),
    ([*SLURM_RUN, '--', '--config=configs/demo.py'], 'give --config=configs/demo.py as an option'),
    ([*SLURM_RUN, '--repo=/'], 'is not a vmae_jax checkout'),
    (['--config=configs/vitg_dual.py', '--workdir=gs://b/run'], 'give a path, not a URL'),
])
def test_slurm_bad_options_stop_with_a_message(tmp_path, args, message):
  r = _run(SLURM, ['--dry-run', *args], _env(_bare_path(tmp_path)))
  assert r.returncode == 2, (r.stdout, r.stderr)
  assert message in r.stderr and 'gpu_slurm.sh:' in r.stderr
  assert not _commands(r.stdout)


def test_slurm_srun_mode_needs_an_allocation(tmp_path):
  r = _run(SLURM, ['--mode=srun', *SLURM_RUN], _env(_bare_path(tmp_path)))
  assert r.returncode == 2 and '--mode=srun needs a Slurm allocation' in r.stderr


# ---------------------------------------------------------------------------------------------------- both


@pytest.mark.parametrize('script', [TPU, SLURM])
def test_help(tmp_path, script):
  r = _run(script, ['--help'], _env(_bare_path(tmp_path)))
  assert r.returncode == 0 and r.stdout.startswith(f'usage: launch/{script.name}') and '--dry-run' in r.stdout


def _readme_commands():
  """The launch commands of launch/README.md's bash blocks, continuation lines joined."""
  text = (ROOT / 'launch' / 'README.md').read_text()
  commands = []
  for block in re.findall(r'```bash\n(.*?)```', text, re.S):
    for command in block.replace('\\\n', ' ').splitlines():
      words = shlex.split(command, comments=True)
      env = {}
      while words and re.fullmatch(r'[A-Z_]+=\S*', words[0]):
        key, value = words.pop(0).split('=', 1)
        env[key] = value
      if words and words[0].startswith('launch/'):
        commands.append((env, words))
  return commands


def test_readme_commands_dry_run(tmp_path):
  commands = _readme_commands()
  scripts = [words[0] for _, words in commands]
  assert scripts.count('launch/tpu_vm.sh') >= 6 and scripts.count('launch/gpu_slurm.sh') >= 2
  path = _bare_path(tmp_path)
  for env, words in commands:
    args = words[1:] if env.get('DRY_RUN') == '1' or '--dry-run' in words else ['--dry-run', *words[1:]]
    r = _run(ROOT / words[0], args, _env(path, **env))
    assert r.returncode == 0, (words, r.stderr)
    assert _commands(r.stdout), words


def _shellcheck():
  found = shutil.which('shellcheck') or str(Path(sys.executable).parent / 'shellcheck')
  assert os.path.exists(found), 'shellcheck not found: the test extra installs it (pip install -e ".[test]")'
  return found


def test_shellcheck_finds_nothing():
  r = subprocess.run([_shellcheck(), '--severity=style', str(TPU), str(SLURM)], capture_output=True, text=True,
                     timeout=60)
  assert (r.returncode, r.stdout, r.stderr) == (0, '', '')
