"""CLIP image-encoder weights → the vmae_jax `clip` parameter tree (docs/fidelity.md, "Checkpoint layouts").

Reads three layouts, all normalised to OpenAI's key names first:
  * OpenAI state dicts: the full model (`visual.*` beside the text tower, which is ignored) or the visual tower
    alone (UniFormerV2's `vit_b16.pth`), fused `attn.in_proj_weight` rows [q | k | v];
  * HF `CLIPVisionModel` (keys with or without `vision_model.`) and `CLIPModel` (`vision_model.*` beside the text
    tower), directories with config.json or bare `.safetensors`, q/k/v split.
`ln_post` and `proj` are read and dropped: the adapters use the tokens before them (UniFormerV2's extracted CLIP
files omit them too). The attention head count comes from `model`, config.json or `num_heads=`; failing those,
OpenAI's rule width / 64.

The way back (`python -m vmae_jax.convert --to=hf`, weights/export.py) runs the same key tables in reverse:
`openai_from_params` then `openai_to_hf`, so the two directions cannot drift apart.
"""
from __future__ import annotations

import logging
import re

import numpy as np

from vmae_jax.models import registry
from vmae_jax.models.config import ConfigError, ModelConfig


class ClipLayoutError(ValueError):
  """A CLIP state dict is missing a key, has an unexpected one, or a wrong shape; the message names it."""


_HF_LAYER = {
    'layer_norm1.': 'ln_1.', 'layer_norm2.': 'ln_2.', 'mlp.fc1.': 'mlp.c_fc.', 'mlp.fc2.': 'mlp.c_proj.',
    'self_attn.out_proj.': 'attn.out_proj.',
}
_HF_TOP = {
    'embeddings.class_embedding': 'class_embedding', 'embeddings.patch_embedding.weight': 'conv1.weight',
    'embeddings.position_embedding.weight': 'positional_embedding', 'pre_layrnorm.weight': 'ln_pre.weight',
    'pre_layrnorm.bias': 'ln_pre.bias', 'post_layernorm.weight': 'ln_post.weight',
    'post_layernorm.bias': 'ln_post.bias',
}
_DROPPED = ('ln_post.weight', 'ln_post.bias', 'proj')


def is_clip(sd: dict) -> bool:
  return any(k.endswith(('embeddings.class_embedding', 'pre_layrnorm.weight')) or k in ('class_embedding',
                                                                                        'visual.class_embedding')
             for k in sd)


def _strip(k: str) -> str:
  for p in ('module.', 'backbone.'):
    if k.startswith(p):
      k = k[len(p):]
  return k


def hf_to_openai(sd: dict, source: str) -> dict:
  """HF CLIP keys (vision tower) → OpenAI visual keys; q/k/v weights and biases fused into in_proj."""
  out, qkv = {}, {}
  layer_re = re.compile(r'^encoder\.layers\.(\d+)\.(.+)$')
  for k, v in sd.items():
    if k.startswith('vision_model.'):
      k = k[len('vision_model.'):]
    elif k.startswith(('text_model.', 'text_projection.', 'logit_scale')):
      continue   # CLIPModel: the text tower
    if k == 'visual_projection.weight':
      out['proj'] = v.T
      continue
    if k.endswith('position_ids'):
      continue   # a buffer, not a weight
    if k in _HF_TOP:
      out[_HF_TOP[k]] = v
      continue
    m = layer_re.match(k)
    if not m:
      raise ClipLayoutError(f'{source}: unexpected key {k!r} in an HF CLIP checkpoint')
    i, rest = m.group(1), m.group(2)
    base = f'transformer.resblocks.{i}.'
    proj = re.match(r'^self_attn\.([qkv])_proj\.(weight|bias)$', rest)
    if proj:
      qkv.setdefault((base, proj.group(2)), {})[proj.group(1)] = v
      continue
    for hf, ours in _HF_LAYER.items():
      if rest.startswith(hf):
        out[base + ours + rest[len(hf):]] = v
        break
    else:
      raise ClipLayoutError(f'{source}: unexpected key {k!r} in an HF CLIP checkpoint')
  for (base, kind), parts in sorted(qkv.items()):
    for name in 'qkv':
      if name not in parts:
        raise ClipLayoutError(f'{source}: missing key for layer {base.split(".")[2]} self_attn.{name}_proj.{kind}')
    out[base + f'attn.in_proj_{kind}'] = np.concatenate([parts['q'], parts['k'], parts['v']], axis=0)
  return out


