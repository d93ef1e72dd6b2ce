"""Benchmarks (figures go to BENCHMARKS.md, never into tests).

    python -m vmae_jax.bench attention --model=pretrain_videomae_small_patch16_224 --batch=2 --steps=5
    python -m vmae_jax.bench pipeline [--videos=DIR] [--workers=N] [--num_sample=K] [--json]

`attention`: median seconds per forward+backward of the V1 pretraining loss (tube mask 0.9, 16×224², decoder over
every masked token) for each attention implementation, to back the `attention='auto'` choice per backend.

`pipeline`: end-to-end clips/s from file to a device-ready pretraining example (16×4 sampling, multi-scale crop,
resize to 224, tube + running-cell masks) for (a) this pipeline on the original files, (b) the same videos packed
by the TFDS builder (re-encoded with a short keyframe interval, and as JPEG frames), (c) the official loading path
re-created on the original files (decord `get_batch`, per-frame PIL multi-scale crop and resize, to-tensor,
normalise). See vmae_jax/bench_pipeline.py.
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
  pipe = sub.add_parser('pipeline', help='host pipeline clips/s vs the official decord + PIL path')
  pipe.add_argument('--videos', default='', help='folder of videos (default: generate realistic ones)')
  pipe.add_argument('--workers', type=int, default=0, help='worker processes for every path (0 = in-process)')
  pipe.add_argument('--num_sample', type=int, default=1, help='augmented clips per decoded video (all paths)')
  pipe.add_argument('--num_videos', type=int, default=24, help='videos to generate when --videos is not given')
  pipe.add_argument('--clips', type=int, default=96, help='clips timed per path and run, after warm-up')
  pipe.add_argument('--repeats', type=int, default=2, help='timed runs per path (interleaved; best kept)')
  pipe.add_argument('--workdir', default='', help='where generated/packed data go (default: a temp dir)')
  pipe.add_argument('--json', action='store_true', help='end with one JSON line of the headline figures')
  args = parser.parse_args(argv)
  if args.command == 'pipeline':
    from vmae_jax import bench_pipeline
    bench_pipeline.run(args)
    return 0
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}')
  bench_attention(args.model, args.batch, args.steps, args.impls.split(','), args.dtype)
  return 0


if __name__ == '__main__':
  sys.exit(main())
