"""VideoMAE pretraining model (V1 and V2 dual masking): encode visible tokens, decode visible + mask tokens.

One forward covers both papers. The host gives `visible_idx` (encoder input) and `pred_idx` (the tokens the decoder
predicts, in ascending order):
  V1:  pred_idx = the encoder-masked tokens.
  V2:  pred_idx = the decoder-kept tokens (running-cell mask); positions that are both visible and kept appear twice
       in the decoder input, once encoded and once as a mask token, exactly as the official code builds it.
Decoder input = [e2d(enc(visible)) + pe_dec[visible_idx] ; mask_token + pe_dec[pred_idx]], predictions are the last
len(pred_idx) tokens after the decoder norm and pixel head.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vmae_jax.models.config import ModelConfig, grid_for
from vmae_jax.models.vit import (
  TORCH_DEFAULT,
  XAVIER_UNIFORM,
  VideoViT,
  block_stack,
  compute_dtype,
  gather_tokens,
  layer_norm,
  logical,
  sinusoid_table,
)

Array = jax.Array


class PretrainVideoMAE(nn.Module):
  config: ModelConfig

  def setup(self):
    c = self.config
    dtype = compute_dtype(c)
    self.encoder = VideoViT(c, final_norm=True, kernel_init=XAVIER_UNIFORM)
    # encoder_to_decoder is never touched by the official _init_weights: it keeps torch's default Linear init.
    self.encoder_to_decoder = self.param('encoder_to_decoder', logical(TORCH_DEFAULT, ('embed', 'decoder_embed')),
                                         (c.embed_dim, c.decoder_embed_dim))
    # trunc_normal(std=.02) truncated at ±1 std, as the local wrapper in modeling_pretrain.py does.
    self.mask_token = self.param('mask_token', logical(nn.initializers.truncated_normal(0.02, lower=-1.0, upper=1.0),
                                                       (None, None, 'decoder_embed')), (1, 1, c.decoder_embed_dim))
    self.decoder = Decoder(c)
    self._dtype = dtype

  def encode(self, video: Array, visible_idx: Array | None = None, deterministic: bool = True) -> Array:
    """Encoder tokens after the final norm: all tokens, or only `visible_idx` ones."""
    return self.encoder(video, visible_idx, deterministic)

  def __call__(self, video: Array, visible_idx: Array, pred_idx: Array, deterministic: bool = True) -> Array:
    c = self.config
    t, h, w = grid_for(video.shape[1], video.shape[2], video.shape[3], c.tubelet_size, c.patch_size)
    x_vis = self.encoder(video, visible_idx, deterministic)
    x_vis = x_vis @ jnp.asarray(self.encoder_to_decoder, self._dtype)
    pos = jnp.asarray(sinusoid_table(t * h * w, c.decoder_embed_dim), self._dtype)
    batch = video.shape[0]
    pos = jnp.broadcast_to(pos[None], (batch,) + pos.shape)
    mask_tokens = jnp.asarray(self.mask_token, self._dtype) + gather_tokens(pos, pred_idx)
    x = jnp.concatenate([x_vis + gather_tokens(pos, visible_idx), mask_tokens], axis=1)
    return self.decoder(x, pred_idx.shape[1], deterministic)


class Decoder(nn.Module):
  """Blocks over all decoder tokens, then norm + pixel head on the last `num_pred` tokens only."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, num_pred: int, deterministic: bool) -> Array:
    c = self.config
    dtype = compute_dtype(c)
    x = block_stack(c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads, c.decoder_mlp_hidden_dim, c, dtype,
                    XAVIER_UNIFORM)(x, deterministic)
    x = layer_norm(c.norm_eps, dtype, 'norm')(x[:, x.shape[1] - num_pred:])
    out = c.decoder_num_classes
    kernel = self.param('head_kernel', logical(XAVIER_UNIFORM, ('decoder_embed', 'pixels')), (c.decoder_embed_dim, out))
    bias = self.param('head_bias', logical(nn.initializers.zeros, ('pixels',)), (out,))
    return x @ jnp.asarray(kernel, dtype) + jnp.asarray(bias, dtype)