def to_openai_keys(sd: dict, source: str) -> dict:
  sd = {_strip(k): v for k, v in sd.items()}
  if any(k.endswith('embeddings.class_embedding') for k in sd):
    return hf_to_openai(sd, source)
  if 'visual.class_embedding' in sd:   # the full OpenAI model: keep the image tower
    return {k[len('visual.'):]: v for k, v in sd.items() if k.startswith('visual.')}
  return dict(sd)


def infer_clip_config(sd: dict, model: str | None, overrides: dict, hf_config: dict | None,
                      source: str) -> ModelConfig:
  if 'conv1.weight' not in sd or 'positional_embedding' not in sd:
    missing = 'conv1.weight' if 'conv1.weight' not in sd else 'positional_embedding'
    raise ClipLayoutError(f'{source}: missing key {missing!r} (cannot read the model size without it)')
  d, chans, p, p2 = sd['conv1.weight'].shape
  if p != p2:
    raise ClipLayoutError(f'{source}: key \'conv1.weight\' has a non-square patch {p}x{p2}')
  rows = sd['positional_embedding'].shape[0]
  grid = int(round((rows - 1) ** 0.5))
  if grid * grid + 1 != rows:
    raise ClipLayoutError(f'{source}: key \'positional_embedding\' has {rows} rows, not 1 + a square grid')
  depth = 1 + max((int(m.group(1)) for k in sd for m in [re.match(r'transformer\.resblocks\.(\d+)\.', k)] if m),
                  default=-1)
  if depth == 0:
    raise ClipLayoutError(f'{source}: missing key \'transformer.resblocks.0.attn.in_proj_weight\'')
  hidden = sd['transformer.resblocks.0.mlp.c_fc.weight'].shape[0] if 'transformer.resblocks.0.mlp.c_fc.weight' in \
      sd else 4 * d
  fields = dict(embed_dim=int(d), in_chans=int(chans), patch_size=int(p), img_size=grid * int(p), depth=depth,
                mlp_ratio=hidden / d)
  if model is not None:
    if model not in registry.CLIP:
      raise ClipLayoutError(f'{source}: holds CLIP image-encoder weights; model must be one of '
                            f'{sorted(registry.CLIP)}, got {model!r}')
    base = registry.get_config(model)
    for f, v in fields.items():
      if getattr(base, f) != v and f not in overrides:
        raise ClipLayoutError(f'{source}: the weights say {f}={v} but model {model!r} has {f}={getattr(base, f)}')
    out = base.to_dict()
  else:
    out = ModelConfig(kind='clip', tubelet_size=1, num_frames=8, norm_eps=1e-5).to_dict()
    out['num_heads'] = int(d) // 64 if d % 64 == 0 else 0
  out.update(fields)
  vision = (hf_config or {}).get('vision_config', hf_config) or {}
  if vision:
    if vision.get('hidden_act', 'quick_gelu') != 'quick_gelu':
      raise ClipLayoutError(f'{source}: config.json hidden_act={vision["hidden_act"]!r}; the CLIP encoder here uses '
                            'quick_gelu (the OpenAI models)')
    if 'num_attention_heads' in vision:
      out['num_heads'] = vision['num_attention_heads']
    if 'layer_norm_eps' in vision:
      out['norm_eps'] = vision['layer_norm_eps']
  out.update(overrides)
  if not out['num_heads']:
    raise ClipLayoutError(f'{source}: num_heads cannot be read from the weights (width {d} is no multiple of 64); '
                          'pass num_heads=...')
  try:
    return ModelConfig.from_dict(out)
  except (ConfigError, TypeError) as e:
    raise ClipLayoutError(f'{source}: {e}') from e


