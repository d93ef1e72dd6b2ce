"""Convert official VideoMAE V1/V2 `.pth` files and HF checkpoints into vmae_jax orbax checkpoints.

    python -m vmae_jax.convert --src=vit_g_hybrid_pt_1200e.pth --dst=ckpt/vit_g_pt \
        --model=pretrain_videomae_giant_patch14_224 [field=value ...]

Sources read:
  * official `.pth` (V1 and V2, pretrain and fine-tune): weights under `model` or `module` (or the raw dict), with
    prefixes `module.`, `_orig_mod.`, `backbone.` and (fine-tune layouts) `encoder.` removed. Loaded with
    `torch.load(weights_only=True)` only; `argparse.Namespace` (the `args` entry of training checkpoints) is the
    one extra type allowed, any other pickled object is refused.
  * HF transformers VideoMAE directories (config.json + model.safetensors) or bare `.safetensors` files, with
    either q/v-bias spelling (`query.bias`/`value.bias` or the legacy `q_bias`/`v_bias`).
  * the encoder-only VideoMAE V2 safetensors OpenGVLab publishes on the HF hub (`model.`-prefixed official keys,
    config.json with a `model_config` block).
  * CLIP image encoders: OpenAI state dicts (`visual.*`, fused `in_proj_weight`) and HF `CLIPVisionModel` /
    `CLIPModel` directories or safetensors (clip_import.py), giving a `clip` checkpoint.

What the shapes tell (widths, depth, patch, tubelet, MLP ratio, q/v biases, decoder, classes, pooling) is
inferred; what they cannot tell (attention head counts) comes from `model` (a registered name), the HF config, or
`overrides`, and a missing one is refused. A missing, unexpected or mis-shaped key is an error naming the key.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import numpy as np

from vmae_jax.models import registry
from vmae_jax.models.config import ConfigError, ModelConfig
from vmae_jax.models.vit import sinusoid_table
from vmae_jax.weights import clip_import
from vmae_jax.weights.official_layout import LayoutError, params_from_official


class ConvertError(ValueError):
  """The source cannot be converted; the message says which file, key or field and why."""


# ---------------------------------------------------------------------------------------------------------------
# Reading sources


def _load_pth(path: str) -> dict:
  try:
    import torch
  except ImportError as e:  # pragma: no cover - torch is a test extra
    raise ConvertError(f'{path}: reading .pth files needs torch (CPU build: pip install torch --index-url '
                       f'https://download.pytorch.org/whl/cpu)') from e
  import argparse as _argparse
  try:
    with torch.serialization.safe_globals([_argparse.Namespace]):
      obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # torch raises UnpicklingError / RuntimeError for disallowed globals
    raise ConvertError(f'{path}: refused to load: it is not a plain weights file that torch.load(weights_only=True) '
                       f'accepts ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})') from e
  if not isinstance(obj, dict):
    raise ConvertError(f'{path}: expected a dict of tensors, got {type(obj).__name__}')
  for key in ('model', 'module', 'state_dict'):
    if key in obj and isinstance(obj[key], dict):
      obj = obj[key]
      break
  out = {}
  for k, v in obj.items():
    if isinstance(v, torch.Tensor):
      out[k] = v.detach().to(torch.float32).numpy()
  if not out:
    raise ConvertError(f'{path}: no tensors found under "model", "module" or at the top level')
  return out


def _load_safetensors(path: str) -> dict:
  from safetensors.numpy import load_file
  try:
    return load_file(path)
  except Exception as e:
    raise ConvertError(f'{path}: not a readable safetensors file ({e})') from e


def read_source(src: str) -> tuple[dict[str, np.ndarray], dict | None]:
  """(raw state dict as numpy, the config.json beside it if any)."""
  src = os.fspath(src)
  hf_config = None
  if os.path.isdir(src):
    cfg_path = os.path.join(src, 'config.json')
    if os.path.exists(cfg_path):
      with open(cfg_path) as f:
        hf_config = json.load(f)
    for name in ('model.safetensors', 'pytorch_model.bin'):
      if os.path.exists(os.path.join(src, name)):
        weights = os.path.join(src, name)
        break
    else:
      raise ConvertError(f'{src}: directory has neither model.safetensors nor pytorch_model.bin')
  elif os.path.isfile(src):
    weights = src
    cfg_path = os.path.join(os.path.dirname(os.path.abspath(src)), 'config.json')
    if src.endswith('.safetensors') and os.path.exists(cfg_path):
      with open(cfg_path) as f:
        hf_config = json.load(f)
  else:
    raise ConvertError(f'{src}: no such file or directory')
  sd = _load_safetensors(weights) if weights.endswith('.safetensors') else _load_pth(weights)
  return {k: np.asarray(v, dtype=np.float32) for k, v in sd.items()}, hf_config


# ---------------------------------------------------------------------------------------------------------------
# Key normalisation to the official layout

_WRAPPER_PREFIXES = ('module.', '_orig_mod.', 'backbone.')

# HF module names inside one layer → official names.
HF_LAYER_KEYS = [
    ('attention.output.dense.', 'attn.proj.'),
    ('intermediate.dense.', 'mlp.fc1.'),
    ('output.dense.', 'mlp.fc2.'),
    ('layernorm_before.', 'norm1.'),
    ('layernorm_after.', 'norm2.'),
]


def _strip_wrappers(sd: dict) -> dict:
  out = {}
  for k, v in sd.items():
    changed = True
    while changed:
      changed = False
      for p in _WRAPPER_PREFIXES:
        if k.startswith(p):
          k, changed = k[len(p):], True
    out[k] = v
  return out


def is_hf_layout(sd: dict) -> bool:
  return any('embeddings.patch_embeddings.projection' in k for k in sd)


def hf_to_official(sd: dict, source: str) -> dict:
  """HF transformers VideoMAE keys → official keys (q/k/v fused into qkv; legacy q_bias/v_bias accepted)."""
  sd = {(k[len('videomae.'):] if k.startswith('videomae.') else k): v for k, v in sd.items()}
  pretrain = any(k == 'mask_token' or k.startswith('decoder.') for k in sd)
  enc = 'encoder.' if pretrain else ''
  out, qkv = {}, {}
  layer_re = re.compile(r'^(encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$')
  for k, v in sd.items():
    m = layer_re.match(k)
    if m:
      prefix = (enc + 'blocks.') if m.group(1) == 'encoder.layer' else 'decoder.blocks.'
      i, rest = m.group(2), m.group(3)
      base = f'{prefix}{i}.'
      att = 'attention.attention.'
      if rest in (att + 'query.weight', att + 'key.weight', att + 'value.weight'):
        qkv.setdefault(base, {})[rest[len(att):].split('.')[0]] = v
      elif rest in (att + 'query.bias', att + 'q_bias'):
        out[base + 'attn.q_bias'] = v
      elif rest in (att + 'value.bias', att + 'v_bias'):
        out[base + 'attn.v_bias'] = v
      elif rest == att + 'key.bias':
        if np.any(v != 0):
          raise ConvertError(f'{source}: key {k!r} is a non-zero key bias; VideoMAE fixes the k bias at zero')
      else:
        for hf, official in HF_LAYER_KEYS:
          if rest.startswith(hf):
            out[base + official + rest[len(hf):]] = v
            break
        else:
          raise ConvertError(f'{source}: unexpected key {k!r} in an HF VideoMAE checkpoint')
    elif k.startswith('embeddings.patch_embeddings.projection.'):
      out[enc + 'patch_embed.proj.' + k.rsplit('.', 1)[1]] = v
    elif k.startswith('layernorm.'):
      out[enc + 'norm.' + k.rsplit('.', 1)[1]] = v
    elif k.startswith('classifier.'):
      out['head.' + k.rsplit('.', 1)[1]] = v
    elif k in ('mask_token', 'encoder_to_decoder.weight') or k.startswith(('decoder.norm.', 'decoder.head.',
                                                                            'fc_norm.')):
      out[k] = v
    elif k.endswith('position_ids') or k.endswith('position_embeddings'):
      continue  # fixed sinusoid tables are regenerated, never loaded
    else:
      raise ConvertError(f'{source}: unexpected key {k!r} in an HF VideoMAE checkpoint')
  for base, parts in qkv.items():
    missing = [n for n in ('query', 'key', 'value') if n not in parts]
    if missing:
      raise ConvertError(f'{source}: missing key for {base} attention {missing[0]} weight')
    out[base + 'attn.qkv.weight'] = np.concatenate([parts['query'], parts['key'], parts['value']], axis=0)
  if not pretrain and 'fc_norm.weight' not in out and 'norm.weight' not in out and 'head.weight' not in out:
    # A bare HF VideoMAEModel with mean pooling stops at the last block. The mean-pool classifier's fc_norm is
    # created fresh (weight 1, bias 0) exactly as the official fine-tuning code creates it; encode() is unaffected.
    dim = out['patch_embed.proj.weight'].shape[0]
    out['fc_norm.weight'] = np.ones(dim, np.float32)
    out['fc_norm.bias'] = np.zeros(dim, np.float32)
    logging.info('%s: HF VideoMAEModel without pooling norm; fc_norm initialised fresh (1, 0)', source)
  return out


def to_official_keys(sd: dict, source: str) -> dict:
  """Any supported layout → official key names (pretrain keys keep `encoder.`; fine-tune keys have none)."""
  sd = _strip_wrappers(sd)
  if is_hf_layout(sd):
    sd = hf_to_official(sd, source)
  elif all(k.startswith('model.') for k in sd):
    sd = {k[len('model.'):]: v for k, v in sd.items()}  # OpenGVLab hub wrapper: VideoMAEv2.model = ViT
  pretrain = any(k == 'mask_token' or k.startswith(('decoder.', 'encoder_to_decoder.')) for k in sd)
  if not pretrain:
    sd = {(k[len('encoder.'):] if k.startswith('encoder.') else k): v for k, v in sd.items()}
  return sd


def _drop_fixed_tables(sd: dict, source: str) -> dict:
  """A saved sinusoid `pos_embed` is dropped if it is the fixed table; a learned one is refused."""
  out = {}
  for k, v in sd.items():
    if k.split('.')[-1] == 'pos_embed':
      table = sinusoid_table(v.shape[-2], v.shape[-1]) if v.ndim >= 2 else None
      if table is None or np.abs(v.reshape(table.shape) - table).max() > 1e-4:
        raise ConvertError(f'{source}: key {k!r} is a learned position embedding; the released models use the '
                           f'fixed sinusoid table and vmae_jax supports only that')
      continue
    out[k] = v
  return out


# ---------------------------------------------------------------------------------------------------------------
# Config inference

_ARCH_FIELDS = ('embed_dim', 'depth', 'patch_size', 'tubelet_size', 'in_chans', 'qkv_bias', 'decoder_embed_dim',
                'decoder_depth')


def _count_blocks(sd: dict, prefix: str) -> int:
  idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r'blocks\.(\d+)\.', k)] if m}
  return max(idx) + 1 if idx else 0


def infer_from_shapes(sd: dict, source: str) -> dict[str, Any]:
  pretrain = any(k == 'mask_token' or k.startswith(('decoder.', 'encoder_to_decoder.')) for k in sd)
  pre = 'encoder.' if pretrain else ''
  key = pre + 'patch_embed.proj.weight'
  if key not in sd:
    raise LayoutError(f'{source}: missing key {key!r} (cannot read the model size without it)')
  d, c, t, p, p2 = sd[key].shape
  if p != p2:
    raise ConvertError(f'{source}: key {key!r} has a non-square patch {p}x{p2}')
  depth = _count_blocks(sd, pre)
  fc1 = pre + 'blocks.0.mlp.fc1.weight'
  if depth == 0 or fc1 not in sd:
    raise LayoutError(f'{source}: missing key {fc1!r}')
  hidden = sd[fc1].shape[0]
  out = dict(kind='pretrain' if pretrain else 'classifier', embed_dim=int(d), in_chans=int(c), tubelet_size=int(t),
             patch_size=int(p), depth=depth, mlp_ratio=_ratio(hidden, d),
             qkv_bias=(pre + 'blocks.0.attn.q_bias') in sd)
  if pretrain:
    if 'mask_token' not in sd:
      raise LayoutError(f'{source}: missing key \'mask_token\'')
    dd = int(sd['mask_token'].shape[-1])
    out.update(decoder_embed_dim=dd, decoder_depth=_count_blocks(sd, 'decoder.'))
    dec_fc1 = 'decoder.blocks.0.mlp.fc1.weight'
    if dec_fc1 in sd and sd[dec_fc1].shape[0] != int(dd * out['mlp_ratio']):
      raise LayoutError(f'{source}: key {dec_fc1!r} has hidden size {sd[dec_fc1].shape[0]}, but the decoder uses the '
                        f'encoder mlp_ratio ({hidden}/{d}) → {int(dd * out["mlp_ratio"])}')
    if pre + 'norm.weight' not in sd:
      raise LayoutError(f'{source}: missing key {pre + "norm.weight"!r}: the VideoMAE pretraining encoder always '
                        f'ends with a LayerNorm (an HF VideoMAEForPreTraining saved with use_mean_pooling=True has '
                        f'none and cannot be represented)')
  else:
    out['use_mean_pooling'] = 'fc_norm.weight' in sd or 'norm.weight' not in sd
    out['num_classes'] = int(sd['head.weight'].shape[0]) if 'head.weight' in sd else 0
  return out


def _ratio(hidden: int, dim: int) -> float:
  ratio = hidden / dim
  if int(dim * ratio) != hidden:
    ratio = (hidden + 0.5) / dim
  return ratio


def _hf_overrides(hf: dict | None, source: str) -> dict[str, Any]:
  """Fields the weights cannot tell, from an HF config.json (transformers VideoMAE or OpenGVLab's model_config)."""
  if not hf:
    return {}
  if 'model_config' in hf and isinstance(hf['model_config'], dict):  # OpenGVLab VideoMAEv2 hub config
    mc = hf['model_config']
    names = {'img_size': 'img_size', 'num_frames': 'num_frames', 'num_heads': 'num_heads',
             'use_mean_pooling': 'use_mean_pooling', 'tubelet_size': 'tubelet_size'}
    return {ours: mc[theirs] for theirs, ours in names.items() if theirs in mc}
  names = {'num_attention_heads': 'num_heads', 'decoder_num_attention_heads': 'decoder_num_heads',
           'image_size': 'img_size', 'num_frames': 'num_frames', 'use_mean_pooling': 'use_mean_pooling'}
  out = {ours: hf[theirs] for theirs, ours in names.items() if theirs in hf}
  if isinstance(out.get('img_size'), (list, tuple)):
    h, w = out['img_size']
    if h != w:
      raise ConvertError(f'{source}: config.json image_size {h}x{w} is not square; vmae_jax configs use one img_size')
    out['img_size'] = h
  return out


def _matching_names(shape_cfg: dict) -> list[str]:
  names = []
  for name in [*registry.CLASSIFIERS, *registry.PRETRAIN]:
    reg = registry.get_config(name)
    if reg.kind == shape_cfg['kind'] and all(getattr(reg, f) == shape_cfg[f] for f in ('embed_dim', 'depth',
                                                                                     'patch_size')):
      names.append(name)
  return names


def infer_config(sd: dict, model: str | None = None, overrides: dict | None = None, hf_config: dict | None = None,
                 source: str = 'checkpoint') -> ModelConfig:
  overrides = dict(overrides or {})
  version = overrides.pop('version', None)
  shapes = infer_from_shapes(sd, source)
  if model is not None:
    if model not in registry.CLASSIFIERS and model not in registry.PRETRAIN:
      raise ConvertError(f'{source}: holds VideoMAE weights; model must be one of '
                         f'{[*registry.CLASSIFIERS, *registry.PRETRAIN]}, got {model!r}')
    base_kind = 'classifier' if model in registry.CLASSIFIERS else 'pretrain'
    if base_kind != shapes['kind']:
      raise ConvertError(f'{source}: holds a {shapes["kind"]} checkpoint but model {model!r} is a {base_kind} model'
                         + ('; initialising a classifier from pretrained weights is part of fine-tuning'
                            if shapes['kind'] == 'pretrain' else ''))
    versions = [None] if model in registry.CLASSIFIERS else ([version] if version else ['v1', 'v2'])
    configs = []
    for v in versions:
      try:
        configs.append(registry.get_config(model, version=v))
      except ConfigError:
        continue  # e.g. giant has no V1 decoder
    if not configs:
      raise ConvertError(f'model {model!r} has no decoder version {version!r}')
    # Pick the decoder version whose sizes the weights carry (large/huge differ between V1 and V2).
    matching = [c for c in configs if all(getattr(c, f) == shapes[f] for f in _ARCH_FIELDS if f in shapes)]
    base = matching[0] if matching else configs[0]
    for f in _ARCH_FIELDS:
      if f in shapes and f not in overrides and getattr(base, f) != shapes[f]:
        raise ConvertError(f'{source}: the weights say {f}={shapes[f]} but model {model!r} has {f}='
                           f'{getattr(base, f)}')
    fields = base.to_dict()
  else:
    fields = ModelConfig().to_dict()
    fields['name'] = ''
  from_hf = _hf_overrides(hf_config, source)
  fields.update(shapes)
  fields.update(from_hf)
  needed = ['num_heads'] + (['decoder_num_heads'] if shapes['kind'] == 'pretrain' else [])
  for f in needed:
    if model is None and f not in overrides and f not in from_hf:
      hint = _matching_names(shapes)
      raise ConvertError(f'{source}: {f} cannot be read from the weights; pass model=NAME'
                         + (f' (the shapes match {hint})' if hint else '') + f' or {f}=...')
  fields.update(overrides)
  try:
    return ModelConfig.from_dict(fields)
  except (ConfigError, TypeError) as e:
    raise ConvertError(f'{source}: {e}') from e


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def load_official(src: str, model: str | None = None, **overrides) -> tuple[dict, ModelConfig]:
  """(params, config) from any supported source, without writing anything."""
  raw, hf_config = read_source(src)
  if clip_import.is_clip(raw):   # OpenAI / HF CLIP image encoders (clip_import.py)
    return clip_import.load_clip(raw, hf_config, src, model, overrides)
  sd = _drop_fixed_tables(to_official_keys(raw, src), src)
  config = infer_config(sd, model, overrides, hf_config, source=src)
  return params_from_official(sd, config, source=src), config
