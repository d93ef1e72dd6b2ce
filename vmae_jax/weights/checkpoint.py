"""Orbax checkpoints of model parameters plus their ModelConfig.

Layout (an orbax CheckpointManager directory): `<dir>/<step>/{params, model_config}`. `params` holds the parameter
tree (`{'params': ...}`), `model_config` the ModelConfig as JSON, so a checkpoint is self-describing and restores
without any code-side config. Training workdirs keep their checkpoints under `<workdir>/checkpoints` in the same
layout, with more items beside these two: `train_state` (step, optimizer state, EMA), `data_iter` (the Grain
iterator), `config` (the training config as JSON) and, for BatchNorm models, `batch_stats`. The training items are
written and read by `training_manager` / `save_training` / `restore_training` below, the only code that names them.
"""
from __future__ import annotations

import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from vmae_jax.models.config import ModelConfig

PARAMS = 'params'
MODEL_CONFIG = 'model_config'
BATCH_STATS = 'batch_stats'   # BatchNorm running statistics, for models that have them (UniFormerV2)
TRAIN_STATE, DATA_ITER, CONFIG = 'train_state', 'data_iter', 'config'   # training workdirs only


class CheckpointError(ValueError):
  """A checkpoint path holds no readable checkpoint, or one that does not fit; the message names the path."""


def checkpoint_root(path: str | os.PathLike) -> str:
  """The CheckpointManager directory for a converted checkpoint or a training workdir."""
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise CheckpointError(f'{path}: no such checkpoint directory')
  nested = os.path.join(path, 'checkpoints')
  return nested if os.path.isdir(nested) else path


def save(directory: str | os.PathLike, params, config: ModelConfig, step: int = 0, batch_stats=None) -> str:
  """Write params + config (+ BatchNorm statistics) as step `step`; returns the step directory. Blocks until the
  write is committed."""
  directory = os.path.abspath(os.fspath(directory))
  params = jax.tree_util.tree_map(np.asarray, params)
  extra = {} if batch_stats is None else {
      BATCH_STATS: ocp.args.StandardSave(jax.tree_util.tree_map(np.asarray, batch_stats))}
  with ocp.CheckpointManager(directory, item_names=(PARAMS, MODEL_CONFIG, BATCH_STATS),
                             options=ocp.CheckpointManagerOptions(create=True,
                                                                  enable_async_checkpointing=False)) as mngr:
    mngr.save(step, args=ocp.args.Composite(**extra, **{PARAMS: ocp.args.StandardSave({'params': params}),
                                               MODEL_CONFIG: ocp.args.JsonSave(config.to_dict())}), force=True)
    mngr.wait_until_finished()
  return os.path.join(directory, str(step))


def _manager(root: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(create=False),
                               item_names=(PARAMS, MODEL_CONFIG, BATCH_STATS))


def restore_batch_stats(path, abstract, step: int | None = None):
  """The BatchNorm statistics saved beside the parameters (latest or given step), or None if none were saved."""
  root = checkpoint_root(path)
  with _manager(root) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None or not os.path.isdir(os.path.join(root, str(step), BATCH_STATS)):
      return None
    return mngr.restore(step, args=ocp.args.Composite(**{BATCH_STATS: ocp.args.StandardRestore(abstract)}))[
        BATCH_STATS]


def restore(path, abstract_params_for, step: int | None = None):
  """(config, params) of the latest (or given) step, through one manager.

  `abstract_params_for(config)` gives the parameter tree of ShapeDtypeStructs (with shardings) to restore onto;
  only the parameters are read, never optimizer state.
  """
  root = checkpoint_root(path)
  with _manager(root) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{root}: no committed checkpoint step found')
    if step not in mngr.all_steps():
      raise CheckpointError(f'{root}: no step {step}; it has {sorted(mngr.all_steps())}')
    d = mngr.restore(step, args=ocp.args.Composite(**{MODEL_CONFIG: ocp.args.JsonRestore()}))[MODEL_CONFIG]
    config = ModelConfig.from_dict(dict(d))
    abstract = abstract_params_for(config)
    restored = mngr.restore(step, args=ocp.args.Composite(
        **{PARAMS: ocp.args.StandardRestore({'params': abstract})}))
  return config, restored[PARAMS]['params']


# --- training workdirs ------------------------------------------------------------------------------------------
def training_manager(workdir: str, keep: int, best_metric: str | None = None) -> ocp.CheckpointManager:
  """The async manager of `<workdir>/checkpoints`: keeps the latest `keep` steps, plus the best one by
  `best_metric` (higher is better) when given."""
  from orbax.checkpoint import checkpoint_managers as cm
  policies = [cm.LatestN(keep)]
  if best_metric:
    policies.append(cm.BestN(get_metric_fn=lambda m: m[best_metric], n=1, keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=True,
                                         preservation_policy=cm.AnyPreservationPolicy(policies))
  return ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'), options=options,
                               item_names=(PARAMS, TRAIN_STATE, DATA_ITER, MODEL_CONFIG, CONFIG, BATCH_STATS),
                               item_handlers={DATA_ITER: grain.checkpoint.CheckpointHandler()})


def save_training(mngr: ocp.CheckpointManager, state: dict, data_iter, model_config: ModelConfig, config_json: dict,
                  metrics: dict | None = None) -> None:
  """Start writing the train state at its step (a no-op if that step exists). Parameters go to their own item, so
  `vmae_jax.load(workdir)` reads them without the optimizer state."""
  step = int(state['step'])
  if step in mngr.all_steps():
    return
  rest = {k: v for k, v in state.items() if k not in ('params', 'batch_stats')}
  extra = {BATCH_STATS: ocp.args.StandardSave(state['batch_stats'])} if 'batch_stats' in state else {}
  mngr.save(step, args=ocp.args.Composite(**extra, **{
      PARAMS: ocp.args.StandardSave({'params': state['params']}),
      TRAIN_STATE: ocp.args.StandardSave(rest),
      DATA_ITER: grain.checkpoint.CheckpointSave(data_iter),
      MODEL_CONFIG: ocp.args.JsonSave(model_config.to_dict()),
      CONFIG: ocp.args.JsonSave(config_json)}), metrics=metrics, force=True)


def restore_training(mngr: ocp.CheckpointManager, step: int, abstract_state: dict, data_iter) -> dict:
  """The train state of `step`, placed as `abstract_state` says (any mesh); the Grain iterator is set in place."""
  rest = {k: v for k, v in abstract_state.items() if k not in ('params', 'batch_stats')}
  extra = ({BATCH_STATS: ocp.args.StandardRestore(abstract_state['batch_stats'])}
           if 'batch_stats' in abstract_state else {})
  restored = mngr.restore(step, args=ocp.args.Composite(**extra, **{
      PARAMS: ocp.args.StandardRestore({'params': abstract_state['params']}),
      TRAIN_STATE: ocp.args.StandardRestore(rest),
      DATA_ITER: grain.checkpoint.CheckpointRestore(data_iter)}))
  state = {'params': restored[PARAMS]['params'], **restored[TRAIN_STATE]}
  if extra:
    state['batch_stats'] = restored[BATCH_STATS]
  return state
