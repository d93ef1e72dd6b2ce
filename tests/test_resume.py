"""Exact resume and preemption, through the real command line in subprocesses: kill -9 mid-run and run the same
command again → bitwise-equal final state; SIGTERM → a checkpoint at the next step boundary and exit 0."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
# Fine-tuning exercises every host and device random stream (RandAugment, erasing, Mixup/CutMix, drop path) plus
# gradient accumulation (the optimizer state holds a half-filled accumulator between updates) and EMA.
ARGS = ['--config=configs/vitb_finetune.py:dataset=k400,smoke', '--config.num_train_steps=10',
        '--config.checkpoint_every_steps=2', '--config.optim.accumulate_steps=2', '--config.optim.ema_decay=0.9',
        '--config.eval.every_steps=0']


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  e = dict(os.environ, VMAE_JAX_CACHE=str(tmp_path_factory.mktemp('cache')), JAX_PLATFORMS='cpu')
  subprocess.run([sys.executable, '-c', 'from vmae_jax.data import synthetic_cache; synthetic_cache.ensure_synthetic('
                  'num_classes=4, clips_per_class=6, num_frames=12, size=48)'], env=e, check=True, cwd=ROOT)
  return e


def _cmd(workdir, *extra):
  return [sys.executable, '-m', 'vmae_jax.main', *ARGS, f'--workdir={workdir}', *extra]


def _state(workdir):
  """Every array of the final checkpoint (params, optimizer state, EMA, step) as flat numpy."""
  step_dir = os.path.join(workdir, 'checkpoints', '20')
  out = {}
  for item in ('params', 'train_state'):
    tree = ocp.StandardCheckpointer().restore(os.path.join(step_dir, item))
    import jax
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[item + jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


def _wait_for(path, proc, timeout=300):
  start = time.time()
  while not os.path.exists(path):
    if proc.poll() is not None:
      raise AssertionError(f'run ended (rc {proc.returncode}) before {path} appeared')
    if time.time() - start > timeout:
      raise AssertionError(f'{path} did not appear in {timeout} s')
    time.sleep(0.02)


def test_kill_9_then_rerun_is_bitwise_equal_to_an_uninterrupted_run(env, tmp_path):
  ref, resumed = str(tmp_path / 'ref'), str(tmp_path / 'resumed')
  subprocess.run(_cmd(ref), env=env, check=True, cwd=ROOT, capture_output=True)
  # Kill twice: once right after the first committed checkpoint (micro-step 4), once in the middle of the next
  # accumulation window after the resume; then finish with the same command.
  for marker in ('4', '8'):
    proc = subprocess.Popen(_cmd(resumed), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(os.path.join(resumed, 'checkpoints', marker, 'commit_success.txt'), proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  out = subprocess.run(_cmd(resumed), env=env, check=True, cwd=ROOT, capture_output=True, text=True)
  assert 'resumed from' in out.stdout
  a, b = _state(ref), _state(resumed)
  assert a.keys() == b.keys() and len(a) > 10
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different[:5]
  with open(os.path.join(ref, 'results.json')) as f1, open(os.path.join(resumed, 'results.json')) as f2:
    assert f1.read() == f2.read()


def test_sigterm_saves_at_the_next_step_and_exits_cleanly(env, tmp_path):
  workdir = str(tmp_path / 'w')
  cmd = _cmd(workdir, '--config.num_train_steps=2000', '--config.checkpoint_every_steps=1000',
             '--config.log_every_steps=1')
  proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if line.startswith('step 3/'):
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, ''.join(lines) + rest
  assert 'preemption signal: saved step' in rest
  saved = int(rest.split('preemption signal: saved step ')[1].split()[0])
  assert 3 <= saved < 2000
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == [str(saved * 2)]   # micro-steps (accumulation 2)
  assert not os.path.exists(os.path.join(workdir, 'results.json'))
