"""The CLIP image encoder (OpenAI `VisionTransformer` without `ln_post`/`proj`), applied frame by frame.

Pre-norm blocks with QuickGELU MLPs and full q/k/v biases, a class token, a learned absolute position table and
`ln_pre`; LayerNorm eps 1e-5 (OpenAI CLIP `model.py`; docs/fidelity.md, "Adapters"). The parameter tree is the
backbone of both temporal adapters (`uniformerv2.py`, `evl.py`), which subclass or reuse these modules, so a
converted CLIP checkpoint initialises them by copying subtrees.

Blocks are a Python loop (`resblocks_{i}`), not a scan: the adapters read and modify the stream between blocks.
Kernels are stored (in, out) with heads split out, as in vit.py: `qkv_kernel` (D, 3, heads, head_dim).
"""
from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from vmae_jax.models import attention
from vmae_jax.models.config import ModelConfig
from vmae_jax.models.vit import TORCH_DEFAULT, DropPath, compute_dtype, layer_norm, logical, torch_default_bias

Array = jax.Array

# The OpenAI init of the released models is irrelevant (weights are always imported); fresh models use the
# PyTorch default Linear init, which is what nn.MultiheadAttention / nn.Linear give before loading.
LINEAR_INIT = TORCH_DEFAULT


def quick_gelu(x: Array) -> Array:
  return x * jax.nn.sigmoid(1.702 * x)


def no_drop_path(x, rate, deterministic):
  del rate, deterministic
  return x


class ClipAttention(nn.Module):
  """nn.MultiheadAttention as CLIP uses it: fused in-projection with biases, scale head_dim^-0.5, out-projection.

  Returns the output and the projected (biased, unscaled) q and k, which EVL's temporal cross-attention reads.
  """
  dim: int
  num_heads: int
  impl: str
  dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array, Array]:
    h, hd = self.num_heads, self.dim // self.num_heads
    qkv_init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2, 3))
    qkv_kernel = self.param('qkv_kernel', logical(qkv_init, ('embed', None, 'heads', 'kv')), (x.shape[-1], 3, h, hd))
    qkv_bias = self.param('qkv_bias', logical(nn.initializers.zeros, (None, 'heads', 'kv')), (3, h, hd))
    qkv = jnp.einsum('bnd,dshk->sbnhk', x, jnp.asarray(qkv_kernel, self.dtype)) + \
        jnp.asarray(qkv_bias, self.dtype)[:, None, None]
    q, k, v = qkv[0], qkv[1], qkv[2]
    out = attention.attend(q, k, v, self.impl, self.dtype)
    out_kernel = self.param('out_kernel', logical(nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform',
                                                                                   in_axis=(0, 1), out_axis=2),
                                                  ('heads', 'kv', 'embed')), (h, hd, self.dim))
    out_bias = self.param('out_bias', logical(nn.initializers.zeros, ('embed',)), (self.dim,))
    out = jnp.einsum('bnhk,hkd->bnd', out, jnp.asarray(out_kernel, self.dtype)) + jnp.asarray(out_bias, self.dtype)
    return out, q, k


class ClipMlp(nn.Module):
  """c_fc → QuickGELU → (dropout) → c_proj; `zero_out` zero-initialises c_proj (UniFormerV2's global blocks)."""
  hidden_dim: int
  dtype: Any
  drop_rate: float = 0.0
  fc1_init: Any = LINEAR_INIT
  zero_out: bool = False

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    d = x.shape[-1]
    out_init = nn.initializers.zeros if self.zero_out else LINEAR_INIT
    fc1 = self.param('fc1_kernel', logical(self.fc1_init, ('embed', 'mlp')), (d, self.hidden_dim))
    b1 = self.param('fc1_bias', logical(torch_default_bias(d), ('mlp',)), (self.hidden_dim,))
    fc2 = self.param('fc2_kernel', logical(out_init, ('mlp', 'embed')), (self.hidden_dim, d))
    b2 = self.param('fc2_bias', logical(nn.initializers.zeros if self.zero_out else torch_default_bias(self.hidden_dim),
                                        ('embed',)), (d,))
    x = quick_gelu(x @ jnp.asarray(fc1, self.dtype) + jnp.asarray(b1, self.dtype))
    x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
    return x @ jnp.asarray(fc2, self.dtype) + jnp.asarray(b2, self.dtype)


def clip_layer_norm(eps: float, dtype, name: str | None = None) -> nn.LayerNorm:
  """LayerNorm as vit.layer_norm builds it (torch's variance form, logical axes); `name` only in compact code."""
  return nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name,
                      scale_init=logical(nn.initializers.ones, ('embed',)),
                      bias_init=logical(nn.initializers.zeros, ('embed',)))


class ClipBlock(nn.Module):
  """x + attn(ln_1(x)), then x + mlp(ln_2(x)); returns (x, q, k). Subclasses add branches via `between`."""
  config: ModelConfig
  drop_path_rate: float = 0.0

  def setup(self):
    c = self.config
    dtype = compute_dtype(c)
    self.ln_1 = clip_layer_norm(c.norm_eps, dtype)
    self.attn = ClipAttention(c.embed_dim, c.num_heads, attention.resolve(c.attention, dtype), dtype)
    self.ln_2 = clip_layer_norm(c.norm_eps, dtype)
    self.mlp = ClipMlp(c.mlp_hidden_dim, dtype)
    self.drop_path = DropPath() if self.drop_path_rate > 0 else no_drop_path

  def residual(self, x: Array, y: Array, deterministic: bool) -> Array:
    return x + self.drop_path(y, jnp.asarray(self.drop_path_rate, jnp.float32), deterministic)

  def __call__(self, x: Array, num_frames: int, deterministic: bool = True) -> tuple[Array, Array, Array]:
    del num_frames   # the plain block is per frame; UniFormerV2's local branches use it
    y, q, k = self.attn(self.ln_1(x))
    x = self.residual(x, y, deterministic)
    x = self.residual(x, self.mlp(self.ln_2(x)), deterministic)
    return x, q, k


