"""Models: the video ViT classifier, the VideoMAE pretraining model, their registry and parameter counting."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vmae_jax.models.classifier import VideoClassifier
from vmae_jax.models.clip import ClipVisionEncoder
from vmae_jax.models.config import ConfigError, ModelConfig
from vmae_jax.models.evl import EVL
from vmae_jax.models.mae import PretrainVideoMAE
from vmae_jax.models.registry import get_config, model_names
from vmae_jax.models.uniformerv2 import UniFormerV2
from vmae_jax.models.vit import sinusoid_table


def build(config: ModelConfig) -> nn.Module:
  """The linen module for a config (pure: parameters live outside)."""
  if config.kind == 'pretrain':
    return PretrainVideoMAE(config)
  if config.kind == 'clip':
    return ClipVisionEncoder(config)
  if config.kind == 'uniformerv2':
    return UniFormerV2(config)
  if config.kind == 'evl':
    return EVL(config)
  return VideoClassifier(config)


def example_inputs(config: ModelConfig, batch: int = 1) -> tuple:
  """Inputs of the configured shape for `init` (video, plus index arrays for the pretraining model)."""
  video = jnp.zeros((batch, config.num_frames, config.img_size, config.img_size, config.in_chans), jnp.float32)
  if config.kind == 'pretrain':
    idx = jnp.zeros((batch, 1), jnp.int32)
    return video, idx, idx
  return (video,)


def init_variables(config: ModelConfig, rng: jax.Array) -> dict:
  """Fresh variables ({'params'[, 'batch_stats']}) with the official initialisers, logical-axis boxes removed."""
  model = build(config)
  return nn.unbox(dict(model.init({'params': rng}, *example_inputs(config))))


def init_params(config: ModelConfig, rng: jax.Array) -> dict:
  """Fresh parameters with the official initialisers, logical-axis boxes removed."""
  return init_variables(config, rng)['params']


def frozen_mask(config: ModelConfig, params) -> dict | None:
  """With `freeze_backbone`: a tree like `params`, True on the CLIP backbone (the parameters UniFormerV2's frozen
  option and EVL keep fixed); None otherwise."""
  if not config.freeze_backbone:
    return None
  return {name: jax.tree_util.tree_map(lambda _: name == 'backbone', sub) for name, sub in params.items()}


def abstract_batch_stats(config: ModelConfig) -> dict | None:
  """Shapes of the model's BatchNorm statistics (UniFormerV2's local UniBlocks), or None when it has none."""
  if config.kind != 'uniformerv2' or config.no_lmhra:
    return None
  model = build(config)
  return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, *example_inputs(config)))['batch_stats']


def abstract_params(config: ModelConfig) -> dict:
  """Parameter shapes and dtypes (`jax.ShapeDtypeStruct`), nothing allocated; still boxed with logical axes."""
  model = build(config)
  return jax.eval_shape(lambda: model.init({'params': jax.random.key(0)}, *example_inputs(config)))['params']


def count_params(name_or_config: str | ModelConfig, **overrides) -> int:
  """Number of parameters of a registered name (with overrides) or a config, counted with `jax.eval_shape`."""
  config = name_or_config if isinstance(name_or_config, ModelConfig) else get_config(name_or_config, **overrides)
  if isinstance(name_or_config, ModelConfig) and overrides:
    config = config.replace(**overrides)
  leaves = jax.tree_util.tree_leaves(nn.unbox(abstract_params(config)))
  return sum(math.prod(leaf.shape) for leaf in leaves)


__all__ = ['frozen_mask', 'init_variables', 'abstract_batch_stats', 'ClipVisionEncoder', 'UniFormerV2', 'EVL', 'build',
           'count_params', 'get_config', 'model_names', 'init_params', 'abstract_params', 'example_inputs',
           'ModelConfig', 'ConfigError', 'PretrainVideoMAE', 'VideoClassifier', 'sinusoid_table']
