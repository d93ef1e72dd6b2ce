"""Benchmarks (figures go to BENCHMARKS.md, never into tests).

    python -m vmae_jax.bench attention --model=pretrain_videomae_small_patch16_224 --batch=2 --steps=5

`attention`: median seconds per forward+backward of the V1 pretraining loss (tube mask 0.9, 16×224², decoder over
every masked token) for each attention implementation, to back the `attention='auto'` choice per backend.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax import models
from vmae_jax.data import masking
from vmae_jax.target import gather_target, pixel_target, reconstruction_loss


def _pretrain_step(config, batch: int, seed: int = 0):
  params = models.init_params(config, jax.random.key(seed))
  rng = np.random.default_rng(seed)
  ms = [masking.sample_masks(rng, config.token_grid(), 'tube', 0.9) for _ in range(batch)]
  visible = jnp.asarray(np.stack([m['visible_idx'] for m in ms]))
  pred = jnp.asarray(np.stack([m['pred_idx'] for m in ms]))
  video = jnp.asarray(rng.standard_normal((batch, config.num_frames, config.img_size, config.img_size, 3)),
                      jnp.float32)
  module = models.build(config)

  def loss_fn(p):
    out = module.apply({'params': p}, video, visible, pred)
    labels = gather_target(pixel_target(video, config.tubelet_size, config.patch_size), pred)
    return reconstruction_loss(out, labels)

  step = jax.jit(jax.value_and_grad(loss_fn))
  return lambda: jax.block_until_ready(step(params)), params


def bench_attention(model: str, batch: int, steps: int, impls: list[str], dtype: str) -> dict[str, float]:
  results = {}
  for impl in impls:
    config = models.get_config(model, attention=impl, dtype=dtype)
    run, _ = _pretrain_step(config, batch)
    run()  # compile + warm-up
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      run()
      times.append(time.perf_counter() - t0)
    results[impl] = statistics.median(times)
    print(f'{model} batch={batch} dtype={dtype} attention={impl}: median {results[impl]:.3f} s/step '
          f'(fwd+bwd, {steps} steps: {", ".join(f"{t:.3f}" for t in times)})', flush=True)
  return results


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m vmae_jax.bench')
  sub = parser.add_subparsers(dest='command', required=True)
  att = sub.add_parser('attention', help='time each attention implementation on a pretraining step')
  att.add_argument('--model', default='pretrain_videomae_small_patch16_224')
  att.add_argument('--batch', type=int, default=2)
  att.add_argument('--steps', type=int, default=5)
  att.add_argument('--dtype', default='float32')
  att.add_argument('--impls', default='einsum,xla', help='comma-separated: einsum, xla, cudnn')
  args = parser.parse_args(argv)
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}')
  bench_attention(args.model, args.batch, args.steps, args.impls.split(','), args.dtype)
  return 0


if __name__ == '__main__':
  sys.exit(main())
