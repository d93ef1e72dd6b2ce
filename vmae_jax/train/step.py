"""The train step: one micro-batch through the task's loss, its gradient, the optimizer update, the EMA.

Written once and used by the loop (trainer.py) and by every benchmark (vmae_jax/bench/), so a benchmark times
exactly what training runs.

State: {'step': micro-batches done, 'params', 'opt_state'[, 'ema'][, 'batch_stats']}. `frozen` holds arrays the
step reads but does not train (a distillation teacher's parameters), passed as a jit argument so they are not
baked into the program. The dropout / drop-path key of micro-step s is fold_in(key(seed), s): a resumed run draws
the same keys as one that never stopped. With `optax.MultiSteps` (accumulation over k micro-batches) the
parameters change only every k-th micro-step, so the EMA follows them only then.

Metrics: 'loss', 'grad_norm', the task's own, and 'params_finite' (1.0 when every float array of the new params,
EMA and BatchNorm statistics is finite, else 0.0): one reduction per array inside the step, so the loop can refuse
to save a state that an overflowing update made non-finite even while the loss and gradient were still finite.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vmae_jax.train import optim

# loss_fn(params, frozen, batch, rng) -> (scalar loss, metrics dict); metrics may carry updated 'batch_stats'
LossFn = Callable[..., tuple[jax.Array, dict]]


def train_step(state: dict, frozen: dict, batch: dict, *, loss_fn: LossFn, tx: optax.GradientTransformation,
               seed: int, ema_decay: float = 0.0, accumulate_steps: int = 1) -> tuple[dict, dict]:
  """(new state, metrics) after one micro-batch. Pure: jit it with the keyword arguments bound (`make`)."""
  rng = jax.random.fold_in(jax.random.key(seed), state['step'])
  if 'batch_stats' in state:   # BatchNorm models: the loss reads them from `frozen` and returns the updated ones
    frozen = {**frozen, 'batch_stats': state['batch_stats']}
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'], frozen, batch, rng)
  aux = dict(aux)
  batch_stats = aux.pop('batch_stats', None)
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  new = {'step': state['step'] + 1, 'params': params, 'opt_state': opt_state}
  if batch_stats is not None:
    new['batch_stats'] = batch_stats
  if 'ema' in state:
    updated = (new['step'] % accumulate_steps) == 0
    ema = optim.ema_update(state['ema'], params, ema_decay)
    new['ema'] = jax.tree_util.tree_map(lambda e, old: jnp.where(updated, e, old), ema, state['ema'])
  return new, {'loss': loss, 'grad_norm': optax.tree.norm(grads), **aux, 'params_finite': all_finite(
      [new[k] for k in ('params', 'ema', 'batch_stats') if k in new])}


def all_finite(tree) -> jax.Array:
  """1.0 if every floating-point array of `tree` is finite, else 0.0 (float32, so windows add up like losses)."""
  flags = [jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return (jnp.stack(flags).all() if flags else jnp.bool_(True)).astype(jnp.float32)


def make(loss_fn: LossFn, tx: optax.GradientTransformation, *, seed: int, ema_decay: float = 0.0,
         accumulate_steps: int = 1, out_shardings=None):
  """`train_step` jitted with the state donated; `out_shardings` (state, metrics) pins the layout step after step
  (no silent re-layout), None lets XLA choose (one device)."""
  def step(state, frozen, batch):
    return train_step(state, frozen, batch, loss_fn=loss_fn, tx=tx, seed=seed, ema_decay=ema_decay,
                      accumulate_steps=accumulate_steps)
  kwargs = {} if out_shardings is None else {'out_shardings': out_shardings}
  return jax.jit(step, donate_argnums=(0,), **kwargs)


def initial_opt_state(tx: optax.GradientTransformation, params, out_shardings=None):
  return jax.jit(tx.init, **({} if out_shardings is None else {'out_shardings': out_shardings}))(params)
