"""`python -m vmae_jax.bench adapters`: an adapter with its backbone frozen vs the same model fully fine-tuned.

    python -m vmae_jax.bench adapters --model=evl_b16 --batch=2 --frames=8 --steps=3 [--dtype=bfloat16]

Each mode runs the trainer's own step (vmae_jax/train/step.py via bench/step.py: the classification task's loss,
its gradient, the optimizer of `optim.from_config` with the model's frozen mask, the update, state donated),
compiled once. Reported per mode: median seconds per step, XLA's compiled memory analysis of the step
(temporaries = activations kept for the backward pass and workspace; arguments = parameters + optimizer state +
batch), and the optimizer-state bytes. `frozen`: model.freeze_backbone (stop_gradient on the backbone features + no
optimizer state for it); `full`: the same network, every parameter trained. Figures go to BENCHMARKS.md.
"""
from __future__ import annotations

import statistics

import jax
import numpy as np

from vmae_jax import models
from vmae_jax.bench import step as bench_step


def _nbytes(tree) -> int:
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def bench_mode(model: str, frozen: bool, batch: int, frames: int, steps: int, dtype: str, classes: int) -> dict:
  config = models.get_config(model, num_classes=classes, num_frames=frames, dtype=dtype, freeze_backbone=frozen)
  ours = bench_step.build_jax_step(config, 'finetune', bench_step.host_batch(config, 'finetune', batch))
  mem = ours.compiled.memory_analysis()
  times = [ours.run() for _ in range(steps + 1)][1:]   # the first call is a warm-up
  result = {'mode': 'frozen' if frozen else 'full', 'step_s': statistics.median(times), 'times': times,
            'compile_s': ours.compile_s, 'temp_bytes': getattr(mem, 'temp_size_in_bytes', -1),
            'argument_bytes': getattr(mem, 'argument_size_in_bytes', -1),
            'opt_state_bytes': _nbytes(ours.state['opt_state']), 'param_bytes': _nbytes(ours.state['params']),
            'loss': ours.losses[-1]}
  print(f"{model} {result['mode']:>6}: {result['step_s']:.3f} s/step (median of {steps}: "
        f"{', '.join(f'{t:.3f}' for t in times)}), compile {ours.compile_s:.1f} s, temporaries "
        f"{result['temp_bytes'] / 2**30:.2f} GiB, arguments {result['argument_bytes'] / 2**30:.2f} GiB, optimizer "
        f"state {result['opt_state_bytes'] / 2**20:.1f} MiB, params {result['param_bytes'] / 2**20:.1f} MiB",
        flush=True)
  return result


def run(args) -> dict:
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}; batch {args.batch} × '
        f'{args.frames} frames, dtype {args.dtype}', flush=True)
  frozen = bench_mode(args.model, True, args.batch, args.frames, args.steps, args.dtype, args.classes)
  full = bench_mode(args.model, False, args.batch, args.frames, args.steps, args.dtype, args.classes)
  print(f"full / frozen: step time ×{full['step_s'] / frozen['step_s']:.2f}, temporaries "
        f"×{full['temp_bytes'] / max(frozen['temp_bytes'], 1):.2f}, optimizer state "
        f"×{full['opt_state_bytes'] / max(frozen['opt_state_bytes'], 1):.2f}")
  return {'frozen': frozen, 'full': full}
