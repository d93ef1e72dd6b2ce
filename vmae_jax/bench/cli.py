"""Benchmarks (figures go to BENCHMARKS.md, never into tests).

    python -m vmae_jax.bench attention --model=pretrain_videomae_small_patch16_224 --batch=2 --steps=5
    python -m vmae_jax.bench adapters --model=evl_b16 --batch=2 --frames=8 --steps=3 [--dtype=D]
    python -m vmae_jax.bench pipeline [--videos=DIR] [--workers=N] [--num_sample=K] [--json]
    python -m vmae_jax.bench step --model=NAME --mode={v1,v2,finetune} --batch=B [--remat=POLICY]
        [--attention=IMPL] [--dtype=D] [--compare-torch] [--profile=DIR] [--json] [field=value ...]

`attention`: median seconds per training step (the trainer's own: V1 pretraining loss with tube mask 0.9, 16×224²,
decoder over every masked token, backward, AdamW) for each attention implementation, to back the
`attention='auto'` choice per backend.

`adapters`: an adapter (UniFormerV2, EVL) with its backbone frozen vs fully fine-tuned: step time, memory,
optimizer state. See vmae_jax/bench/adapters.py.

`pipeline`: end-to-end clips/s from file to a device-ready pretraining example (16×4 sampling, multi-scale crop,
resize to 224, tube + running-cell masks) for (a) this pipeline on the original files, (b) the same videos packed
by the TFDS builder (re-encoded with a short keyframe interval, and as JPEG frames), (c) the official loading path
re-created on the original files (decord `get_batch`, per-frame PIL multi-scale crop and resize, to-tensor,
normalise). See vmae_jax/bench/pipeline.py.

`step`: one real training step (forward + loss + backward + AdamW, state donated): compile time, median step time,
clips/s, model FLOPs per clip (vmae_jax/bench/flops.py), TFLOP/s and MFU against a measured matmul peak and, on known
GPUs, the bf16 datasheet peak, peak memory; `--compare-torch` times HF transformers VideoMAE on the same device,
shapes and masks, interleaved step by step with ours, and prints the clips/s ratio. See vmae_jax/bench/step.py.
Trailing `field=value` arguments override ModelConfig fields (e.g. depth=2 for a quick run).
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import sys

from vmae_jax.train.errors import ArgumentParser, UsageError, at_least, cli

# jax and the models are imported where they are used: a bad argument fails before they load


def bench_attention(model: str, batch: int, steps: int, impls: list[str], dtype: str) -> dict[str, float]:
  from vmae_jax import models
  from vmae_jax.bench import step as bs
  results = {}
  for impl in impls:
    config = models.get_config(model, attention=impl, dtype=dtype)
    ours = bs.build_jax_step(config, 'v1', bs.host_batch(config, 'v1', batch))
    ours.run()  # warm-up
    times = [ours.run() for _ in range(steps)]
    results[impl] = statistics.median(times)
    print(f'{model} batch={batch} dtype={dtype} attention={impl}: median {results[impl]:.3f} s/step '
          f'(train step, {steps} steps: {", ".join(f"{t:.3f}" for t in times)})', flush=True)
  return results


def bench_step(args) -> dict:
  """Time the training step of `args.mode` (and HF's with --compare-torch); print a summary, return every figure."""
  import jax

  from vmae_jax.bench import flops
  from vmae_jax.bench import step as bs
  from vmae_jax.models.attention import resolve as resolve_attention
  device = jax.devices()[0]
  on_cpu = device.platform == 'cpu'
  dtype = args.dtype or ('float32' if on_cpu else 'bfloat16')
  steps = args.steps if args.steps > 0 else (3 if on_cpu else 10)
  config = bs.model_config(args.model, args.mode, frames=args.frames, img_size=args.img_size, dtype=dtype,
                           attention=args.attention, remat=args.remat, num_classes=args.num_classes,
                           overrides=bs.parse_overrides(args.overrides))
  batch = bs.host_batch(config, args.mode, args.batch, args.seed)
  n_enc, n_pred = bs.token_counts(config, batch)
  flop = flops.summary(config, n_enc, n_pred)
  ours = bs.build_jax_step(config, args.mode, batch, args.seed)
  ref = None
  if args.compare_torch:
    import torch

    from vmae_jax.bench import torch_ref
    torch_device = 'cuda' if not on_cpu and torch.cuda.is_available() else 'cpu'
    ref = torch_ref.TorchStep(config, args.mode, batch, device=torch_device,
                                bf16=dtype == 'bfloat16' and torch_device == 'cuda', lr=ours.optim.base_lr,
                                betas=(ours.optim.b1, ours.optim.b2), weight_decay=ours.optim.weight_decay,
                                seed=args.seed)
  print(f'{config.name} mode={args.mode} batch={args.batch} {config.num_frames}x{config.img_size}^2 dtype={dtype} '
        f'attention={resolve_attention(config.attention, dtype)} remat={config.remat_policy} on {device.device_kind}'
        f'; encoder tokens {n_enc or config.num_tokens}, predicted {n_pred}; compile {ours.compile_s:.2f} s',
        flush=True)

  load_before = os.getloadavg()[0]
  for _ in range(args.warmup):          # both frameworks warm up before either is timed
    ours.run()
    if ref is not None:
      ref.run()
  ours_times, ref_times = [], []
  for _ in range(steps):                # interleaved: load from other processes hits both alike
    ours_times.append(ours.run())
    if ref is not None:
      ref_times.append(ref.run())
  if args.profile:
    with jax.profiler.trace(args.profile):
      for _ in range(min(3, steps)):
        ours.run()

  step_s = statistics.median(ours_times)
  clips_per_s = args.batch / step_s
  tflops = flop['train_gflop_per_clip'] * clips_per_s / 1e3
  memory = bs.memory_figure(ours.compiled, device)   # before the peak matmul allocates its own operands
  measured = bs.measured_matmul_peak(dtype, device, args.peak_matmul_size or None)
  sheet = (args.peak_tflops, 'given by --peak_tflops') if args.peak_tflops > 0 else bs.datasheet_peak(device)
  result = {
      'command': 'python -m vmae_jax.bench step ' + ' '.join(args.argv), 'date': datetime.date.today().isoformat(),
      'device': device.device_kind, 'platform': device.platform, 'jax': jax.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'cpu_count': os.cpu_count(),
      'load_avg_1min': [load_before, os.getloadavg()[0]],   # before and after timing: other processes' share
      'model': config.name, 'mode': args.mode, 'batch': args.batch, 'frames': config.num_frames,
      'img_size': config.img_size, 'dtype': dtype, 'attention': resolve_attention(config.attention, dtype),
      'remat': config.remat_policy, 'encoder_tokens': n_enc or config.num_tokens, 'pred_tokens': n_pred,
      'compile_s': ours.compile_s, 'step_s': step_s, 'step_min_s': min(ours_times), 'step_times_s': ours_times,
      'clips_per_s': clips_per_s,
      **flop, 'tflops': tflops,
      'peak_measured_tflops': measured['tflops'], 'peak_measured_matmul': f'{measured["size"]}^3 {dtype}',
      'mfu_measured': tflops / measured['tflops'],
      'peak_stated_tflops': sheet[0] if sheet else None, 'peak_stated': sheet[1] if sheet else None,
      'mfu_stated': tflops / sheet[0] if sheet else None,
      'memory_bytes': memory['bytes'], 'memory_source': memory['source'],
      'loss_first': ours.losses[0], 'loss_last': ours.losses[-1],
  }
  if args.profile:
    result['profile_dir'] = args.profile
  print(f'ours: compile {ours.compile_s:.2f} s; step median {step_s:.4f} s of {steps} '
        f'({", ".join(f"{t:.3f}" for t in ours_times)}); {clips_per_s:.3f} clips/s')
  print(f'model FLOPs: {flop["train_gflop_per_clip"]:.3f} GFLOP/clip per training step (3 x forward '
        f'{flop["forward_gflop_per_clip"]:.3f}); achieved {tflops:.4f} TFLOP/s')
  print(f'MFU {100 * result["mfu_measured"]:.1f} % of the measured {result["peak_measured_matmul"]} matmul peak '
        f'{measured["tflops"]:.4f} TFLOP/s' + (f'; {100 * result["mfu_stated"]:.1f} % of the {sheet[1]} peak '
                                               f'{sheet[0]:.0f} TFLOP/s' if sheet else
                                               '; no datasheet peak for this device'))
  print(f'memory {memory["bytes"] / 2**20:.1f} MiB ({memory["source"]})')
  if ref is not None:
    import torch
    ref_step = statistics.median(ref_times)
    ref_clips = args.batch / ref_step
    result['torch'] = {
        'impl': 'HF transformers VideoMAE, sdpa', 'device': str(ref.device), 'threads': torch.get_num_threads(),
        'autocast_bf16': ref.bf16, 'step_s': ref_step, 'step_min_s': min(ref_times), 'step_times_s': ref_times,
        'clips_per_s': ref_clips,
        'tflops': flop['train_gflop_per_clip'] * ref_clips / 1e3,
        'mfu_measured': flop['train_gflop_per_clip'] * ref_clips / 1e3 / measured['tflops'],
        'memory_bytes': ref.peak_bytes or None, 'loss_first': ref.losses[0], 'loss_last': ref.losses[-1]}
    result['ratio_vs_torch'] = clips_per_s / ref_clips
    # fastest step of each: less sensitive to other processes on a shared machine than the median
    result['ratio_vs_torch_best_step'] = min(ref_times) / min(ours_times)
    print(f'HF torch ({ref.device}, {torch.get_num_threads()} threads, sdpa{", bf16 autocast" if ref.bf16 else ""}): '
          f'step median {ref_step:.4f} s ({", ".join(f"{t:.3f}" for t in ref_times)}); {ref_clips:.3f} clips/s')
    print(f'ours / HF clips/s: {result["ratio_vs_torch"]:.3f} (medians); {result["ratio_vs_torch_best_step"]:.3f} '
          f'(fastest step of each)')
  if args.json:
    print(json.dumps(result))
  return result


@cli('python -m vmae_jax.bench')
def main(argv=None) -> int:
  parser = ArgumentParser(prog='python -m vmae_jax.bench')
  sub = parser.add_subparsers(dest='command', required=True)
  att = sub.add_parser('attention', help='time each attention implementation on a pretraining step')
  att.add_argument('--model', default='pretrain_videomae_small_patch16_224')
  att.add_argument('--batch', type=at_least(1), default=2)
  att.add_argument('--steps', type=at_least(1), default=5)
  att.add_argument('--dtype', default='float32')
  att.add_argument('--impls', default='einsum,xla', help='comma-separated: einsum, xla, cudnn')
  pipe = sub.add_parser('pipeline', help='host pipeline clips/s vs the official decord + PIL path')
  pipe.add_argument('--videos', default='', help='folder of videos (default: generate realistic ones)')
  pipe.add_argument('--workers', type=at_least(0), default=0,
                    help='worker processes for every path (0 = in-process)')
  pipe.add_argument('--num_sample', type=at_least(1), default=1, help='augmented clips per decoded video (all paths)')
  pipe.add_argument('--num_videos', type=at_least(1), default=24, help='videos to generate when --videos is not given')
  pipe.add_argument('--clips', type=at_least(1), default=96, help='clips timed per path and run, after warm-up')
  pipe.add_argument('--repeats', type=at_least(1), default=2, help='timed runs per path (interleaved; best kept)')
  pipe.add_argument('--workdir', default='', help='where generated/packed data go (default: a temp dir)')
  pipe.add_argument('--json', action='store_true', help='end with one JSON line of the headline figures')
  st = sub.add_parser('step', help='time a training step (fwd + loss + bwd + AdamW); MFU, memory, HF ratio')
  st.add_argument('--model', default='pretrain_videomae_small_patch16_224',
                  help='registered name; finetune maps pretrain_videomae_X to the classifier of the same size')
  st.add_argument('--mode', default='v1', choices=('v1', 'v2', 'finetune'))
  st.add_argument('--batch', type=at_least(1), default=2)
  st.add_argument('--frames', type=at_least(1), default=16)
  st.add_argument('--img_size', type=at_least(1), default=224)
  st.add_argument('--steps', type=at_least(0), default=0, help='timed steps (default 10 on accelerators, 3 on CPU)')
  st.add_argument('--warmup', type=at_least(0), default=2, help='untimed steps after compiling')
  st.add_argument('--dtype', default='', help='activation dtype (default bfloat16 on GPU, float32 on CPU)')
  st.add_argument('--remat', default='none', help="ModelConfig.remat_policy: 'none' or a jax.checkpoint_policies name")
  st.add_argument('--attention', default='auto', help='auto, einsum, xla or cudnn')
  st.add_argument('--num_classes', type=at_least(1), default=400, help='finetune head size')
  st.add_argument('--seed', type=at_least(0), default=0)
  st.add_argument('--peak_tflops', type=float, default=0.0,
                  help='stated peak TFLOP/s for MFU (default: the bf16 dense datasheet figure of a known GPU)')
  st.add_argument('--peak_matmul_size', type=at_least(0), default=0,
                  help='side of the square matmul timed for the measured peak (default 8192 on GPU, 2048 on CPU)')
  st.add_argument('--compare-torch', dest='compare_torch', action='store_true',
                  help='also time HF transformers VideoMAE (sdpa) on the same device, shapes and masks')
  st.add_argument('--profile', default='', help='write a jax.profiler trace of 3 extra steps to this folder')
  st.add_argument('--json', action='store_true', help='end with one JSON line of every figure')
  st.add_argument('overrides', nargs='*', metavar='field=value', help='ModelConfig overrides, e.g. depth=2')
  ad = sub.add_parser('adapters', help='adapter with a frozen backbone vs full fine-tuning: step time, memory')
  ad.add_argument('--model', default='evl_b16')
  ad.add_argument('--batch', type=at_least(1), default=2)
  ad.add_argument('--frames', type=at_least(1), default=8)
  ad.add_argument('--steps', type=at_least(1), default=3)
  ad.add_argument('--classes', type=at_least(1), default=400)
  ad.add_argument('--dtype', default='float32')
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parser.parse_args(argv)
  # A bad --model/--mode/--dtype/override is a ConfigError, a missing folder a UsageError: one line, exit code 2
  # (vmae_jax/train/errors.py).
  if args.command == 'step':
    if args.compare_torch:   # before JAX starts its backend: leave GPU memory to PyTorch instead of taking 75 %
      os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    args.argv = argv[1:]
    bench_step(args)
    return 0
  if args.command == 'pipeline':
    if args.videos and not os.path.isdir(args.videos):
      raise UsageError(f'--videos={args.videos}: no such folder')
    from vmae_jax.bench import pipeline
    pipeline.run(args)
    return 0
  if args.command == 'adapters':
    from vmae_jax.bench import adapters
    adapters.run(args)
    return 0
  import jax
  print(f'jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}')
  bench_attention(args.model, args.batch, args.steps, args.impls.split(','), args.dtype)
  return 0


if __name__ == '__main__':
  sys.exit(main())
