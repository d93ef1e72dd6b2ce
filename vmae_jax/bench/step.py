"""`python -m vmae_jax.bench step`: time one real training step (forward + loss + backward + AdamW) of a model.

The step is the trainer's own (vmae_jax/train/step.py: the task's loss from `tasks/pretrain.py` or
`tasks/classify.py`, its gradient, the optimizer of `optim.from_config`, the update), jitted with the state donated.
Modes:

  v1        tube mask 0.9, the decoder predicts every masked token (loss over all of them);
  v2        tube mask 0.9 + running-cell decoder mask 0.5: the decoder runs on the visible tokens + its kept half,
            the loss counts the kept tokens that the encoder did not see;
  finetune  the classifier of the same size on every token, cross-entropy on label-smoothed targets (0.1; the
            recipe's Mixup/CutMix mixing happens on the host and is left out). Adapter models (UniFormerV2, EVL)
            run this mode too, with the frozen-backbone mask of their config (bench/adapters.py).

Masks come from `data.masking.sample_masks` on the host, as in training. Reported: compile time; the median step
time of N steps after warm-up (each blocked on the new state and the loss); clips/s; model FLOPs per clip
(vmae_jax/bench/flops.py); achieved TFLOP/s and MFU against (a) a bf16 dense datasheet peak when the device is a known
GPU and (b) a matmul peak measured here in the step's dtype; peak memory (on GPU the allocator's
`peak_bytes_in_use`; elsewhere XLA's compile-time estimate of arguments + outputs − aliased + temporaries).
"""
from __future__ import annotations

import ast
import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax import models
from vmae_jax.data import masking
from vmae_jax.models import registry
from vmae_jax.models.config import ConfigError, ModelConfig
from vmae_jax.models.target import IMAGENET_MEAN, IMAGENET_STD
from vmae_jax.parallel import sharding
from vmae_jax.tasks.base import Context
from vmae_jax.tasks.classify import Classify
from vmae_jax.tasks.pretrain import Pretrain
from vmae_jax.train import optim, schema
from vmae_jax.train import step as step_lib

MODES = ('v1', 'v2', 'finetune')
# bf16 dense tensor-core peaks from the vendors' datasheets (SXM parts), TFLOP/s; matched on jax's device_kind.
DATASHEET_BF16_TFLOPS = (('H200', 989.0), ('H100', 989.0), ('A100', 312.0))


# --- what is run --------------------------------------------------------------------------------------------------
def model_config(name: str, mode: str, *, frames: int = 16, img_size: int = 224, dtype: str = 'float32',
                 attention: str = 'auto', remat: str = 'none', num_classes: int = 400,
                 overrides: dict | None = None) -> ModelConfig:
  """The model a mode trains. `finetune` maps a pretraining name to the classifier of the same size; v2 uses the
  V2 decoder where the size defines one (large/huge differ from V1), else the only decoder it has."""
  if mode not in MODES:
    raise ConfigError(f'--mode={mode!r}: choose one of {MODES}')
  fields = {**dict(num_frames=frames, img_size=img_size, dtype=dtype, attention=attention, remat_policy=remat),
            **(overrides or {})}
  if mode == 'finetune':
    if name in registry.PRETRAIN:
      size = registry.PRETRAIN[name]
      name = next(n for n, s in registry.CLASSIFIERS.items() if s == size)
    if name not in registry.CLASSIFIERS:
      raise ConfigError(f'--model={name!r}: finetune needs a classifier or pretraining name; '
                        f'registered: {registry.model_names()}')
    return registry.get_config(name, **{'num_classes': num_classes, **fields})
  if name not in registry.PRETRAIN:
    raise ConfigError(f'--model={name!r}: mode {mode} needs a pretraining model; registered: {list(registry.PRETRAIN)}')
  try:
    return registry.get_config(name, version=mode, **fields)
  except ConfigError:   # e.g. ViT-S has only its V1 decoder, ViT-g only V2's: the masking still follows the mode
    return registry.get_config(name, **fields)