def patchify(video: Array, patch: int) -> Array:
  """(B, T, H, W, C) → (B, T, h·w, p·p·C): row-major patches, pixels in (py, px, c) order (the kernel's order)."""
  return einops.rearrange(video, 'b t (h ph) (w pw) c -> b t (h w) (ph pw c)', ph=patch, pw=patch)


class ClipEmbed(nn.Module):
  """conv1 (no bias) per frame, written as patchify + matmul, then class token, positions and ln_pre.

  The kernel is (kT, p, p, 3, D) (Flax NDHWC conv layout; torch (D, 3, kT, p, p).transpose(2, 3, 4, 1, 0)). With
  kT = 1 it is CLIP's 2-D conv; UniFormerV2's temporal downsampling uses kT = 3, stride 2, zero padding 1 in time.
  Returns (B·T', 1 + h·w, D) with batch index b·T' + t, and T'.
  """
  config: ModelConfig
  temporal_kernel: int = 1

  @nn.compact
  def __call__(self, video: Array) -> tuple[Array, int]:
    c = self.config
    dtype = compute_dtype(c)
    p, kt, d = c.patch_size, self.temporal_kernel, c.embed_dim
    if video.ndim != 5 or video.shape[-1] != c.in_chans:
      raise ValueError(f'video must be (B, T, H, W, {c.in_chans}) channels-last; got shape {video.shape}')
    if video.shape[2] != c.img_size or video.shape[3] != c.img_size:
      raise ValueError(f'{c.name or c.kind}: frames must be {c.img_size}x{c.img_size} (the learned position table '
                       f'has {(c.img_size // p) ** 2 + 1} rows); got {video.shape[2]}x{video.shape[3]}')
    fan_in = kt * p * p * c.in_chans
    kernel = self.param('conv1', logical(nn.initializers.variance_scaling(
        1 / 3, 'fan_in', 'uniform', in_axis=(0, 1, 2, 3), out_axis=4), (None, None, None, None, 'embed')),
        (kt, p, p, c.in_chans, d))
    kernel = jnp.asarray(kernel, dtype).reshape(kt, fan_in // kt, d)
    patches = patchify(video.astype(dtype), p)                     # (B, T, P, p·p·3)
    b = video.shape[0]
    if kt == 1:
      x = patches @ kernel[0]
    else:  # stride 2, zero padding kt // 2 in time: output t' reads padded frames 2t' .. 2t' + kt - 1
      pad = kt // 2
      padded = jnp.pad(patches, ((0, 0), (pad, pad), (0, 0), (0, 0)))
      t_out = (video.shape[1] + 2 * pad - kt) // 2 + 1
      x = sum(padded[:, j:j + 2 * t_out:2][:, :t_out] @ kernel[j] for j in range(kt))
    t = x.shape[1]
    x = x.reshape(b * t, x.shape[2], d)
    cls = self.param('class_embedding', logical(nn.initializers.normal(d ** -0.5), ('embed',)), (d,))
    num_pos = (c.img_size // p) ** 2 + 1
    pos = self.param('positional_embedding', logical(nn.initializers.normal(d ** -0.5), (None, 'embed')),
                     (num_pos, d))
    x = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cls, dtype), (b * t, 1, d)), x], axis=1)
    x = x + jnp.asarray(pos, dtype)[None]
    return layer_norm(c.norm_eps, dtype, 'ln_pre')(x), t


class ClipVisionEncoder(nn.Module):
  """The CLIP image tower over a video: every frame's tokens after the last block (no ln_post), (B, T, 1+P, D).

  `encode` is HF `CLIPVisionModel.last_hidden_state` per frame. Backbone drop path follows
  linspace(0, drop_path_rate, depth).
  """
  config: ModelConfig
  block: Any = ClipBlock
  temporal_kernel: int = 1

  def setup(self):
    c = self.config
    self.embed = ClipEmbed(c, self.temporal_kernel)
    rates = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]
    self.resblocks = [self.block(c, rates[i]) for i in range(c.depth)]

  def stem(self, video: Array) -> tuple[Array, int]:
    return self.embed(video)

  def run_block(self, i: int, x: Array, num_frames: int, deterministic: bool):
    return self.resblocks[i](x, num_frames, deterministic)

  def encode(self, video: Array, deterministic: bool = True) -> Array:
    x, t = self.stem(video)
    for i in range(self.config.depth):
      x = self.run_block(i, x, t, deterministic)[0]
    return x.reshape(video.shape[0], t, *x.shape[1:])

  def __call__(self, video: Array, deterministic: bool = True) -> Array:
    return self.encode(video, deterministic)


__all__ = ['ClipVisionEncoder', 'ClipBlock', 'ClipEmbed', 'ClipAttention', 'ClipMlp', 'quick_gelu',
           'patchify']
