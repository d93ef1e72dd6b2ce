"""What the shared loop (trainer.py) needs from a task: its model, data, initial parameters, loss, and the
evaluations it runs during and after training."""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax

from vmae_jax import models
from vmae_jax.models.config import ModelConfig
from vmae_jax.parallel import sharding


@dataclasses.dataclass
class Context:
  config: Any                    # the training ConfigDict
  model_config: ModelConfig
  data_config: Any               # the pipeline's data config
  workdir: str
  mesh: jax.sharding.Mesh


class Task(abc.ABC):
  """Subclasses set `pipeline_task` ('pretrain' | 'finetune') and `batch_keys`, and implement `loss`."""
  pipeline_task = 'finetune'
  batch_keys: tuple[str, ...] = ()
  best_metric: str | None = None          # a metric of `periodic` that selects the best checkpoint

  def __init__(self, ctx: Context):
    self.ctx = ctx
    self.config = ctx.config
    self.model = models.build(ctx.model_config)

  # --- set-up -----------------------------------------------------------------------------------------------
  def init_params(self, rng: jax.Array) -> dict:
    return models.init_params(self.ctx.model_config, rng)

  def init_params_sharded(self, rng: jax.Array, shardings) -> dict:
    """Initial parameters placed on `shardings`. Fresh initialisation is jitted straight into the shards (no
    device ever holds the whole model); tasks that read a checkpoint override this."""
    return sharding.init_sharded(self.init_params, rng, shardings)

  def init_batch_stats(self) -> dict:
    """Starting BatchNorm statistics, for models that keep them (the trainer asks only then)."""
    raise NotImplementedError(f'{type(self).__name__} does not train models with BatchNorm')

  def frozen_inputs(self) -> dict:
    """Arrays the step reads but does not train (a teacher's parameters); passed as jit arguments."""
    return {}

  # --- the step (pure, jitted by the trainer) -----------------------------------------------------------------
  @abc.abstractmethod
  def loss(self, params, frozen: dict, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
    """(scalar loss, metrics) of one batch; `frozen` is `frozen_inputs()`, `rng` the step's dropout key."""

  # --- evaluations -------------------------------------------------------------------------------------------
  def periodic(self, step: int, params, writer) -> dict[str, float]:
    """Called after every optimizer step; returns the metrics of whatever evaluation was due (or {})."""
    return {}

  def final(self, params, writer, step: int) -> dict[str, Any]:
    """After the last step: the run's results (written to WORKDIR/results.json)."""
    return {}