def host_batch(config: ModelConfig, mode: str, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
  """One batch as the pipeline delivers it (uint8 clips for pretraining, normalised float32 for fine-tuning) plus
  the boolean masks the PyTorch reference takes (`encoder_mask`, `decoder_mask`, True = masked / dropped)."""
  rng = np.random.default_rng(seed)
  shape = (batch, config.num_frames, config.img_size, config.img_size, config.in_chans)
  video = rng.integers(0, 256, shape, dtype=np.uint8)
  if mode == 'finetune':
    normed = (video.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD,
                                                                                                      np.float32)
    return {'video': normed, 'label': rng.integers(0, config.num_classes, batch).astype(np.int32)}
  decoder = ('run_cell', 0.5) if mode == 'v2' else (None,)
  masks = [masking.sample_masks(rng, config.token_grid(), 'tube', 0.9, *decoder) for _ in range(batch)]
  out = {'video': video}
  for key in ('visible_idx', 'pred_idx', 'loss_weight', 'encoder_mask') + (('decoder_mask',) if mode == 'v2' else ()):
    out[key] = np.stack([m[key] for m in masks])
  return out


def token_counts(config: ModelConfig, batch: dict) -> tuple[int | None, int]:
  """(encoder tokens, predicted tokens) per clip, from the batch's index arrays (None, 0 for a classifier)."""
  if config.kind == 'pretrain':
    return batch['visible_idx'].shape[1], batch['pred_idx'].shape[1]
  return None, 0


def make_task(config: ModelConfig, mode: str):
  """The training task whose `loss` the step differentiates (the trainer's own), on a one-device mesh. `finetune`
  takes any classifier, adapters included."""
  task_name = 'pretrain' if mode != 'finetune' else 'finetune'
  cfg = schema.defaults(task_name)
  cfg.data.num_frames, cfg.data.input_size = config.num_frames, config.img_size
  cfg.data.mixup = cfg.data.cutmix = 0.0        # hard labels + label smoothing: same loss cost, no host mixing
  if mode == 'v2':
    cfg.data.decoder_mask_type = 'run_cell'
  mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
  ctx = Context(cfg, config, schema.data_config(cfg, config), workdir='', mesh=mesh)
  return (Pretrain if task_name == 'pretrain' else Classify)(ctx), cfg


def initial_state(task, cfg, params) -> tuple[dict, Callable]:
  """(state as the trainer holds it, the trainer's jitted step) for `params` on one device. The optimizer comes
  from the config's `optim` section with the model's frozen mask; the schedule is the real warmup-cosine table
  (its length does not change the work)."""
  config = task.ctx.model_config
  tx, _ = optim.from_config(cfg.optim, params, global_batch=cfg.batch_size, total_steps=1000, warmup_steps=10,
                            depth=config.depth, frozen=models.frozen_mask(config, params))
  state = {'step': jnp.zeros((), jnp.int32), 'params': params, 'opt_state': step_lib.initial_opt_state(tx, params)}
  if models.abstract_batch_stats(config) is not None:
    state['batch_stats'] = jax.device_put(task.init_batch_stats(), jax.devices()[0])
  step = step_lib.make(task.loss, tx, seed=cfg.seed, ema_decay=cfg.optim.ema_decay,
                       accumulate_steps=cfg.optim.accumulate_steps)
  return state, step


# --- ceilings and memory ------------------------------------------------------------------------------------------
def datasheet_peak(device) -> tuple[float, str] | None:
  """(bf16 dense TFLOP/s, label) for a known GPU, else None."""
  kind = getattr(device, 'device_kind', '')
  for key, tflops in DATASHEET_BF16_TFLOPS:
    if key in kind:
      return tflops, f'{kind} bf16 dense datasheet'
  return None


def measured_matmul_peak(dtype: str, device, size: int | None = None, repeats: int = 5) -> dict[str, Any]:
  """Best TFLOP/s of a square matmul in `dtype` on `device` (8192 on accelerators, 2048 on CPU), blocked."""
  size = size or (2048 if device.platform == 'cpu' else 8192)
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.device_put(jax.random.normal(key_a, (size, size), jnp.dtype(dtype)), device)
  b = jax.device_put(jax.random.normal(key_b, (size, size), jnp.dtype(dtype)), device)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t0 = time.perf_counter()
    matmul(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return {'tflops': 2 * size ** 3 / best / 1e12, 'size': size, 'dtype': dtype}


def memory_figure(compiled, device) -> dict[str, Any]:
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and 'peak_bytes_in_use' in stats:
    return {'bytes': int(stats['peak_bytes_in_use']), 'source': 'device peak_bytes_in_use'}
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  return {'bytes': int(total), 'source': 'XLA compile-time estimate (arguments + outputs - aliased + temporaries)'}


# --- the run ------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class JaxStep:
  """A compiled step with its live state; `run()` does one step and blocks on the new state and the loss."""
  compiled: Any
  state: dict
  frozen: dict                    # what the step reads but does not train (empty for these tasks)
  batch: dict
  compile_s: float
  optim: Any                      # the recipe's optimizer settings (the PyTorch reference copies them)
  losses: list = dataclasses.field(default_factory=list)

  def run(self) -> float:
    t0 = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.frozen, self.batch)
    jax.block_until_ready((self.state, metrics))
    elapsed = time.perf_counter() - t0
    self.losses.append(float(metrics['loss']))
    return elapsed


def build_jax_step(config: ModelConfig, mode: str, batch_np: dict, seed: int = 0) -> JaxStep:
  task, cfg = make_task(config, mode)
  device = jax.devices()[0]
  params = jax.device_put(models.init_params(config, jax.random.key(seed)), device)
  state, step = initial_state(task, cfg, params)
  frozen = task.frozen_inputs()
  batch = jax.device_put({k: batch_np[k] for k in task.batch_keys}, device)
  t0 = time.perf_counter()
  with sharding.activate(task.ctx.mesh):   # traced as the trainer traces it: mesh and logical rules in context
    compiled = step.lower(state, frozen, batch).compile()
  compile_s = time.perf_counter() - t0
  return JaxStep(compiled, state, frozen, batch, compile_s, cfg.optim)


def parse_overrides(items: list[str]) -> dict[str, Any]:
  """`field=value` ModelConfig overrides (value read as a Python literal, else a string)."""
  out = {}
  for item in items:
    if '=' not in item:
      raise ConfigError(f'override {item!r} is not field=value')
    key, value = item.split('=', 1)
    try:
      out[key.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      out[key.strip()] = value.strip()
  return out


def median(times: list[float]) -> float:
  return statistics.median(times) if times else float('nan')
