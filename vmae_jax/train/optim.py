"""Optax recipes of the official code (VideoMAE `optim_factory.py` and `utils.cosine_scheduler`; docs/fidelity.md,
"Recipes").

- lr = base_lr × global_batch / 256 (V2's `num_sample` repeats are not counted), same scaling for min_lr.
- Per-step schedule: linear warmup from 0 (`np.linspace(0, lr, warmup_steps)`, its last value is the peak), then
  `min_lr + 0.5·(lr − min_lr)·(1 + cos(π·i/n))` for i = 0..n−1; the table is looked up by step, so the values are the
  official ones, not a re-derivation.
- AdamW (eps 1e-8) with no weight decay on biases, LayerNorm parameters, q/v biases and the mask token.
- Layer-wise lr decay `decay^(L+1−layer_id)` (patch embedding 0, block i → i+1, everything after the blocks L+1),
  applied as a final per-parameter scale. That equals per-layer AdamW learning rates (decoupled weight decay is also
  multiplied by the lr) and works on `nn.scan`-stacked blocks, whose leading axis is the layer.
- Global-norm clipping before AdamW; gradient accumulation with `optax.MultiSteps` (mean of micro-batch gradients =
  the gradient of the large batch when the loss is a batch mean); parameter EMA as a separate function.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

NO_DECAY_NAMES = ('bias', 'scale', 'q_bias', 'v_bias', 'mask_token', 'pos_embed', 'cls_token')


def scaled_lr(base_lr: float, global_batch: int) -> float:
  """The official linear scaling rule: base × global batch / 256."""
  return base_lr * global_batch / 256


def schedule_table(peak_lr: float, min_lr: float, total_steps: int, warmup_steps: int) -> np.ndarray:
  """`utils.cosine_scheduler` of the official code, per step (float64 table)."""
  if total_steps <= 0:
    raise ValueError(f'total_steps must be positive, got {total_steps}')
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f'warmup_steps={warmup_steps} must be in [0, total_steps={total_steps}]')
  warmup = np.linspace(0.0, peak_lr, warmup_steps)
  iters = np.arange(total_steps - warmup_steps)
  cosine = min_lr + 0.5 * (peak_lr - min_lr) * (1 + np.cos(math.pi * iters / max(len(iters), 1)))
  return np.concatenate([warmup, cosine])


def schedule(peak_lr: float, min_lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  table = jnp.asarray(schedule_table(peak_lr, min_lr, total_steps, warmup_steps), jnp.float32)
  return lambda step: table[jnp.clip(step, 0, table.shape[0] - 1)]


def _name(path) -> str:
  last = path[-1]
  return str(getattr(last, 'key', getattr(last, 'name', last)))


DECAY_RULES = ('names', 'ndim', 'all')


def decay_mask(params, rule: str = 'names') -> Any:
  """True where weight decay applies.

  'names' (VideoMAE): kernels (incl. the patch-embedding conv and encoder_to_decoder), not biases, norms, q/v
  biases, mask/cls tokens. 'ndim' (UniFormerV2's SlowFast rule): every parameter with ≥ 2 dims (so the position
  table and the [1, 1, C] query token decay; biases, norms, BatchNorm, class_embedding and balance do not).
  'all' (EVL): every trainable parameter.
  """
  if rule not in DECAY_RULES:
    raise ValueError(f'weight decay rule {rule!r}: must be one of {DECAY_RULES}')

  def decays(path, leaf):
    if rule == 'all':
      return True
    if rule == 'ndim':
      return len(leaf.shape) >= 2
    name = _name(path)
    return not (name in NO_DECAY_NAMES or name.endswith('_bias'))
  return jax.tree_util.tree_map_with_path(decays, params)


def layer_decay_factors(params, depth: int, decay: float) -> Any:
  """Per-parameter lr multipliers decay^(L+1−layer_id), shaped to broadcast over each leaf.

  layer_id: encoder patch embedding 0; scanned encoder block i → i+1 (the leading axis); anything else (final
  norm, fc_norm, head) L+1.
  """
  block_factors = decay ** (depth - np.arange(depth))  # layer_id = i + 1 → decay^(L − i)

  def factor(path, leaf):
    keys = [str(getattr(k, 'key', k)) for k in path]
    if keys[:2] == ['encoder', 'patch_embed']:
      return jnp.asarray(decay ** (depth + 1), jnp.float32)
    if keys[:2] == ['encoder', 'blocks']:
      if leaf.shape[0] != depth:
        raise ValueError(f'{"/".join(keys)}: leading axis {leaf.shape[0]} is not the depth {depth}')
      return jnp.asarray(block_factors, jnp.float32).reshape((depth,) + (1,) * (leaf.ndim - 1))
    return jnp.asarray(1.0, jnp.float32)
  return jax.tree_util.tree_map_with_path(factor, params)


def scale_by_tree(factors) -> optax.GradientTransformation:
  """Multiply each update by a fixed per-leaf factor (broadcasting). Leaves another transformation masked out
  (`optax.MaskedNode`, e.g. a frozen backbone under `multi_transform`) stay as they are."""
  def scale(u, f):
    return u if isinstance(u, optax.MaskedNode) else u * f.astype(u.dtype)

  def update(updates, state, params=None):
    del params
    is_masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    return jax.tree_util.tree_map(scale, updates, factors, is_leaf=is_masked), state
  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def adamw(params, *, base_lr: float, global_batch: int, total_steps: int, warmup_steps: int, min_lr: float = 1e-6,
          b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.05,
          clip_grad: float | None = None, layer_decay: float | None = None, depth: int | None = None,
          accumulate_steps: int = 1, decay_rule: str = 'names',
          frozen=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The official optimizer for `params` (an unboxed parameter tree); returns (transformation, lr schedule).

  `base_lr` and `min_lr` are scaled by global_batch/256 here. `total_steps`/`warmup_steps` count optimizer
  updates (after accumulation). `frozen` (a tree of bools like `params`, True = frozen) routes those parameters
  to a zero update with no optimizer state (`optax.multi_transform`); clipping, the norm it clips and weight decay
  then see only the trained ones.
  """
  lr = schedule(scaled_lr(base_lr, global_batch), scaled_lr(min_lr, global_batch), total_steps, warmup_steps)
  parts = []
  if clip_grad:
    parts.append(optax.clip_by_global_norm(clip_grad))
  parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                          mask=lambda p: decay_mask(p, decay_rule)))
  if layer_decay is not None and layer_decay != 1.0:
    if depth is None:
      raise ValueError('layer_decay needs the encoder depth')
    parts.append(scale_by_tree(layer_decay_factors(params, depth, layer_decay)))
  tx = optax.chain(*parts)
  if frozen is not None:
    labels = jax.tree_util.tree_map(lambda f: 'frozen' if f else 'trained', frozen)
    tx = optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, labels)
  if accumulate_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=accumulate_steps)
  return tx, lr


def from_config(o, params, *, global_batch: int, total_steps: int, warmup_steps: int, depth: int | None = None,
                frozen=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`adamw` from a config's `optim` section (the one place its fields become optimizer arguments)."""
  return adamw(params, base_lr=o.base_lr, global_batch=global_batch, total_steps=total_steps,
               warmup_steps=warmup_steps, min_lr=o.min_lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay,
               clip_grad=o.clip_grad or None, layer_decay=o.layer_decay if o.layer_decay != 1.0 else None,
               depth=depth, accumulate_steps=o.accumulate_steps, decay_rule=o.decay_rule, frozen=frozen)


def ema_update(ema_params, params, decay: float):
  """Exponential moving average of parameters (timm ModelEma: ema = decay·ema + (1 − decay)·params)."""
  return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
