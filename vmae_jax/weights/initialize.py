"""Initialise a model from a checkpoint: the fine-tuning and adapter starting points of the official code.

Classifiers (what the official fine-tuning code does; docs/fidelity.md, "Initialisation"):
- the pretraining encoder's blocks and patch embedding are loaded; its final `encoder.norm` is dropped when the
  classifier mean-pools (the norm is Identity there); `fc_norm` and the head start fresh (head × init_scale);
- the decoder, `encoder_to_decoder` and `mask_token` are not used;
- any frame count or resolution works: the sinusoid tables are regenerated, never loaded;
- a 710-class head (K710 post-pretraining) becomes a K400/K600/K700 head by a row gather; here the rows are found by
  class name, which reproduces the official `label_710to{400,600,700}.json` maps. The Kinetics class lists ship with
  the package, so `init.head_remap='k710:k400'` names the two label sets; `init.class_names` and
  `init.target_class_names` take the user's own list files instead. Any other head change starts a new head.

Temporal adapters (UniFormerV2, EVL) start from a converted CLIP checkpoint: the CLIP tree is copied under
`backbone`, everything else keeps its fresh init. UniFormerV2's temporally downsampling conv1 (kT = 3) is
centre-inflated: zeros with the 2-D kernel in the middle slice, so at init frame 2t' alone feeds output t'. Unlike
the original loader, which silently skips a position table of the wrong size, a CLIP checkpoint of another
resolution, width, depth or head count is refused with the field named.

Continued pretraining (`task=pretrain` with `init.checkpoint`, e.g. from converted official weights): from a
pretraining checkpoint the encoder and every decoder part (`encoder_to_decoder`, `mask_token`, the decoder blocks,
its norm and pixel head) whose shapes fit are loaded, the rest stays fresh; from a classifier the encoder alone (its
final norm only where the classifier kept one). The encoder must be the same architecture; the decoder may differ.

`init_from_checkpoint` / `init_pretrain_from_checkpoint` are what the training tasks call: they restore
`init.checkpoint` on the host and dispatch.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import jax
import numpy as np

from vmae_jax import models
from vmae_jax.data.annotations import kinetics_file, read_class_names
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import checkpoint, loaded


class InitError(ValueError):
  """The checkpoint cannot initialise the model; the message names the parameter or class."""


LABEL_SETS = ('k400', 'k600', 'k700', 'k710')   # the class lists shipped in vmae_jax/data/kinetics/


def label_set(name: str) -> list[str]:
  """The class names of a shipped label set, in label order."""
  if name not in LABEL_SETS:
    raise InitError(f'label set {name!r} unknown; shipped: {", ".join(LABEL_SETS)}')
  return read_class_names(kinetics_file(f'label_map_{name}.txt'))


def parse_head_remap(value: str) -> tuple[str, str]:
  """'SRC:DST' (e.g. 'k710:k400') → the two label-set names, checked."""
  src, sep, dst = value.partition(':')
  if not sep or src not in LABEL_SETS or dst not in LABEL_SETS:
    raise InitError(f"init.head_remap={value!r}: use 'SRC:DST' with SRC and DST among {', '.join(LABEL_SETS)} "
                    "(e.g. 'k710:k400'), or init.class_names + init.target_class_names for your own lists")
  return src, dst


def head_class_names(init) -> tuple[list[str] | None, list[str] | None]:
  """(checkpoint head's classes, this run's classes) from the init section: a named remap or two list files."""
  if init.get('head_remap'):
    src, dst = parse_head_remap(init.head_remap)
    return label_set(src), label_set(dst)
  return (read_class_names(init.class_names) if init.class_names else None,
          read_class_names(init.target_class_names) if init.target_class_names else None)


def label_index_map(src_names: Sequence[str], dst_names: Sequence[str],
                    synonyms: dict[str, str] | None = None) -> list[int]:
  """For each destination class, the index of the same class among the source classes (by name).

  `synonyms` maps a destination name to the source's spelling (e.g. K710 merged 15 names). Every destination class
  must be found; the error lists the ones that are not.
  """
  index = {name: i for i, name in enumerate(src_names)}
  synonyms = synonyms or {}
  rows, missing = [], []
  for name in dst_names:
    i = index.get(name, index.get(synonyms.get(name, '\0')))
    if i is None:
      missing.append(name)
    rows.append(i)
  if missing:
    raise InitError(f'{len(missing)} of {len(dst_names)} classes have no counterpart in the source label space '
                    f'(first: {missing[:5]})')
  return rows


def copy_tree(dst: dict, src: dict, path: tuple[str, ...]):
  for name, value in src.items():
    here = path + (name,)
    if name not in dst:
      raise InitError(f'checkpoint parameter {"/".join(here)} has no place in the model')
    if isinstance(value, dict):
      copy_tree(dst[name], value, here)
    else:
      if tuple(np.shape(value)) != tuple(np.shape(dst[name])):
        raise InitError(f'parameter {"/".join(here)}: checkpoint shape {tuple(np.shape(value))} vs model '
                        f'{tuple(np.shape(dst[name]))}')
      dst[name] = np.asarray(value, np.float32)


def init_classifier(src_params: dict, src_config: ModelConfig, config: ModelConfig, rng: jax.Array,
                    src_class_names: Sequence[str] | None = None, class_names: Sequence[str] | None = None,
                    synonyms: dict[str, str] | None = None) -> dict:
  """Parameters of classifier `config`, initialised from `src_params` (a pretraining model or a classifier)."""
  if config.kind != 'classifier':
    raise InitError(f'init_classifier builds a classifier; got kind={config.kind!r}')
  for field in ('embed_dim', 'depth', 'patch_size', 'tubelet_size', 'in_chans', 'qkv_bias'):
    if getattr(src_config, field) != getattr(config, field):
      raise InitError(f'checkpoint {field}={getattr(src_config, field)} but the model has {field}='
                      f'{getattr(config, field)}')
  params = jax.tree_util.tree_map(np.asarray, models.init_params(config, rng))
  encoder = {k: v for k, v in src_params['encoder'].items() if k != 'norm'}
  keep_norm = 'norm' in src_params['encoder'] and not config.use_mean_pooling
  if keep_norm:
    encoder['norm'] = src_params['encoder']['norm']
  copy_tree(params['encoder'], encoder, ('encoder',))
  if src_config.kind != 'classifier':
    return params  # fresh fc_norm and head, as after pretraining
  if config.use_mean_pooling and 'fc_norm' in src_params:
    copy_tree(params['fc_norm'], src_params['fc_norm'], ('fc_norm',))
  copy_head(params, src_params, src_config, config, src_class_names, class_names, synonyms)
  return params


def copy_head(params: dict, src_params: dict, src_config, config, src_class_names=None, class_names=None,
              synonyms=None) -> None:
  """Into `params`: the source head when the label spaces agree, its rows remapped by class name when both name
  lists are given; otherwise the fresh head stays (a different label space without names, as the official code)."""
  if not (config.num_classes and src_config.num_classes):
    return
  kernel, bias = np.asarray(src_params['head_kernel']), np.asarray(src_params['head_bias'])
  if src_config.num_classes == config.num_classes and (src_class_names is None or class_names is None
                                                       or list(src_class_names) == list(class_names)):
    params['head_kernel'], params['head_bias'] = kernel, bias
  elif src_class_names is not None and class_names is not None:
    rows = label_index_map(src_class_names, class_names, synonyms)
    params['head_kernel'], params['head_bias'] = kernel[:, rows], bias[rows]


class ClipInitError(InitError):
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
  params = jax.tree_util.tree_map(np.asarray, models.init_params(config, rng))
  if src_config.kind == 'clip':
    params['backbone'] = backbone_from_clip(src_params, src_config, config, params['backbone'], source)
    return params
  if src_config.kind != config.kind:
    raise ClipInitError(f'{source}: a {src_config.kind!r} checkpoint cannot initialise a {config.kind!r} model '
                        '(start from a converted CLIP checkpoint or a checkpoint of the same model)')
  body = {k: v for k, v in src_params.items() if k not in ('head_kernel', 'head_bias')}
  copy_tree(params, body, ())
  copy_head(params, src_params, src_config, config, src_class_names, class_names, synonyms)
  return params


ADAPTER_KINDS = ('uniformerv2', 'evl')


def restore_any(path: str, step: int = -1):
  """(ModelConfig, params as numpy) of a converted checkpoint or a training workdir, on the host."""
  config, params = loaded.restore(path, None if step < 0 else step, jax.local_devices(backend='cpu')[0])
  return config, jax.tree_util.tree_map(np.asarray, params)


def init_from_checkpoint(ctx, rng, require_head: bool = False) -> dict:
  """Classifier params from `init.checkpoint`: encoder-only from pretraining, or a classifier (head kept, remapped
  by class names when the label spaces differ, or new)."""
  init = ctx.config.init
  src_config, src_params = restore_any(init.checkpoint, init.step)
  src_names, dst_names = head_class_names(init)
  synonyms = None
  if init.synonyms:
    with open(init.synonyms) as f:
      synonyms = json.load(f)
  model = ctx.model_config
  if require_head and (src_config.kind != model.kind or (src_config.num_classes != model.num_classes
                                                        and src_names is None)):
    raise InitError(
        f'{init.checkpoint}: a {src_config.kind} with {src_config.num_classes} classes cannot be evaluated as '
        f'{model.num_classes} classes (set init.head_remap, e.g. k710:k400, or init.class_names and '
        'init.target_class_names for a remap by name)')
  if model.kind in ADAPTER_KINDS:
    return init_adapter(src_params, src_config, model, rng, src_names, dst_names, synonyms, source=init.checkpoint)
  return init_classifier(src_params, src_config, model, rng, src_names, dst_names, synonyms)


def init_batch_stats(ctx) -> dict:
  """BatchNorm statistics to start from: those of `init.checkpoint` when it is the same model and has them, else
  fresh (mean 0, var 1)."""
  abstract = models.abstract_batch_stats(ctx.model_config)
  init = ctx.config.init
  if init.checkpoint:
    src_config, _ = loaded.restore(init.checkpoint, None if init.step < 0 else init.step,
                                   jax.local_devices(backend='cpu')[0])
    if src_config.kind == ctx.model_config.kind:
      restored = checkpoint.restore_batch_stats(init.checkpoint, abstract, None if init.step < 0 else init.step)
      if restored is not None:
        return jax.tree_util.tree_map(np.asarray, restored)
  return fresh_batch_stats(abstract)


def fresh_batch_stats(abstract) -> dict:
  return jax.tree_util.tree_map_with_path(
      lambda path, a: np.full(a.shape, 1.0 if getattr(path[-1], 'key', '') == 'var' else 0.0, np.float32), abstract)


# ---------------------------------------------------------------------------------------------------------------
# Continued pretraining

ENCODER_FIELDS = ('embed_dim', 'depth', 'num_heads', 'patch_size', 'tubelet_size', 'in_chans', 'mlp_ratio', 'qkv_bias')
# the decoder side of the pretraining model, each loaded on its own when its shapes fit (names as in the param tree)
PRETRAIN_PARTS = (('encoder_to_decoder',), ('mask_token',), ('decoder', 'blocks'), ('decoder', 'norm'),
                  ('decoder', 'head_kernel'), ('decoder', 'head_bias'))


def _shapes(tree) -> object:
  return jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), tree)


def _get(tree: dict, path: tuple[str, ...]):
  for name in path:
    if not isinstance(tree, dict) or name not in tree:
      return None
    tree = tree[name]
  return tree


def init_pretrain(src_params: dict, src_config: ModelConfig, config: ModelConfig, rng: jax.Array,
                  source: str = 'checkpoint') -> tuple[dict, list[str], list[str]]:
  """(params, loaded, fresh) of pretraining model `config` started from `src_params`: a pretraining model (encoder
  + the decoder parts whose shapes fit) or a classifier (encoder only). `loaded` / `fresh` name the parts."""
  if config.kind != 'pretrain':
    raise InitError(f'init_pretrain builds a pretraining model; got kind={config.kind!r}')
  if src_config.kind not in ('pretrain', 'classifier'):
    raise InitError(f'{source}: a {src_config.kind!r} checkpoint cannot initialise a VideoMAE pretraining model '
                    '(start from a VideoMAE pretraining or classifier checkpoint)')
  for field in ENCODER_FIELDS:
    if getattr(src_config, field) != getattr(config, field):
      raise InitError(f'{source}: checkpoint {field}={getattr(src_config, field)} but the model has {field}='
                      f'{getattr(config, field)}')
  params = jax.tree_util.tree_map(np.asarray, models.init_params(config, rng))
  loaded, fresh = [], []
  encoder = src_params['encoder']
  if 'norm' in encoder:
    loaded.append('encoder')
  else:   # a mean-pooling classifier's encoder ends without a norm
    loaded.append('encoder (without its final norm)')
    fresh.append('encoder/norm')
  copy_tree(params['encoder'], encoder, ('encoder',))
  if src_config.kind != 'pretrain':
    fresh.append('encoder_to_decoder, mask_token, decoder (a classifier has none)')
    return params, loaded, fresh
  for path in PRETRAIN_PARTS:
    name, want, have = '/'.join(path), _get(params, path), _get(src_params, path)
    if have is None:
      fresh.append(f'{name} (not in the checkpoint)')
      continue
    if _shapes(have) != _shapes(want):
      fresh.append(f'{name} (checkpoint shapes differ: decoder_embed_dim={src_config.decoder_embed_dim}, '
                   f'decoder_depth={src_config.decoder_depth}, decoder_num_heads={src_config.decoder_num_heads})')
      continue
    parent = _get(params, path[:-1]) if len(path) > 1 else params
    parent[path[-1]] = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), have)
    loaded.append(name)
  return params, loaded, fresh


def init_pretrain_from_checkpoint(ctx, rng) -> dict:
  """Pretraining params from `init.checkpoint` (a converted checkpoint or a training workdir); process 0 prints one
  line with what was loaded and one with what stayed fresh."""
  path = ctx.config.init.checkpoint
  if not os.path.exists(path):
    raise InitError(f'init.checkpoint={path}: no such file or directory')
  if not os.path.isdir(path):
    raise InitError(f'init.checkpoint={path}: a file, not a vmae_jax checkpoint; convert official or HF weights '
                    'first (python -m vmae_jax.convert --src=... --dst=...)')
  src_config, src_params = restore_any(path, ctx.config.init.step)
  params, loaded_parts, fresh = init_pretrain(src_params, src_config, ctx.model_config, rng,
                                              source=f'init.checkpoint={path}')
  if jax.process_index() == 0:
    print(f'init.checkpoint={path}: loaded {", ".join(loaded_parts)} (a {src_config.kind} checkpoint)', flush=True)
    print(f'init.checkpoint={path}: fresh {", ".join(fresh) if fresh else "nothing (every parameter loaded)"}',
          flush=True)
  return params
