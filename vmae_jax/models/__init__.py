"""Models: the video ViT classifier, the VideoMAE pretraining model, their registry and parameter counting."""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vmae_jax.models.classifier import VideoClassifier
from vmae_jax.models.config import ConfigError, ModelConfig
from vmae_jax.models.mae import PretrainVideoMAE
from vmae_jax.models.registry import get_config, model_names
from vmae_jax.models.vit import sinusoid_table


def build(config: ModelConfig) -> nn.Module:
  """The linen module for a config (pure: parameters live outside)."""
  return PretrainVideoMAE(config) if config.kind == 'pretrain' else VideoClassifier(config)


def example_inputs(config: ModelConfig, batch: int = 1) -> tuple:
  """Inputs of the configured shape for `init` (video, plus index arrays for the pretraining model)."""
  video = jnp.zeros((batch, config.num_frames, config.img_size, config.img_size, config.in_chans), jnp.float32)
  if config.kind == 'pretrain':
    idx = jnp.zeros((batch, 1), jnp.int32)
    return video, idx, idx
  return (video,)


def init_params(config: ModelConfig, rng: jax.Array) -> dict:
  """Fresh parameters with the official initialisers, logical-axis boxes removed."""
  model = build(config)
  variables = model.init({'params': rng}, *example_inputs(config))
  return nn.unbox(variables['params'])


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


__all__ = ['build', 'count_params', 'get_config', 'model_names', 'init_params', 'abstract_params', 'example_inputs',
           'ModelConfig', 'ConfigError', 'PretrainVideoMAE', 'VideoClassifier', 'sinusoid_table']
