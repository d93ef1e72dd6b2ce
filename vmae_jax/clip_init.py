"""Initialise a temporal adapter (UniFormerV2, EVL) from a converted CLIP checkpoint.

The CLIP tree is copied under `backbone`; everything else keeps its fresh init. UniFormerV2's temporally
downsampling conv1 (kT = 3) is centre-inflated: zeros with the 2-D kernel in the middle slice (spec §A.3), so at
init frame 2t' alone feeds output t'. Unlike the original loader, which silently skips a position table of the wrong
size, a CLIP checkpoint of another resolution, width, depth or head count is refused with the field named.
"""
from __future__ import annotations

import jax
import numpy as np

from vmae_jax.models.config import ModelConfig


class ClipInitError(ValueError):
  """The CLIP checkpoint does not fit the adapter; the message names the field."""


_MATCH = ('embed_dim', 'depth', 'num_heads', 'patch_size', 'img_size', 'in_chans', 'mlp_ratio')


def backbone_from_clip(clip_params: dict, clip_config: ModelConfig, config: ModelConfig, fresh_backbone: dict,
                       source: str = 'CLIP checkpoint') -> dict:
  """The adapter's `backbone` subtree from CLIP parameters; `fresh_backbone` supplies what CLIP lacks (the local
  UniBlocks)."""
  if clip_config.kind != 'clip':
    raise ClipInitError(f'{source}: a {clip_config.kind!r} checkpoint; the adapters start from a CLIP image encoder '
                        '(convert one with python -m vmae_jax.convert)')
  for f in _MATCH:
    if getattr(clip_config, f) != getattr(config, f):
      raise ClipInitError(f'{source}: CLIP {f}={getattr(clip_config, f)} but the model has {f}={getattr(config, f)}'
                          + (' (position tables are not interpolated)' if f == 'img_size' else ''))
  out = jax.tree_util.tree_map(np.asarray, fresh_backbone)
  clip = jax.tree_util.tree_map(np.asarray, clip_params)
  for name, sub in clip.items():
    if name == 'embed':
      conv = sub['conv1']                                    # (1, p, p, 3, D)
      kt = out['embed']['conv1'].shape[0]
      inflated = np.zeros((kt,) + conv.shape[1:], np.float32)
      inflated[kt // 2] = conv[0]
      out['embed'] = dict(sub, conv1=inflated)
    else:   # resblocks_i: CLIP's parts; the local UniBlocks (if any) stay fresh
      out[name] = {**out[name], **sub}
  return out





def init_adapter(src_params: dict, src_config: ModelConfig, config: ModelConfig, rng: jax.Array,
                 src_class_names=None, class_names=None, synonyms=None, source: str = 'checkpoint') -> dict:
  """Parameters of adapter `config` from a CLIP checkpoint (backbone copied, the rest fresh) or from a checkpoint
  of the same adapter (everything copied; the head kept, remapped by class names, or fresh, as for ViTs)."""
  from vmae_jax import models, pretrained
  params = jax.tree_util.tree_map(np.asarray, models.init_params(config, rng))
  if src_config.kind == 'clip':
    params['backbone'] = backbone_from_clip(src_params, src_config, config, params['backbone'], source)
    return params
  if src_config.kind != config.kind:
    raise ClipInitError(f'{source}: a {src_config.kind!r} checkpoint cannot initialise a {config.kind!r} model '
                        '(start from a converted CLIP checkpoint or a checkpoint of the same model)')
  body = {k: v for k, v in src_params.items() if k not in ('head_kernel', 'head_bias')}
  pretrained._copy(params, body, ())
  pretrained.copy_head(params, src_params, src_config, config, src_class_names, class_names, synonyms)
  return params
__all__ = ['backbone_from_clip', 'init_adapter', 'ClipInitError']