def _expected(c: ModelConfig) -> dict[str, tuple[int, ...]]:
  d, h = c.embed_dim, c.mlp_hidden_dim
  shapes = {'class_embedding': (d,), 'positional_embedding': ((c.img_size // c.patch_size) ** 2 + 1, d),
            'conv1.weight': (d, c.in_chans, c.patch_size, c.patch_size), 'ln_pre.weight': (d,), 'ln_pre.bias': (d,)}
  for i in range(c.depth):
    b = f'transformer.resblocks.{i}.'
    shapes.update({b + 'attn.in_proj_weight': (3 * d, d), b + 'attn.in_proj_bias': (3 * d,),
                   b + 'attn.out_proj.weight': (d, d), b + 'attn.out_proj.bias': (d,),
                   b + 'ln_1.weight': (d,), b + 'ln_1.bias': (d,), b + 'ln_2.weight': (d,), b + 'ln_2.bias': (d,),
                   b + 'mlp.c_fc.weight': (h, d), b + 'mlp.c_fc.bias': (h,),
                   b + 'mlp.c_proj.weight': (d, h), b + 'mlp.c_proj.bias': (d,)})
  return shapes


def params_from_openai(sd: dict, c: ModelConfig, source: str) -> dict:
  """Our `clip` parameter tree (float32 numpy) from OpenAI visual keys, checked key by key."""
  expected = _expected(c)
  for k, shape in expected.items():
    if k not in sd:
      raise ClipLayoutError(f'{source}: missing key {k!r} (expected shape {shape})')
    if tuple(sd[k].shape) != shape:
      raise ClipLayoutError(f'{source}: key {k!r} has shape {tuple(sd[k].shape)}, expected {shape}')
  for k in sd:
    if k not in expected and k not in _DROPPED:
      raise ClipLayoutError(f'{source}: unexpected key {k!r} with shape {tuple(sd[k].shape)} in a CLIP image encoder')
  if any(k in sd for k in _DROPPED):
    logging.info('%s: ln_post / proj dropped (the encoder returns the tokens before them)', source)
  d, heads = c.embed_dim, c.num_heads
  hd = d // heads
  f32 = lambda k: np.asarray(sd[k], np.float32)  # noqa: E731
  params = {'embed': {
      'conv1': f32('conv1.weight').transpose(2, 3, 1, 0)[None],        # (D, 3, p, p) → (1, p, p, 3, D)
      'class_embedding': f32('class_embedding'), 'positional_embedding': f32('positional_embedding'),
      'ln_pre': {'scale': f32('ln_pre.weight'), 'bias': f32('ln_pre.bias')}}}
  for i in range(c.depth):
    b = f'transformer.resblocks.{i}.'
    params[f'resblocks_{i}'] = {
        'ln_1': {'scale': f32(b + 'ln_1.weight'), 'bias': f32(b + 'ln_1.bias')},
        'ln_2': {'scale': f32(b + 'ln_2.weight'), 'bias': f32(b + 'ln_2.bias')},
        'attn': {'qkv_kernel': f32(b + 'attn.in_proj_weight').T.reshape(d, 3, heads, hd),
                 'qkv_bias': f32(b + 'attn.in_proj_bias').reshape(3, heads, hd),
                 'out_kernel': f32(b + 'attn.out_proj.weight').T.reshape(heads, hd, d),
                 'out_bias': f32(b + 'attn.out_proj.bias')},
        'mlp': {'fc1_kernel': f32(b + 'mlp.c_fc.weight').T, 'fc1_bias': f32(b + 'mlp.c_fc.bias'),
                'fc2_kernel': f32(b + 'mlp.c_proj.weight').T, 'fc2_bias': f32(b + 'mlp.c_proj.bias')}}
  return params


def load_clip(raw: dict, hf_config: dict | None, source: str, model: str | None,
              overrides: dict) -> tuple[dict, ModelConfig]:
  sd = to_openai_keys(raw, source)
  config = infer_clip_config(sd, model, dict(overrides), hf_config, source)
  return params_from_openai(sd, config, source), config


# ---------------------------------------------------------------------------------------------------------------
# The way back: our tree → OpenAI keys → HF `CLIPVisionModel` keys (the inverses of the functions above)


def openai_from_params(params: dict, c: ModelConfig) -> dict[str, np.ndarray]:
  """OpenAI visual keys (float32 numpy, torch shapes) from our `clip` parameter tree; the inverse of
  `params_from_openai`. `ln_post` / `proj` are not in the tree and not written."""
  d = c.embed_dim
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  e = params['embed']
  sd = {'class_embedding': f32(e['class_embedding']), 'positional_embedding': f32(e['positional_embedding']),
        'conv1.weight': f32(e['conv1'])[0].transpose(3, 2, 0, 1),     # (1, p, p, 3, D) → (D, 3, p, p)
        'ln_pre.weight': f32(e['ln_pre']['scale']), 'ln_pre.bias': f32(e['ln_pre']['bias'])}
  for i in range(c.depth):
    b, p = f'transformer.resblocks.{i}.', params[f'resblocks_{i}']
    sd.update({
        b + 'attn.in_proj_weight': f32(p['attn']['qkv_kernel']).reshape(d, 3 * d).T,
        b + 'attn.in_proj_bias': f32(p['attn']['qkv_bias']).reshape(3 * d),
        b + 'attn.out_proj.weight': f32(p['attn']['out_kernel']).reshape(d, d).T,
        b + 'attn.out_proj.bias': f32(p['attn']['out_bias']),
        b + 'ln_1.weight': f32(p['ln_1']['scale']), b + 'ln_1.bias': f32(p['ln_1']['bias']),
        b + 'ln_2.weight': f32(p['ln_2']['scale']), b + 'ln_2.bias': f32(p['ln_2']['bias']),
        b + 'mlp.c_fc.weight': f32(p['mlp']['fc1_kernel']).T, b + 'mlp.c_fc.bias': f32(p['mlp']['fc1_bias']),
        b + 'mlp.c_proj.weight': f32(p['mlp']['fc2_kernel']).T, b + 'mlp.c_proj.bias': f32(p['mlp']['fc2_bias'])})
  return sd


def openai_to_hf(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """OpenAI visual keys → HF `CLIPVisionModel` keys (`vision_model.*`, in_proj split into q/k/v); the inverse of
  `hf_to_openai` through the same tables. Keys it does not know (`proj`) are left out."""
  top = {ours: hf for hf, ours in _HF_TOP.items()}
  layer_re = re.compile(r'^transformer\.resblocks\.(\d+)\.(.+)$')
  out = {}
  for k, v in sd.items():
    if k in top:
      out['vision_model.' + top[k]] = v
      continue
    m = layer_re.match(k)
    if not m:
      continue
    base, rest = f'vision_model.encoder.layers.{m.group(1)}.', m.group(2)
    fused = re.match(r'^attn\.in_proj_(weight|bias)$', rest)
    if fused:
      for name, part in zip('qkv', np.split(v, 3, axis=0)):
        out[base + f'self_attn.{name}_proj.{fused.group(1)}'] = part
      continue
    for hf, ours in _HF_LAYER.items():
      if rest.startswith(ours):
        out[base + hf + rest[len(ours):]] = v
        break
    else:
      raise ClipLayoutError(f'OpenAI key {k!r} has no HF CLIPVisionModel counterpart')
  return out


def hf_vision_config(c: ModelConfig) -> dict:
  """config.json of transformers' `CLIPVisionConfig` for the encoder `c` (read back by `infer_clip_config`)."""
  return dict(architectures=['CLIPVisionModel'], model_type='clip_vision_model', hidden_size=c.embed_dim,
              intermediate_size=c.mlp_hidden_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
              num_channels=c.in_chans, image_size=c.img_size, patch_size=c.patch_size, hidden_act='quick_gelu',
              layer_norm_eps=c.norm_eps, attention_dropout=0.0, initializer_range=0.02, initializer_factor=1.0)
