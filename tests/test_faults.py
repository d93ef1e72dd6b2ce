"""Checkpoints that survive faults: each fault injected into the newest step of a training workdir (truncated or
bit-flipped parameter data, a deleted orbax metadata file, a deleted data_iter file, a truncated metadata JSON, a
deleted item, an empty step directory, damage that a new manifest hides from the checksums) → the run reports the
step, moves it aside and resumes from the step before, ending bitwise equal to an uninterrupted run; all steps
damaged → CheckpointError; a second run on a locked workdir is refused, a stale lock taken over; a save that hits a
full disk stops with one clear error and keeps the older steps; `vmae_jax.load` refuses a bit-flipped checkpoint."""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from recipes import load_config

import vmae_jax
from vmae_jax import models
from vmae_jax.models.config import ModelConfig
from vmae_jax.train import trainer, workdir_lock
from vmae_jax.weights import checkpoint

pytestmark = pytest.mark.usefixtures('synthetic_cache')
STEPS = 4


def _config():
  c = load_config('vitb_finetune:dataset=k400', 'smoke')
  c.num_train_steps, c.checkpoint_every_steps, c.keep_checkpoints, c.eval.every_steps = STEPS, 1, 10, 0
  return c


def _state(workdir, step=STEPS):
  """Every array of a step (params, optimizer state, step) as flat numpy."""
  out = {}
  for item in ('params', 'train_state'):
    tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step), item))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[item + jax.tree_util.keystr(path)] = np.asarray(leaf)
  return out


