"""Scale on CPU with simulated devices (each case is a subprocess: the device count is fixed when jax starts).

* the train step on meshes (8,1,1), (2,4,1), (2,2,2) (from the command line) and (1,4,2) ends with the parameters of a
  one-device run (≤ 1e-5, fp32, V2 dual masking);
* two processes on 127.0.0.1 (jax.distributed, 2 devices each) train together and match one process;
* with fsdp = 4 each device holds ≤ ¼ of the parameters and optimizer state, plus the replicated leftovers;
* the full-size ViT-g dual-masking step lowers and compiles on 8 devices as (8,1,1) and (1,8,1) (abstract inputs,
  nothing allocated) and reports XLA's per-device memory analysis.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from vmae_jax.weights import loaded

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHECKS = os.path.join(HERE, 'scale_checks.py')
# 3 steps, no periodic evaluation; the final val loss still runs (on every mesh, through the same programs).
SHORT = ['num_train_steps=3', 'checkpoint_every_steps=3', 'eval.every_steps=0', 'pretrain.knn_every_steps=0',
         'pretrain.picture_every_steps=0']


def env(devices: int, cache: str, **extra) -> dict:
  e = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu',
           VMAE_JAX_CACHE=cache, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  e.update(extra)
  return e


def run(args, devices, cache, timeout=900, **extra) -> str:
  p = subprocess.run([sys.executable] + args, env=env(devices, cache, **extra), cwd=ROOT, capture_output=True,
                     text=True, timeout=timeout)
  assert p.returncode == 0, f'{args}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-6000:]}'
  return p.stdout


def last_json(stdout: str) -> dict:
  return json.loads([line for line in stdout.splitlines() if line.startswith('{')][-1])


def params_of(workdir):
  config, params = loaded.restore(workdir)
  return {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
          for path, v in __import__('jax').tree_util.tree_flatten_with_path(params)[0]}


def max_diff(a, b) -> float:
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


@pytest.fixture(scope='module')
def reference(cache, tmp_path_factory):
  """vitg_dual:smoke (V2 dual masking, tiny dims) on one device."""
  workdir = str(tmp_path_factory.mktemp('one_device'))
  run([CHECKS, 'train', 'vitg_dual:smoke', '(1,1,1)', workdir] + SHORT, 1, cache)
  return params_of(workdir)


def test_meshes_match_one_device(reference, cache, tmp_path):
  diffs = {}
  for mesh in ('(8,1,1)', '(2,4,1)', '(1,4,2)'):
    workdir = str(tmp_path / mesh.strip('()').replace(',', '_'))
    out = run([CHECKS, 'train', 'vitg_dual:smoke', mesh, workdir] + SHORT, 8, cache)
    assert last_json(out)['devices'] == 8
    diffs[mesh] = max_diff(params_of(workdir), reference)
  # the command line form
  workdir = str(tmp_path / 'cli_2_2_2')
  run(['-m', 'vmae_jax.main', '--config=configs/vitg_dual.py:smoke', f'--workdir={workdir}',
       '--config.mesh_shape=(2,2,2)'] + [f'--config.{o}' for o in SHORT], 8, cache)
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['config']['mesh_shape'] == [2, 2, 2]
  diffs['(2,2,2)'] = max_diff(params_of(workdir), reference)
  print('max |param - one-device param| per mesh:', diffs)
  assert all(d <= 1e-5 for d in diffs.values()), diffs


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(cache, tmp_path):
  one = str(tmp_path / 'one_process')
  run([CHECKS, 'train', 'vitg_dual:smoke', '(2,2,1)', one] + SHORT, 4, cache)
  two = str(tmp_path / 'two_processes')
  port = free_port()
  procs = []
  for pid in range(2):
    e = env(2, cache, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(
        [sys.executable, '-m', 'vmae_jax.main', '--config=configs/vitg_dual.py:smoke', f'--workdir={two}',
         '--config.mesh_shape=(2,2,1)'] + [f'--config.{o}' for o in SHORT],
        env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f'stdout:\n{out[-3000:]}\nstderr:\n{err[-6000:]}'
  # logs on the chief only; one metrics file, written once (as by one process)
  assert 'step 3/3' in outs[0][0] and 'step 3/3' not in outs[1][0]
  steps = []
  for workdir in (one, two):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      steps.append([json.loads(line)['step'] for line in f])
  assert steps[0] == steps[1] and 3 in steps[1]
  diff = max_diff(params_of(two), params_of(one))
  print('two processes vs one: max |param diff| =', diff)
  assert diff <= 1e-5


def test_fsdp4_state_bytes_per_device(cache):
  out = last_json(run([CHECKS, 'state_bytes', 'vitb_pretrain:dataset=k400', '(2,4,1)'], 8, cache))
  # parameters: each device holds a quarter of the sharded ones plus every replicated one
  p_sharded = out['params_total'] - out['params_replicated']
  assert max(out['params_per_device']) <= p_sharded / 4 + out['params_replicated']
  assert out['params_replicated'] < 0.01 * out['params_total']   # the leftovers are small (biases of heads...)
  assert max(out['per_device']) <= (out['total'] - out['replicated']) / 4 + out['replicated']
  print(json.dumps(out))


@pytest.mark.parametrize('mesh', ['(8,1,1)', '(1,8,1)'])
def test_vitg_dual_step_compiles_full_size(mesh, cache):
  out = last_json(run([CHECKS, 'lower', 'vitg_dual', mesh, '32'], 8, cache, timeout=1800))
  assert out['clips_per_device'] == 128 and out['remat_policy'] == 'nothing_saveable'
  mem = out['memory']
  assert mem['temp_size_in_bytes'] > 0 and mem['argument_size_in_bytes'] > 0
  print(json.dumps(out))


def test_multiprocess_environment():
  from vmae_jax.parallel import distributed
  assert distributed.multiprocess_requested({}) is None
  assert distributed.multiprocess_requested({'SLURM_NTASKS': '1'}) is None
  assert distributed.multiprocess_requested({'JAX_COORDINATOR_ADDRESS': 'h:1'}) == 'explicit'
  assert distributed.multiprocess_requested({'SLURM_NTASKS': '4'}) == 'auto'
  assert distributed.multiprocess_requested({'TPU_WORKER_HOSTNAMES': 'a,b'}) == 'auto'
  assert distributed.multiprocess_requested({'TPU_WORKER_HOSTNAMES': 'a'}) is None
  assert distributed.multiprocess_requested({'VMAE_MULTIHOST': '1'}) == 'auto'


def test_incomplete_coordinator_env_is_a_config_error(tmp_path):
  e = dict(os.environ, JAX_COORDINATOR_ADDRESS='127.0.0.1:1', JAX_PROCESS_ID='0')
  e.pop('JAX_NUM_PROCESSES', None)
  p = subprocess.run([sys.executable, '-m', 'vmae_jax.main', '--config=configs/vitg_dual.py:smoke',
                      f'--workdir={tmp_path}'], env=e, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert p.returncode == 2 and 'JAX_NUM_PROCESSES must be set' in p.stderr


def test_url_workdir_is_refused():
  from recipes import load_config

  from vmae_jax.models.config import ConfigError
  from vmae_jax.train import trainer
  with pytest.raises(ConfigError, match='gs://b/run: a URL is not a workdir'):
    trainer.Trainer(load_config('vitg_dual', 'smoke'), 'gs://b/run')
