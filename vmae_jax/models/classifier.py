"""Video classifier: encoder → mean over all tokens → fresh fc_norm → head dropout → head.

With `use_mean_pooling=False` the encoder keeps its final norm and the first token is used (the official
`use_cls` path: there is no cls token, so it is the first patch token). `num_classes=0` means no head: the model
returns the pooled, normalised feature.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vmae_jax.models.config import ModelConfig
from vmae_jax.models.vit import TRUNC_NORMAL_02, VideoViT, compute_dtype, layer_norm, logical

Array = jax.Array


class VideoClassifier(nn.Module):
  config: ModelConfig

  def setup(self):
    c = self.config
    self.encoder = VideoViT(c, final_norm=not c.use_mean_pooling, kernel_init=TRUNC_NORMAL_02)
    if c.use_mean_pooling:
      self.fc_norm = layer_norm(c.norm_eps, compute_dtype(c), 'fc_norm')
    self.head_dropout = nn.Dropout(c.head_drop_rate)
    if c.num_classes > 0:
      # Official init: trunc_normal(.02) then weight and bias multiplied by init_scale (bias stays 0).
      self.head_kernel = self.param('head_kernel', logical(nn.initializers.normal(0.02 * c.init_scale),
                                                           ('embed', 'classes')), (c.embed_dim, c.num_classes))
      self.head_bias = self.param('head_bias', logical(nn.initializers.zeros, ('classes',)), (c.num_classes,))

  def encode(self, video: Array, deterministic: bool = True) -> Array:
    """Last hidden state (B, N, D); after the final norm only when the model has one (no mean pooling)."""
    return self.encoder(video, None, deterministic)

  def features(self, video: Array, deterministic: bool = True) -> Array:
    """Pooled feature (B, D) fed to the head: fc_norm(mean of all tokens), the official `forward_features`."""
    x = self.encoder(video, None, deterministic)
    if self.config.use_mean_pooling:
      return self.fc_norm(x.mean(axis=1))
    return x[:, 0]

  def __call__(self, video: Array, deterministic: bool = True) -> Array:
    x = self.features(video, deterministic)
    x = self.head_dropout(x, deterministic=deterministic)
    if self.config.num_classes == 0:
      return x
    dtype = compute_dtype(self.config)
    return x @ jnp.asarray(self.head_kernel, dtype) + jnp.asarray(self.head_bias, dtype)