def _assert_same(a, b):
  assert a.keys() == b.keys() and len(a) > 10
  different = [k for k in a if not np.array_equal(a[k], b[k])]
  assert not different, different[:5]


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run, a checkpoint at every step: its workdir and final state."""
  workdir = str(tmp_path_factory.mktemp('ref') / 'w')
  trainer.Trainer(_config(), workdir).run()
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))   # released
  for step in range(1, STEPS + 1):
    assert checkpoint.verify_step(os.path.join(workdir, 'checkpoints', str(step)))   # every step sealed
  return workdir, _state(workdir)


def _stopped_after(reference, tmp_path, step):
  """A copy of the reference workdir as a run killed just after saving `step` left it."""
  workdir = str(tmp_path / 'w')
  shutil.copytree(reference[0], workdir)
  os.remove(os.path.join(workdir, trainer.RESULTS_FILE))
  for later in range(step + 1, STEPS + 1):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(later)))
  return workdir


def _largest(folder):
  files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
  return max(files, key=os.path.getsize)


def _truncate(path):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip(path):
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x10]))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


def _resealed(step_dir):
  """Damage that the checksums cannot see (the manifest written after it): the restore itself fails."""
  _truncate(_largest(os.path.join(step_dir, 'params')))
  checkpoint.write_manifest(step_dir)


FAULTS = {
    'truncated parameter data': (lambda d: _truncate(_largest(os.path.join(d, 'params'))), 'bytes'),
    'bit-flipped parameter data': (lambda d: _flip(_largest(os.path.join(d, 'params'))), 'checksum mismatch'),
    'deleted orbax metadata': (lambda d: os.remove(os.path.join(d, 'params', '_METADATA')), 'missing'),
    'deleted data_iter file': (lambda d: os.remove(os.path.join(d, 'data_iter', 'process_0-of-1.json')), 'missing'),
    'truncated metadata json': (lambda d: _truncate(os.path.join(d, 'train_state', '_METADATA')), 'bytes'),
    'deleted item': (lambda d: shutil.rmtree(os.path.join(d, 'train_state')), 'missing'),
    'empty step directory': (_empty, 'unverified'),
    'damage behind a new manifest': (_resealed, 'does not restore'),
}


@pytest.mark.parametrize('fault', list(FAULTS))
def test_a_damaged_newest_step_is_moved_aside_and_the_run_ends_as_an_uninterrupted_one(reference, tmp_path,
                                                                                        capsys, fault):
  damage, reason = FAULTS[fault]
  workdir = _stopped_after(reference, tmp_path, 3)
  damage(os.path.join(workdir, 'checkpoints', '3'))
  trainer.Trainer(_config(), workdir).run()
  out = capsys.readouterr()
  assert f'resumed from {workdir}/checkpoints/2 ' in out.out
  lines = [line for line in out.err.splitlines() if line.startswith('checkpoint step 3 ')]
  moved = os.path.join(workdir, checkpoint.DAMAGED_DIR, '3')
  assert len(lines) == 1 and reason in lines[0] and lines[0].endswith(f'moved to {moved}'), out.err
  assert os.path.isdir(moved)
  _assert_same(reference[1], _state(workdir))
  assert checkpoint.verify_step(os.path.join(workdir, 'checkpoints', '3'))   # written again, sealed


def test_no_step_verifies_stops_with_a_checkpoint_error(reference, tmp_path, capsys):
  workdir = _stopped_after(reference, tmp_path, 3)
  _flip(_largest(os.path.join(workdir, 'checkpoints', '3', 'params')))
  _empty(os.path.join(workdir, 'checkpoints', '2'))
  os.remove(os.path.join(workdir, 'checkpoints', '1', checkpoint.MANIFEST))
  with pytest.raises(checkpoint.CheckpointError, match='no checkpoint step verifies.*Refusing to start afresh'):
    trainer.Trainer(_config(), workdir).run()
  assert sorted(os.listdir(os.path.join(workdir, checkpoint.DAMAGED_DIR))) == ['1', '2', '3']
  assert len([line for line in capsys.readouterr().err.splitlines() if line.startswith('checkpoint step')]) == 3
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))
  # the next start does not begin afresh over them either
  with pytest.raises(checkpoint.CheckpointError, match='Refusing to start afresh'):
    trainer.Trainer(_config(), workdir).run()


def test_a_second_run_on_a_locked_workdir_is_refused(tmp_path):
  workdir = str(tmp_path / 'w')
  os.makedirs(workdir)
  with workdir_lock.WorkdirLock(workdir):
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f'in use by another run: pid {os.getpid()} on '):
      trainer.Trainer(_config(), workdir).run()
    assert os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))   # still the first run's
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))


def test_a_stale_lock_is_taken_over_and_another_hosts_lock_is_not(tmp_path):
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  path = tmp_path / workdir_lock.LOCK_FILE
  path.write_text(json.dumps({'host': socket.gethostname(), 'pid': dead.pid, 'started': time.time() - 60}))
  notes = []
  with workdir_lock.WorkdirLock(str(tmp_path), report=notes.append):
    assert json.loads(path.read_text())['pid'] == os.getpid()
  assert len(notes) == 1 and f'stale lock of pid {dead.pid}' in notes[0]
  assert not path.exists()
  path.write_text(json.dumps({'host': 'elsewhere', 'pid': dead.pid, 'started': time.time()}))
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f'pid {dead.pid} on elsewhere'):
    with workdir_lock.WorkdirLock(str(tmp_path)):
      pass
  assert path.exists()   # not ours to remove


def test_a_full_disk_stops_the_save_cleanly_and_the_next_start_goes_on(reference, tmp_path, monkeypatch):
  """ENOSPC while step 3 is written (Python-side writes of orbax and grain go through etils.epath): one
  CheckpointWriteError naming the step and the OS error; steps 1-2 intact; the next start removes the unfinished
  save and ends bitwise equal to an uninterrupted run."""
  workdir = str(tmp_path / 'w')
  path_cls = type(epath.Path(workdir))
  real = path_cls.write_text

  def full_disk(self, *args, **kwargs):
    if f'{os.sep}3.' in os.fspath(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
    return real(self, *args, **kwargs)
  monkeypatch.setattr(path_cls, 'write_text', full_disk)
  with pytest.raises(checkpoint.CheckpointWriteError,
                     match=r'checkpoints/3 failed \(No space left on device: .*steps saved before it \[1, 2\]'):
    trainer.Trainer(_config(), workdir).run()
  monkeypatch.undo()
  steps = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  assert [s for s in steps if s.isdigit()] == ['1', '2'], steps
  for step in ('1', '2'):
    assert checkpoint.verify_step(os.path.join(workdir, 'checkpoints', step))
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_FILE))
  trainer.Trainer(_config(), workdir).run()
  assert not [s for s in os.listdir(os.path.join(workdir, 'checkpoints')) if not s.isdigit()]   # tmp dir removed
  _assert_same(reference[1], _state(workdir))


def test_load_refuses_a_bit_flipped_checkpoint_naming_the_file(tmp_path):
  cfg = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2,
                    num_classes=3)
  step_dir = checkpoint.save(tmp_path, models.init_params(cfg, jax.random.key(0)), cfg)
  assert checkpoint.verify_step(step_dir)
  vmae_jax.load(str(tmp_path))
  target = _largest(os.path.join(step_dir, 'params'))
  _flip(target)
  with pytest.raises(checkpoint.CheckpointError, match=f'{target}: checksum mismatch'):
    vmae_jax.load(str(tmp_path))
  os.remove(os.path.join(step_dir, checkpoint.MANIFEST))   # unverified (a plain orbax checkpoint): read as it is
  vmae_jax.load(str(tmp_path))
