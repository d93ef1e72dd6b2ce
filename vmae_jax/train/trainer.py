"""The loop every task shares: state, optimizer, data, checkpoints, resume, signals, logging.

State: {'step': micro-batches done, 'params', 'opt_state'[, 'ema'][, 'batch_stats']}; batch_stats are the
BatchNorm statistics of UniFormerV2's local blocks, updated by the step and saved as their own checkpoint item.
One data batch = one micro-batch; with `optim.accumulate_steps = k`, `optax.MultiSteps` applies an update every k
micro-batches, so a checkpoint may fall anywhere and still resume exactly.

Checkpoints (orbax CheckpointManager under WORKDIR/checkpoints, async; the items are written and read in
vmae_jax/weights/checkpoint.py): `params` (what `vmae_jax.load(WORKDIR)` reads), `train_state`, `data_iter`,
`model_config`, `config`[, `batch_stats`]. The latest `keep_checkpoints` are kept, plus the best by val top-1 for
classification. The step itself is vmae_jax/train/step.py, shared with the benchmarks.

Faults (vmae_jax/weights/checkpoint.py): every step is sealed by a checksum manifest; a run starts from the newest
step that verifies and restores, moving damaged or unverified newer steps to WORKDIR/checkpoints_damaged (one line
each on stderr), and stops with CheckpointError when none does. A failed save (disk full, permission) stops the run
with CheckpointWriteError and keeps the older steps. WORKDIR/vmae_lock (train/workdir_lock.py) keeps a second run
off the workdir (WorkdirLockedError naming the holder; a stale lock of a dead process is taken over).

Exactness: the dropout/drop-path key of step s is fold_in(key(seed), s), the data order is a function of the seed
and the iterator position, and every array of the state is saved bit for bit. So a run killed at any moment (-9
included: orbax commits a step atomically, half-written steps are ignored) and started again with the same command
ends with the same parameters as one that never stopped (CPU, fixed seed; tested), and so does a run that fell
back to an older step because the newer ones were damaged.

Stops: SIGTERM (spot/preemptible VMs) → checkpoint at the next step boundary, before any evaluation due there
(those are skipped), exit 0. A non-finite loss, gradient norm or updated state (`params_finite` of
vmae_jax/train/step.py) → TrainingError naming the step range; the check runs before every save (periodic,
time-based, best-metric, SIGTERM, final), so every checkpoint on disk is finite and nothing after the last finite
check is saved. A failed asynchronous save stops the run at the next step boundary (`TrainingCheckpoints.poll`).

Time: `checkpoint_every_minutes` > 0 also saves at the first step boundary that many minutes after the last save
(process 0's clock decides for every process), so a preemption loses at most that much work even with long
`checkpoint_every_steps`.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax import models
from vmae_jax.data import pipeline
from vmae_jax.models.config import ConfigError
from vmae_jax.parallel import device_batch, distributed, sharding
from vmae_jax.tasks import TASKS, Context
from vmae_jax.train import optim, schema, workdir_lock
from vmae_jax.train import step as step_lib
from vmae_jax.train.metrics import MetricWriter, Progress
from vmae_jax.weights import checkpoint

RESULTS_FILE = 'results.json'
# The clock of time-based checkpoints (`checkpoint_every_minutes`): monotonic, so a wall-clock jump neither saves
# early nor skips a save; tests replace it with a fake one.
clock = time.monotonic


def _eval_params(state):
  """What evaluations apply: the (EMA) parameters, or {'params', 'batch_stats'} for a model with BatchNorm."""
  params = state.get('ema', state['params'])
  return {'params': params, 'batch_stats': state['batch_stats']} if 'batch_stats' in state else params


class TrainingError(RuntimeError):
  """The run cannot go on (a non-finite loss, gradient or state); every checkpoint on disk is finite and kept."""


def _is_chief() -> bool:
  return jax.process_index() == 0


def _info(msg: str) -> None:
  if _is_chief():
    print(msg, flush=True)


def _warn(msg: str) -> None:
  if _is_chief():
    print(msg, file=sys.stderr, flush=True)


class Trainer:
  def __init__(self, config, workdir: str):
    self.config = config
    if '://' in workdir:
      # metrics.jsonl is appended to, results/config are replaced by rename: file-system semantics. On Cloud TPU
      # the bucket is mounted (Cloud Storage FUSE, launch/tpu_vm.sh) and the mount path is the workdir.
      raise ConfigError(f'--workdir={workdir}: a URL is not a workdir; give a local or mounted path (for a bucket, '
                        'mount it with Cloud Storage FUSE, as launch/tpu_vm.sh does)')
    self.workdir = os.path.abspath(workdir)
    self.model_config, mesh_shape = schema.check(config, jax.device_count(), jax.process_count())
    self.data_config = schema.data_config(config, self.model_config)
    self.mesh = sharding.make_mesh(mesh_shape)
    self._stop_signal = None

  # --- checkpoints -----------------------------------------------------------------------------------------
  def _save(self, store, state, data_iter, metrics=None) -> None:
    store.save(state, data_iter, self.model_config, schema.to_json_dict(self.config), metrics)

  def _time_due(self, last_save: float) -> bool:
    """Whether `checkpoint_every_minutes` have passed since `last_save` (`clock`). Every process must
    answer the same at the same step or the collective save would hang: with several processes process 0's clock
    decides and its answer is broadcast (one small collective per optimizer step, only when the option is on)."""
    minutes = self.config.checkpoint_every_minutes
    if minutes <= 0:
      return False
    due = clock() - last_save >= minutes * 60
    return bool(distributed.from_process_0((int(due),))[0])

  def _non_finite(self, store, after: int, step: int, means: dict, finite_share: float):
    """Stop with TrainingError: the window (after, step] went non-finite and nothing of it is saved. Names the
    newest step on disk once the saves in flight are committed; every step there passed this check before it was
    saved, so each holds finite parameters."""
    store.wait()
    steps = store.all_steps()
    kept = (f'The newest checkpoint, step {steps[-1]}, is finite (as is every step on disk: each is checked before '
            f'it is saved; steps {steps} in {self.workdir}/checkpoints)' if steps else
            f'No checkpoint was saved before it in {self.workdir}/checkpoints')
    raise TrainingError(
        f'non-finite loss, gradient or parameters at a step in ({after}, {step}] (loss {means["loss"]}, grad norm '
        f'{means["grad_norm"]}, parameters finite: {"yes" if finite_share == 1.0 else "no"}); stopped without '
        f'saving it. {kept}; lower optim.base_lr or set optim.clip_grad.')

  # --- signals ----------------------------------------------------------------------------------------------
  def _on_sigterm(self, signum, frame):
    del frame
    self._stop_signal = signum

  def _stop_requested(self, step: int) -> bool:
    """Whether to checkpoint and stop after optimizer step `step`. Every process must reach the same answer at the
    same step, or the collective save would hang: with several processes the decision is JAX's preemption sync
    point (the coordination service agrees on the first step after any process received SIGTERM)."""
    if jax.process_count() == 1:
      return self._stop_signal is not None
    from jax.experimental import multihost_utils
    return multihost_utils.reached_preemption_sync_point(step)

  # --- the run ----------------------------------------------------------------------------------------------
  def run(self) -> dict[str, Any]:
    os.makedirs(self.workdir, exist_ok=True)
    with workdir_lock.WorkdirLock(self.workdir, report=_warn):   # a second run on the workdir is refused
      cfg = self.config
      ctx = Context(cfg, self.model_config, self.data_config, self.workdir, self.mesh)
      if _is_chief():
        with open(os.path.join(self.workdir, 'config.json'), 'w') as f:
          json.dump(schema.to_json_dict(cfg), f, indent=2, default=list)
      task = TASKS[cfg.task](ctx)
      if cfg.task == 'eval':
        return self._evaluate_only(task)
      return self._train(task)

  def _evaluate_only(self, task) -> dict[str, Any]:
    from vmae_jax.weights.initialize import init_from_checkpoint
    params = init_from_checkpoint(task.ctx, jax.random.key(self.config.seed), require_head=True)
    params = jax.device_put(params, sharding.tree_shardings(models.abstract_params(self.model_config), self.mesh))
    if models.abstract_batch_stats(self.model_config) is not None:
      params = {'params': params, 'batch_stats': jax.device_put(task.init_batch_stats(),
                                                                sharding.replicated(self.mesh))}
    writer = MetricWriter(self.workdir, _is_chief())
    results = task.final(params, writer, 0)
    writer.write(0, results)
    writer.close()
    self._write_results(results)
    return results

  def _write_results(self, results: dict) -> None:
    if _is_chief():
      tmp = os.path.join(self.workdir, RESULTS_FILE + '.tmp')
      with open(tmp, 'w') as f:
        json.dump(results, f, indent=2)
      os.replace(tmp, os.path.join(self.workdir, RESULTS_FILE))

  # --- the state: layout, fresh initialisation, the step ----------------------------------------------------
  def layout(self, total: int, warmup: int):
    """(optimizer, lr schedule, abstract state): shapes, dtypes and shardings of the whole train state, nothing
    allocated. They place a fresh state (each device computes only its shards) and restore a saved one written on
    any mesh. Parameters follow the logical-axis rules; optimizer moments, accumulators and EMA mirror them."""
    cfg, mcfg, o = self.config, self.model_config, self.config.optim
    boxed = models.abstract_params(mcfg)
    params_abstract = sharding.with_shardings(nn.unbox(boxed), sharding.tree_shardings(boxed, self.mesh))
    tx, lr_fn = optim.from_config(o, params_abstract, global_batch=cfg.batch_size, total_steps=total,
                                  warmup_steps=warmup, depth=mcfg.depth,
                                  frozen=models.frozen_mask(mcfg, params_abstract))
    opt_abstract = jax.eval_shape(tx.init, params_abstract)
    opt_abstract = sharding.with_shardings(opt_abstract,
                                           sharding.mirror_shardings(opt_abstract, params_abstract, self.mesh))
    abstract_state = {'step': jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(self.mesh)),
                      'params': params_abstract, 'opt_state': opt_abstract}
    if o.ema_decay > 0:
      abstract_state['ema'] = params_abstract
    stats_abstract = models.abstract_batch_stats(mcfg)   # BatchNorm statistics (UniFormerV2's local blocks): small
    if stats_abstract is not None:
      abstract_state['batch_stats'] = sharding.with_shardings(
          stats_abstract, jax.tree_util.tree_map(lambda _: sharding.replicated(self.mesh), stats_abstract))
    return tx, lr_fn, abstract_state

  def initial_state(self, task, tx, abstract_state) -> dict:
    """A fresh state placed on the mesh, sharded from the start."""
    shardings = jax.tree_util.tree_map(lambda a: a.sharding, abstract_state)
    params = task.init_params_sharded(jax.random.key(self.config.seed), shardings['params'])
    state = {'step': jax.device_put(jnp.zeros((), jnp.int32), shardings['step']), 'params': params,
             'opt_state': step_lib.initial_opt_state(tx, params, shardings['opt_state'])}
    if 'ema' in abstract_state:
      state['ema'] = jax.tree_util.tree_map(jnp.copy, params)
    if 'batch_stats' in abstract_state:
      state['batch_stats'] = jax.device_put(task.init_batch_stats(), shardings['batch_stats'])
    return state

  def lower_step(self, abstract_batch: dict, total_steps: int = 1000):
    """The train step lowered on abstract inputs (ShapeDtypeStructs; nothing is allocated): for compile checks
    and `compiled.memory_analysis()` of full-size models on any mesh. `abstract_batch` holds the global batch."""
    task = TASKS[self.config.task](Context(self.config, self.model_config, self.data_config, self.workdir,
                                           self.mesh))
    tx, _, abstract_state = self.layout(total_steps, max(total_steps // 10, 1))
    jitted = self._jitted_step(task, tx, abstract_state)
    batch_sh = sharding.batch_sharding(self.mesh)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh) for k, v in abstract_batch.items()}
    frozen = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                                    task.frozen_inputs())
    with sharding.activate(self.mesh):
      return jitted.lower(abstract_state, frozen, batch)

  def _train(self, task) -> dict[str, Any]:
    cfg, mcfg = self.config, self.model_config
    k = cfg.optim.accumulate_steps
    num_classes = mcfg.num_classes or None
    videos = pipeline.num_train_videos(self.data_config, 'train', num_classes)
    total, warmup, per_epoch = schema.schedule_steps(cfg, videos)
    total_micro = total * k

    tx, lr_fn, abstract_state = self.layout(total, warmup)

    local_batch = cfg.batch_size // k // jax.process_count()
    dataset = pipeline.train_dataset(self.data_config, task.pipeline_task, local_batch, cfg.seed,
                                     num_classes=num_classes, error_dir=self.workdir)
    data_iter = iter(dataset)

    store = checkpoint.TrainingCheckpoints(self.workdir, cfg.keep_checkpoints, task.best_metric, report=_warn)
    writer, failing = None, False
    try:
      latest = store.latest_step()
      results_path = os.path.join(self.workdir, RESULTS_FILE)
      if latest is not None and latest >= total_micro and os.path.exists(results_path):
        with open(results_path) as f:
          results = json.load(f)
        _info(f'{self.workdir}: training already finished at step {total}; nothing to do')
        return results
      state = store.resume(abstract_state, data_iter)   # the newest step that verifies and restores
      if state is not None:
        resumed = int(state['step'])
        changes = schema.resume_changes(store.saved_config(resumed), cfg)
        if changes:
          raise ConfigError(
              f'resuming {self.workdir}/checkpoints/{resumed} with a config that changes what that run was trained '
              f'with: {"; ".join(changes)}. The result would be neither run: use the saved values, another workdir, '
              f"or list the fields in resume.allow_changes (a tuple, e.g. ('{changes[0].split(':')[0]}',))")
        _info(f'resumed from {self.workdir}/checkpoints/{resumed} (micro-step {resumed} of {total_micro})')
      else:
        self._refuse_lost_checkpoints(store)
        state = self.initial_state(task, tx, abstract_state)
      start = int(state['step'])
      writer = MetricWriter(self.workdir, _is_chief(), resume_step=start // k)
      o = cfg.optim
      if start == 0:
        _info(f'{cfg.task}: {mcfg.name}, {total} steps ({per_epoch} per epoch of {videos} videos), warmup {warmup}, '
              f'batch {cfg.batch_size}' + (f' in {k} micro-batches' if k > 1 else '') +
              f', peak lr {optim.scaled_lr(o.base_lr, cfg.batch_size):.3g}, mesh {dict(self.mesh.shape)}')
        unsplit = sharding.unsplit_dims(models.abstract_params(mcfg), self.mesh)
        if unsplit:
          _info(f'{len(unsplit)} parameter dims not divisible by their mesh axes stay whole: ' + '; '.join(unsplit))
      state = self._loop(task, state, data_iter, store, writer, tx, lr_fn, total_micro, k, abstract_state)
      if state is None:   # stopped by a signal, checkpoint written
        return {}
      self._save(store, state, data_iter)
      store.wait()
      results = task.final(_eval_params(state), writer, total)
      results = {k_: (float(v) if isinstance(v, (np.floating, float)) else v) for k_, v in results.items()}
      writer.write(total, results)
      self._write_results(results)
      return results
    except BaseException:
      failing = True   # the error in flight is the one to report, not a save that failed under it
      raise
    finally:
      try:
        if writer is not None:
          writer.close()
      except OSError:
        if not failing:   # a full disk under the error in flight: that error is the one to report
          raise
      finally:
        store.close(quiet=failing)

  def _refuse_lost_checkpoints(self, store) -> None:
    """A workdir with no checkpoint but a metrics.jsonl that records training steps: a run happened and its
    checkpoints are gone (deleted, or it stopped before its first save). Starting afresh would truncate its metrics
    and pass a new run off as the old one, so stop with CheckpointError (process 0 reads the file, every process
    gets its answer)."""
    path = os.path.join(self.workdir, 'metrics.jsonl')
    last = -1
    if _is_chief() and os.path.isfile(path):
      with open(path) as f:
        for line in f:
          try:
            last = max(last, int(json.loads(line).get('step', 0)))
          except (ValueError, TypeError, AttributeError):
            pass   # a line cut by a kill
    (last,) = distributed.from_process_0((last,))
    if last > 0:
      raise checkpoint.CheckpointError(
          f'{self.workdir}: metrics.jsonl records a training run (up to step {last}) but {store.root} holds no '
          'checkpoint (deleted, or the run stopped before its first save); refusing to start afresh over it. Use '
          'another workdir, or remove metrics.jsonl to start over in this one')

  def _jitted_step(self, task, tx, abstract_state):
    # The state keeps its shardings step after step (no silent re-layout); metrics are replicated scalars.
    o = self.config.optim
    state_sh = jax.tree_util.tree_map(lambda a: a.sharding, abstract_state)
    return step_lib.make(task.loss, tx, seed=self.config.seed, ema_decay=o.ema_decay,
                         accumulate_steps=o.accumulate_steps,
                         out_shardings=(state_sh, sharding.replicated(self.mesh)))

  def _step_fn(self, task, tx, abstract_state):
    jitted = self._jitted_step(task, tx, abstract_state)

    def call(state, frozen, batch):
      with sharding.activate(self.mesh):   # traced with the mesh and rules: activation constraints apply
        return jitted(state, frozen, batch)
    return call

  def _loop(self, task, state, data_iter, store, writer, tx, lr_fn, total_micro, k, abstract_state):
    cfg = self.config
    step_fn = self._step_fn(task, tx, abstract_state)
    frozen = task.frozen_inputs()
    monitor = pipeline.FailureMonitor(self.data_config.max_failure_share, self.data_config.failure_window)
    keys = task.batch_keys
    clips_per_batch = cfg.batch_size // k * self.data_config.num_sample
    micro = int(state['step'])
    progress = Progress(total_micro // k, micro // k, _is_chief(), cfg.task)
    # Signal handlers: main thread only, and single-process only (with several processes JAX's preemption
    # notifier owns SIGTERM, see _stop_requested).
    own_handler = threading.current_thread() is threading.main_thread() and jax.process_count() == 1
    previous = signal.signal(signal.SIGTERM, self._on_sigterm) if own_handler else None
    window, window_steps, window_start, checked = None, 0, time.time(), micro
    last_save = clock()   # the time-based checkpoint counts from the start or the last save
    try:
      while micro < total_micro:
        local = next(data_iter)
        monitor.update(local)
        batch = device_batch.global_batch({key: local[key] for key in keys}, self.mesh)
        state, metrics = step_fn(state, frozen, batch)
        micro += 1
        window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
        window_steps += 1
        if micro % k:
          continue
        step = micro // k
        store.poll()   # a failed asynchronous save stops the run at the first step boundary after it
        due_log = step % cfg.log_every_steps == 0 or micro == total_micro
        stop = self._stop_requested(step)
        due_ckpt = step % cfg.checkpoint_every_steps == 0 or self._time_due(last_save)
        if due_log or due_ckpt or stop:
          jax.block_until_ready(window)
        train_end = time.time()   # clips/s counts training only, not the evaluations below
        # Preemption first: a stop saves before anything else; the evaluations due at this step are skipped (the
        # grace period of a preempted VM is for the checkpoint).
        extra = {} if stop else task.periodic(step, _eval_params(state), writer)
        if due_log or due_ckpt or extra or stop:
          # Every save below comes after this check: no non-finite state ever reaches the disk.
          means = {key: float(v) / window_steps for key, v in jax.device_get(window).items()}
          finite_share = means.pop('params_finite')
          if not (math.isfinite(means['loss']) and math.isfinite(means['grad_norm']) and finite_share == 1.0):
            self._non_finite(store, checked // k, step, means, finite_share)
          checked = micro
          elapsed = train_end - window_start
          means['lr'] = float(lr_fn(step - 1))
          means['clips_per_s'] = window_steps * clips_per_batch / max(elapsed, 1e-9)
          means.update(monitor.metrics())
          means.update(extra)
          writer.write(step, means)
          progress.update(window_steps // k, loss=means['loss'], lr=means['lr'],
                          clips_s=round(means['clips_per_s'], 1))
          if due_log:
            _info(f'step {step}/{total_micro // k}: ' + ', '.join(f'{a}={b:.4g}' for a, b in means.items()
                                                                  if isinstance(b, float)))
          window, window_steps, window_start = None, 0, time.time()
        if stop:
          self._save(store, state, data_iter)
          store.wait()
          _info(f'preemption signal: saved step {step} to {self.workdir}/checkpoints; run the same '
                'command again to continue')
          return None
        if due_ckpt or (extra and task.best_metric in extra):
          self._save(store, state, data_iter, metrics=extra if task.best_metric in extra else None)
          last_save = clock()
      return state
    finally:
      progress.close()
      if previous is not None:
        signal.signal(signal.SIGTERM, previous)
