"""EVL frozen backbone vs full fine-tuning of the same model: step time and memory (figures go to BENCHMARKS.md).

    python -m vmae_jax.bench.adapters --model=evl_b16 --batch=2 --frames=8 --steps=3 [--dtype=bfloat16]

One optimizer step as the training loop runs it (cross-entropy, value_and_grad, optim.adamw with the loop's
frozen mask, apply_updates, donated state), compiled once per mode. Reported per mode: median seconds per step,
XLA's compiled memory analysis of the step (temporaries = activations kept for the backward pass and workspace;
arguments = parameters + optimizer state + batch), and the optimizer-state bytes. `frozen`: model.freeze_backbone
(stop_gradient on the backbone features + no optimizer state for it); `full`: the same network, every parameter
trained.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vmae_jax import models
from vmae_jax.train import optim


def _nbytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def bench_mode(model: str, frozen: bool, batch: int, frames: int, steps: int, dtype: str, classes: int) -> dict:
  config = models.get_config(model, num_classes=classes, num_frames=frames, dtype=dtype, freeze_backbone=frozen)
  params = models.init_params(config, jax.random.key(0))
  tx, _ = optim.adamw(params, base_lr=4e-4, global_batch=256, total_steps=1000, warmup_steps=0, min_lr=0.0,
                      weight_decay=0.05, decay_rule='all', frozen=models.frozen_mask(config, params))
  opt_state = tx.init(params)
  module = models.build(config)
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.standard_normal((batch, frames, config.img_size, config.img_size, 3)), jnp.float32)
  label = jnp.asarray(rng.integers(0, classes, batch), jnp.int32)

  def step(params, opt_state, video, label, key):
    def loss_fn(p):
      logits = module.apply({'params': p}, video, deterministic=False, rngs={'dropout': key})
      return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), label).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  jitted = jax.jit(step, donate_argnums=(0, 1))
  t0 = time.perf_counter()
  compiled = jitted.lower(params, opt_state, video, label, jax.random.key(1)).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  times = []
  for i in range(steps + 1):   # the first call is a warm-up
    t0 = time.perf_counter()
    params, opt_state, loss = compiled(params, opt_state, video, label, jax.random.key(i))
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  result = {'mode': 'frozen' if frozen else 'full', 'step_s': statistics.median(times[1:]), 'times': times[1:],
            'compile_s': compile_s, 'temp_bytes': getattr(mem, 'temp_size_in_bytes', -1),
            'argument_bytes': getattr(mem, 'argument_size_in_bytes', -1), 'opt_state_bytes': _nbytes(opt_state),
            'param_bytes': _nbytes(params), 'loss': float(loss)}
  print(f"{model} {result['mode']:>6}: {result['step_s']:.3f} s/step (median of {steps}: "
        f"{', '.join(f'{t:.3f}' for t in result['times'])}), compile {compile_s:.1f} s, temporaries "
        f"{result['temp_bytes'] / 2**30:.2f} GiB, arguments {result['argument_bytes'] / 2**30:.2f} GiB, optimizer "
        f"state {result['opt_state_bytes'] / 2**20:.1f} MiB, params {result['param_bytes'] / 2**20:.1f} MiB",
        flush=True)
  return result


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m vmae_jax.bench.adapters')
  parser.add_argument('--model', default='evl_b16')
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--classes', type=int, default=400)
  parser.add_argument('--dtype', default='float32')
  args = parser.parse_args(argv)
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}; batch {args.batch} × '
        f'{args.frames} frames, dtype {args.dtype}', flush=True)
  frozen = bench_mode(args.model, True, args.batch, args.frames, args.steps, args.dtype, args.classes)
  full = bench_mode(args.model, False, args.batch, args.frames, args.steps, args.dtype, args.classes)
  print(f"full / frozen: step time ×{full['step_s'] / frozen['step_s']:.2f}, temporaries "
        f"×{full['temp_bytes'] / max(frozen['temp_bytes'], 1):.2f}, optimizer state "
        f"×{full['opt_state_bytes'] / max(frozen['opt_state_bytes'], 1):.2f}")
  return 0


if __name__ == '__main__':
  sys.exit(main())
