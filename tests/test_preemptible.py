"""Runs on preemptible machines (issue 17): no non-finite state is ever saved and the rerun resumes from the newest
finite step; SIGTERM saves before the evaluation due at that step; a failed asynchronous save stops the run at the
next step boundary and leaves no temporary directory; time-based checkpoints on a fake clock; a workdir whose
checkpoints were deleted is refused instead of restarted; a resume that changes the model, masks, data order or
schedule is refused unless `resume.allow_changes` lists the fields."""
from __future__ import annotations

import errno
import os
import shutil
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from recipes import load_config

from vmae_jax.models.config import ConfigError
from vmae_jax.tasks import TASKS
from vmae_jax.train import schema, trainer
from vmae_jax.weights import checkpoint

pytestmark = pytest.mark.usefixtures('synthetic_cache')


def _config(steps=4):
  c = load_config('vitb_finetune:dataset=k400', 'smoke')
  c.num_train_steps, c.checkpoint_every_steps, c.keep_checkpoints, c.eval.every_steps = steps, 1, 10, 0
  return c


def _steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())


def _all_finite(workdir, step):
  leaves = []
  for item in ('params', 'train_state'):
    tree = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step), item))
    leaves += [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
  return all(np.isfinite(x).all() for x in leaves if np.issubdtype(x.dtype, np.inexact))


def _count_batches(monkeypatch, on_batch=None):
  """Counts the training batches (and calls `on_batch(n)` before the n-th goes to the step)."""
  calls = {'n': 0}
  real = trainer.device_batch.global_batch

  def counted(batch, mesh):
    calls['n'] += 1
    if on_batch is not None:
      on_batch(calls['n'])
    return real(batch, mesh)
  monkeypatch.setattr(trainer.device_batch, 'global_batch', counted)
  return calls


def test_an_update_that_overflows_the_parameters_is_never_saved_and_the_rerun_resumes(tmp_path, capsys):
  """An lr that float32 cannot hold makes the parameters non-finite in one update while the loss and gradient of
  that step are still finite: only the parameter flag of the step sees it. Nothing non-finite reaches the disk, the
  error names the newest (finite) step, and a rerun with a sane lr resumes from it and finishes."""
  workdir = str(tmp_path)
  c = _config(steps=2)
  trainer.Trainer(c, workdir).run()
  assert _steps(workdir) == [1, 2]
  os.remove(os.path.join(workdir, trainer.RESULTS_FILE))
  huge = _config(steps=4)
  huge.optim.base_lr = 1e45
  huge.resume.allow_changes = ('optim.base_lr', 'num_train_steps')
  with pytest.raises(trainer.TrainingError, match=r'\(2, 3\] \(loss [0-9.]+, grad norm [0-9.]+, parameters finite: '
                     r'no\).*newest checkpoint, step 2, is finite.*steps \[1, 2\]'):
    trainer.Trainer(huge, workdir).run()
  assert _steps(workdir) == [1, 2]
  assert all(_all_finite(workdir, s) for s in _steps(workdir))
  capsys.readouterr()
  sane = _config(steps=4)
  sane.resume.allow_changes = ('num_train_steps',)
  trainer.Trainer(sane, workdir).run()
  assert f'resumed from {workdir}/checkpoints/2 ' in capsys.readouterr().out
  assert _steps(workdir) == [1, 2, 3, 4]
  assert all(_all_finite(workdir, s) for s in _steps(workdir))


def test_sigterm_saves_before_the_evaluation_due_at_that_step(tmp_path, monkeypatch, capsys):
  events = []
  real_periodic, real_save = TASKS['finetune'].periodic, checkpoint.TrainingCheckpoints.save

  def periodic(self, step, params, writer):
    events.append(('periodic', step))
    return real_periodic(self, step, params, writer)

  def save(self, state, *args, **kwargs):
    events.append(('save', int(state['step'])))
    return real_save(self, state, *args, **kwargs)
  monkeypatch.setattr(TASKS['finetune'], 'periodic', periodic)
  monkeypatch.setattr(checkpoint.TrainingCheckpoints, 'save', save)
  _count_batches(monkeypatch, lambda n: n == 2 and os.kill(os.getpid(), signal.SIGTERM))
  c = _config(steps=6)
  c.checkpoint_every_steps, c.eval.every_steps = 100, 2   # step 2: an evaluation due, no periodic save
  assert trainer.Trainer(c, str(tmp_path)).run() == {}
  assert 'preemption signal: saved step 2' in capsys.readouterr().out
  assert events == [('periodic', 1), ('save', 2)] or events == [('save', 2)], events
  assert _steps(str(tmp_path)) == [2]


def test_a_failed_async_save_stops_at_the_next_step_boundary_without_leftovers(tmp_path, monkeypatch):
  """ENOSPC while step 3 is written: the error comes at a step boundary soon after (not at the next save, step 9),
  and the save's temporary directory is gone before the run ends."""
  workdir = str(tmp_path / 'w')
  path_cls = type(epath.Path(workdir))
  real = path_cls.write_text

  def full_disk(self, *args, **kwargs):
    if f'{os.sep}3.' in os.fspath(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
    return real(self, *args, **kwargs)
  monkeypatch.setattr(path_cls, 'write_text', full_disk)
  calls = _count_batches(monkeypatch)
  c = _config(steps=12)
  c.checkpoint_every_steps = 3
  with pytest.raises(checkpoint.CheckpointWriteError, match=r'checkpoints/3 failed \(No space left on device'):
    trainer.Trainer(c, workdir).run()
  assert calls['n'] < 6, calls   # long before the next save
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert not [n for n in names if not n.isdigit()], names


def test_time_based_checkpoints_on_a_fake_clock(tmp_path, monkeypatch):
  """One minute per training batch on the fake clock, a save every 2.5 minutes: steps 3 and 6 by the clock (the
  clock counts from the last save), 8 at the end; never the step interval of 100."""
  calls = _count_batches(monkeypatch)
  monkeypatch.setattr(trainer, 'clock', lambda: 60.0 * calls['n'])
  c = _config(steps=8)
  c.checkpoint_every_steps, c.checkpoint_every_minutes = 100, 2.5
  trainer.Trainer(c, str(tmp_path)).run()
  assert _steps(str(tmp_path)) == [3, 6, 8]


def test_checkpoint_every_minutes_is_range_checked_and_on_in_the_full_recipes():
  c = _config()
  c.checkpoint_every_minutes = -1.0
  with pytest.raises(ConfigError, match='checkpoint_every_minutes=-1.0'):
    schema.check(c)
  assert load_config('vitb_pretrain:dataset=k400').checkpoint_every_minutes == 30
  assert load_config('vitb_pretrain:dataset=k400', 'smoke').checkpoint_every_minutes == 0
  demo = load_config('demo', 'smoke')
  assert demo.pretrain.checkpoint_every_minutes == demo.finetune.checkpoint_every_minutes == 0


def test_a_workdir_whose_checkpoints_were_deleted_is_refused(tmp_path):
  workdir = str(tmp_path)
  trainer.Trainer(_config(steps=2), workdir).run()
  metrics = (tmp_path / 'metrics.jsonl').read_text()
  for step in _steps(workdir):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
  os.remove(os.path.join(workdir, trainer.RESULTS_FILE))
  with pytest.raises(checkpoint.CheckpointError, match=r'metrics.jsonl records a training run \(up to step 2\) but '
                     r'.*holds no checkpoint'):
    trainer.Trainer(_config(steps=2), workdir).run()
  assert (tmp_path / 'metrics.jsonl').read_text() == metrics   # not truncated


def test_a_resume_that_changes_the_run_is_refused_unless_allowed(tmp_path, capsys):
  workdir = str(tmp_path)
  trainer.Trainer(_config(steps=2), workdir).run()
  os.remove(os.path.join(workdir, trainer.RESULTS_FILE))
  changed = _config(steps=4)
  changed.seed, changed.optim.base_lr = 1, 2e-3
  with pytest.raises(ConfigError, match=r"checkpoints/2 with a config.*seed: 0 → 1; num_train_steps: 2 → 4; "
                     r"optim\.base_lr: 0\.001 → 0\.002\..*resume\.allow_changes"):
    trainer.Trainer(changed, workdir).run()
  assert _steps(workdir) == [1, 2]
  changed.resume.allow_changes = ('seed', 'num_train_steps', 'optim.base_lr')
  capsys.readouterr()
  trainer.Trainer(changed, workdir).run()
  assert f'resumed from {workdir}/checkpoints/2 ' in capsys.readouterr().out
  assert _steps(workdir) == [1, 2, 3, 4]


def test_resume_compares_the_model_but_not_its_compute_settings():
  c = _config()
  saved = schema.to_json_dict(c)
  c.model.dtype = 'bfloat16'
  c.eval.every_steps, c.log_every_steps, c.checkpoint_every_minutes = 5, 7, 3.0
  assert schema.resume_changes(saved, c) == []
  c.model.embed_dim, c.data.mask_ratio, c.data.path = 64, 0.5, '/elsewhere'
  assert schema.resume_changes(saved, c) == ["data.path: '' → '/elsewhere'", 'data.mask_ratio: 0.9 → 0.5',
                                             'model.embed_dim: 32 → 64']
  c.resume.allow_changes = ('model.embed_dim', 'data.path', 'data.mask_ratio')
  assert schema.resume_changes(saved, c) == []
  c.resume.allow_changes = ('optim.base_lrr',)
  with pytest.raises(ConfigError, match=r"resume\.allow_changes: 'optim\.base_lrr' is not a field checked on "
                     r"resume \(did you mean optim\.base_lr"):
    schema.check(c)
