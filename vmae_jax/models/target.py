"""The reconstruction target and the V1 / V2 losses (docs/fidelity.md, "Pixel target and loss";
engine_for_pretraining.py of MCG-NJU/VideoMAE and OpenGVLab/VideoMAEv2).

Target: un-normalise the input (ImageNet mean/std), cut each token's tubelet of p×p pixels, normalise per token and
per channel over its t·p·p pixels with the unbiased std (+1e-6 on the std), and flatten in (t, p, p, c) order with
the channel fastest: the order of the decoder's pixel head.
"""
from __future__ import annotations

import einops
import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_target(video: jax.Array, tubelet_size: int, patch_size: int, normalize: bool = True,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """video (B, T, H, W, C), normalised with mean/std → per-token target (B, N, t·p·p·C), float32."""
  video = video.astype(jnp.float32)
  pixels = video * jnp.asarray(std, jnp.float32) + jnp.asarray(mean, jnp.float32)
  tokens = einops.rearrange(pixels, 'b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw) c',
                            pt=tubelet_size, ph=patch_size, pw=patch_size)
  if normalize:
    mu = tokens.mean(axis=-2, keepdims=True)
    std_unbiased = jnp.sqrt(jnp.var(tokens, axis=-2, keepdims=True, ddof=1))
    tokens = (tokens - mu) / (std_unbiased + 1e-6)
  return einops.rearrange(tokens, 'b n p c -> b n (p c)')


def gather_target(target: jax.Array, idx: jax.Array) -> jax.Array:
  return jnp.take_along_axis(target, idx[:, :, None].astype(jnp.int32), axis=1)


def reconstruction_loss(pred: jax.Array, labels: jax.Array, loss_weight: jax.Array | None = None) -> jax.Array:
  """V1 (no weight): mean squared error over every element. V2: per-token MSE weighted by `loss_weight`
  (1 = encoder-masked), divided by the batch-global weight sum."""
  sq = jnp.square(pred.astype(jnp.float32) - labels.astype(jnp.float32))
  if loss_weight is None:
    return sq.mean()
  per_token = sq.mean(axis=-1)
  w = loss_weight.astype(jnp.float32)
  return (per_token * w).sum() / w.sum()
