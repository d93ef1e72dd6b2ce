"""`python -m vmae_jax.convert`: weights into vmae_jax (official `.pth`, HF VideoMAE, OpenGVLab hub safetensors, CLIP)
and back out (HF transformers directories, official `.pth`).

    python -m vmae_jax.convert --src=vit_g_hybrid_pt_1200e.pth --dst=ckpt/vit_g_pt \
        --model=pretrain_videomae_giant_patch14_224 [field=value ...]
    python -m vmae_jax.convert --src=CKPT_OR_WORKDIR --dst=hf_dir --to=hf
    python -m vmae_jax.convert --src=CKPT_OR_WORKDIR --dst=model.pth --to=official

Reading and key checks: vmae_jax/weights/videomae_import.py (VideoMAE) and clip_import.py (CLIP); writing:
vmae_jax/weights/export.py; the orbax checkpoint: vmae_jax/weights/checkpoint.py.
"""
from __future__ import annotations

import ast
import os
import sys

from vmae_jax.models import registry
from vmae_jax.models.config import ModelConfig
from vmae_jax.train.errors import ArgumentParser, UsageError, cli, did_you_mean
from vmae_jax.weights import checkpoint, export
from vmae_jax.weights.videomae_import import load_official


def convert(src: str, dst: str, model: str | None = None, to: str = 'orbax', **overrides) -> ModelConfig:
  """Convert `src` (official .pth, HF directory or safetensors) to an orbax checkpoint at `dst`; returns its config.

  `to='hf'` / `to='official'` go the other way: `src` (a vmae_jax checkpoint or training workdir, or any source
  above) is written as an HF transformers directory / an official `.pth` (vmae_jax.weights.export).
  """
  if to != 'orbax':
    return export.export(src, dst, to, model=model, **overrides)[0]
  params, config = load_official(src, model, **overrides)
  checkpoint.save(dst, params, config)
  return config


def _parse_value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


@cli('python -m vmae_jax.convert')
def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog='python -m vmae_jax.convert', description=__doc__.split('\n\n')[0])
  parser.add_argument('--src', required=True, help='official .pth, HF directory or .safetensors file')
  parser.add_argument('--dst', required=True,
                      help='output: orbax checkpoint directory, HF directory (--to=hf) or .pth file (--to=official)')
  parser.add_argument('--to', default='orbax', choices=('orbax', 'hf', 'official'),
                      help='orbax: into vmae_jax; hf / official: a vmae_jax checkpoint (or any source) out to an HF '
                           'transformers directory / an official .pth file')
  parser.add_argument('--model', default=None, help=f'registered name, one of {registry.model_names()}')
  parser.add_argument('overrides', nargs='*', metavar='field=value', help='ModelConfig fields, e.g. num_heads=12')
  args = parser.parse_args(argv)
  overrides = {}
  for item in args.overrides:
    if '=' not in item:
      parser.error(f'override {item!r} is not field=value')
    k, v = item.split('=', 1)
    overrides[k.strip()] = _parse_value(v.strip())
  if not os.path.exists(args.src):
    raise UsageError(f'--src={args.src}: no such file or directory')
  if args.model is not None and args.model not in registry.model_names():
    close = did_you_mean(args.model, registry.model_names())
    raise UsageError(f'--model={args.model!r} is not a registered model' + (
        f' (did you mean {" or ".join(close)}?)' if close else f'; registered: {", ".join(registry.model_names())}'))
  # ConvertError, LayoutError, ConfigError, ClipLayoutError, CheckpointError, ExportError: user errors (errors.py)
  config = convert(args.src, args.dst, args.model, to=args.to, **overrides)
  print(f'wrote {args.dst}: {config.name or config.kind} ({config.kind}, embed_dim={config.embed_dim}, '
        f'depth={config.depth}, num_heads={config.num_heads}, num_classes={config.num_classes})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
