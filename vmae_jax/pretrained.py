"""Initialise a classifier from a checkpoint: a pretraining model (encoder only) or another classifier.

What the official fine-tuning code does (spec/videomae.md §1.1, §7, §8):
- the pretraining encoder's blocks and patch embedding are loaded; its final `encoder.norm` is dropped when the
  classifier mean-pools (the norm is Identity there); `fc_norm` and the head start fresh (head × init_scale);
- the decoder, `encoder_to_decoder` and `mask_token` are not used;
- any frame count or resolution works: the sinusoid tables are regenerated, never loaded;
- a 710-class head (K710 post-pretraining) becomes a K400/K600/K700 head by a row gather; here the rows are found by
  class name, which reproduces the official `label_710to{400,600,700}.json` maps. Any other head change starts a new
  head.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from vmae_jax import models
from vmae_jax.models.config import ModelConfig


class InitError(ValueError):
  """The checkpoint cannot initialise the model; the message names the parameter or class."""


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


def _copy(dst: dict, src: dict, path: tuple[str, ...]):
  for name, value in src.items():
    here = path + (name,)
    if name not in dst:
      raise InitError(f'checkpoint parameter {"/".join(here)} has no place in the model')
    if isinstance(value, dict):
      _copy(dst[name], value, here)
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
  _copy(params['encoder'], encoder, ('encoder',))
  if src_config.kind != 'classifier':
    return params  # fresh fc_norm and head, as after pretraining
  if config.use_mean_pooling and 'fc_norm' in src_params:
    _copy(params['fc_norm'], src_params['fc_norm'], ('fc_norm',))
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
