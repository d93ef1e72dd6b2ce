"""Video ViT building blocks: sinusoid table, cube embedding, attention block, scanned block stack, encoder.

Parameters are declared with logical axis names (`embed`, `heads`, `kv`, `mlp`, `layers`, `classes`); the mesh
mapping lives in one rule table elsewhere. Kernels are stored in (in, out) order with heads split out
(`qkv_kernel` is (D, 3, heads, head_dim)), so tensor parallelism can shard whole heads.
"""
from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax.models import attention
from vmae_jax.models.config import ModelConfig, grid_for
from vmae_jax.parallel import sharding

Array = jax.Array
logical = nn.with_logical_partitioning

# Initialisers of the official code, by module kind (docs/fidelity.md, "Initialisation").
XAVIER_UNIFORM = nn.initializers.xavier_uniform()          # pretrain Linear
TRUNC_NORMAL_02 = nn.initializers.normal(0.02)   # finetune Linear (timm's bounds ±2 are absolute: ≈ untruncated)
TORCH_DEFAULT = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')  # kaiming_uniform(a=√5)


def torch_default_bias(fan_in: int):
  """nn.Linear / nn.Conv's default bias init: uniform(±1/√fan_in)."""
  bound = 1.0 / np.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def sinusoid_table(num_positions: int, dim: int) -> np.ndarray:
  """The fixed 1-D sin/cos table of the official code: float64 math, sin on even and cos on odd dims, float32."""
  position = np.arange(num_positions, dtype=np.float64)[:, None]
  j = np.arange(dim)
  angle = position / np.power(10000, 2 * (j // 2) / dim)
  table = np.empty_like(angle)
  table[:, 0::2] = np.sin(angle[:, 0::2])
  table[:, 1::2] = np.cos(angle[:, 1::2])
  return table.astype(np.float32)


def compute_dtype(config: ModelConfig):
  return jnp.dtype(config.dtype)


def gather_tokens(x: Array, idx: Array) -> Array:
  """x (B, N, D), idx (B, K) int → (B, K, D); order follows idx (host masks give ascending indices).
  Per shard under a mesh (sharding.per_example: each device gathers its own examples' tokens)."""
  return sharding.per_example(_gather_tokens)(x, idx)


def _gather_tokens(x: Array, idx: Array) -> Array:
  return jnp.take_along_axis(x, idx[:, :, None].astype(jnp.int32), axis=1)


class DropPath(nn.Module):
  """Stochastic depth: drop the whole residual branch per sample with probability `rate` (traced per layer)."""

  @nn.compact
  def __call__(self, x: Array, rate: Array, deterministic: bool) -> Array:
    if deterministic:
      return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, shape)
    return jnp.where(mask, x / keep.astype(x.dtype), jnp.zeros_like(x))


class Attention(nn.Module):
  """BEiT-style attention: fused qkv without bias, learnable q and v biases, k bias fixed at zero."""
  dim: int
  num_heads: int
  qkv_bias: bool
  attn_drop_rate: float
  proj_drop_rate: float
  impl: str
  dtype: Any
  kernel_init: Any

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    h, hd = self.num_heads, self.dim // self.num_heads
    qkv_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform', in_axis=0, out_axis=(1, 2, 3)) \
        if self.kernel_init is XAVIER_UNIFORM else self.kernel_init
    qkv_kernel = self.param('qkv_kernel', logical(qkv_init, ('embed', None, 'heads', 'kv')),
                            (x.shape[-1], 3, h, hd))
    qkv = jnp.einsum('bnd,dshk->sbnhk', x, jnp.asarray(qkv_kernel, self.dtype))
    q, k, v = qkv[0], qkv[1], qkv[2]
    if self.qkv_bias:
      q_bias = self.param('q_bias', logical(nn.initializers.zeros, ('heads', 'kv')), (h, hd))
      v_bias = self.param('v_bias', logical(nn.initializers.zeros, ('heads', 'kv')), (h, hd))
      q = q + jnp.asarray(q_bias, self.dtype)
      v = v + jnp.asarray(v_bias, self.dtype)
    probs_dropout = None
    if self.attn_drop_rate > 0 and not deterministic:
      probs_dropout = lambda p: nn.Dropout(self.attn_drop_rate)(p, deterministic=False)  # noqa: E731
    out = attention.attend(q, k, v, self.impl, self.dtype, probs_dropout)
    proj_kernel = self.param('proj_kernel', logical(
        nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform', in_axis=(0, 1), out_axis=2)
        if self.kernel_init is XAVIER_UNIFORM else self.kernel_init, ('heads', 'kv', 'embed')), (h, hd, self.dim))
    proj_bias = self.param('proj_bias', logical(nn.initializers.zeros, ('embed',)), (self.dim,))
    out = jnp.einsum('bnhk,hkd->bnd', out, jnp.asarray(proj_kernel, self.dtype)) + jnp.asarray(proj_bias, self.dtype)
    return nn.Dropout(self.proj_drop_rate)(out, deterministic=deterministic)


class Mlp(nn.Module):
  hidden_dim: int
  drop_rate: float
  dtype: Any
  kernel_init: Any

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    d = x.shape[-1]
    fc1 = self.param('fc1_kernel', logical(self.kernel_init, ('embed', 'mlp')), (d, self.hidden_dim))
    b1 = self.param('fc1_bias', logical(nn.initializers.zeros, ('mlp',)), (self.hidden_dim,))
    fc2 = self.param('fc2_kernel', logical(self.kernel_init, ('mlp', 'embed')), (self.hidden_dim, d))
    b2 = self.param('fc2_bias', logical(nn.initializers.zeros, ('embed',)), (d,))
    x = x @ jnp.asarray(fc1, self.dtype) + jnp.asarray(b1, self.dtype)
    x = nn.with_logical_constraint(x, ('act_batch', 'act_tokens', 'act_mlp'))
    x = jax.nn.gelu(x, approximate=False)  # the official nn.GELU() is the exact erf form
    x = x @ jnp.asarray(fc2, self.dtype) + jnp.asarray(b2, self.dtype)
    return nn.Dropout(self.drop_rate)(x, deterministic=deterministic)


def layer_norm(eps: float, dtype, name: str) -> nn.LayerNorm:
  # use_fast_variance=False: E[(x-μ)²] as torch does; the fast E[x²]-μ² form costs ~1e-6 of parity.
  return nn.LayerNorm(epsilon=eps, dtype=dtype, use_fast_variance=False, name=name,
                      scale_init=logical(nn.initializers.ones, ('embed',)),
                      bias_init=logical(nn.initializers.zeros, ('embed',)))


class Block(nn.Module):
  """Pre-norm transformer block: x + DropPath(attn(LN(x))), then x + DropPath(mlp(LN(x))). No layer scale."""
  dim: int
  num_heads: int
  mlp_hidden_dim: int
  qkv_bias: bool
  drop_rate: float
  attn_drop_rate: float
  use_drop_path: bool
  norm_eps: float
  impl: str
  dtype: Any
  kernel_init: Any

  @nn.compact
  def __call__(self, x: Array, drop_path_rate: Array, deterministic: bool):
    drop_path = DropPath() if self.use_drop_path else (lambda y, r, d: y)
    y = layer_norm(self.norm_eps, self.dtype, 'norm1')(x)
    y = Attention(self.dim, self.num_heads, self.qkv_bias, self.attn_drop_rate, self.drop_rate, self.impl,
                  self.dtype, self.kernel_init, name='attn')(y, deterministic)
    x = x + drop_path(y, drop_path_rate, deterministic)
    y = layer_norm(self.norm_eps, self.dtype, 'norm2')(x)
    y = Mlp(self.mlp_hidden_dim, self.drop_rate, self.dtype, self.kernel_init, name='mlp')(y, deterministic)
    x = x + drop_path(y, drop_path_rate, deterministic)
    x = nn.with_logical_constraint(x, ('act_batch', 'act_tokens', 'act_embed'))
    return x, None


def remat_policy(name: str):
  return None if name == 'none' else getattr(jax.checkpoint_policies, name)


def block_stack(dim: int, depth: int, num_heads: int, mlp_hidden_dim: int, config: ModelConfig, dtype,
                kernel_init, name: str = 'blocks'):
  """`depth` blocks as one `nn.scan` over (optionally) `nn.remat(Block)`: compile time stays flat in depth.

  Call it inside a compact method; the result is called as `stack(x, deterministic)`. Every parameter gains a
  leading `layers` axis. Drop-path rates `linspace(0, drop_path_rate, depth)` are a scanned input, so each layer
  keeps its own rate.
  """
  block = Block
  if config.remat_policy != 'none':
    # static_argnums counts self as 0: (x=1, drop_path_rate=2, deterministic=3).
    block = nn.remat(Block, prevent_cse=False, static_argnums=(3,), policy=remat_policy(config.remat_policy))
  scanned = nn.scan(block, variable_axes={'params': 0}, split_rngs={'params': True, 'dropout': True},
                    in_axes=(0, nn.broadcast), length=depth, metadata_params={nn.PARTITION_NAME: 'layers'})
  stack = scanned(dim, num_heads, mlp_hidden_dim, config.qkv_bias, config.drop_rate, config.attn_drop_rate,
                  config.drop_path_rate > 0, config.norm_eps, attention.resolve(config.attention, dtype), dtype,
                  kernel_init, name=name)
  rates = jnp.asarray(np.linspace(0.0, config.drop_path_rate, depth), jnp.float32)

  def apply(x: Array, deterministic: bool) -> Array:
    return stack(x, rates, deterministic)[0]
  return apply


class CubeEmbed(nn.Module):
  """Conv3d with kernel = stride = (tubelet, p, p), written as patchify + one matmul (identical arithmetic).

  Kernel (tubelet, p, p, C, D) is the Flax NDHWC conv layout: torch (D, C, t, p, p).transpose(2, 3, 4, 1, 0).
  """
  embed_dim: int
  patch_size: int
  tubelet_size: int
  dtype: Any

  @nn.compact
  def __call__(self, video: Array) -> Array:
    t, p = self.tubelet_size, self.patch_size
    c = video.shape[-1]
    fan_in = c * t * p * p
    kernel = self.param('kernel', logical(nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform',
                                                                           in_axis=(0, 1, 2, 3), out_axis=4),
                                          (None, None, None, None, 'embed')), (t, p, p, c, self.embed_dim))
    bias = self.param('bias', logical(torch_default_bias(fan_in), ('embed',)), (self.embed_dim,))
    patches = einops.rearrange(video, 'b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)', pt=t, ph=p, pw=p)
    kernel = jnp.asarray(kernel, self.dtype).reshape(fan_in, self.embed_dim)
    return patches.astype(self.dtype) @ kernel + jnp.asarray(bias, self.dtype)


class VideoViT(nn.Module):
  """Cube embedding + fixed sinusoid positions + block stack (+ final LayerNorm when `final_norm`).

  `visible_idx` (B, K) keeps only those tokens (ascending, from the host mask) before the blocks: the MAE encoder
  never sees masked tokens.
  """
  config: ModelConfig
  final_norm: bool
  kernel_init: Any

  @nn.compact
  def __call__(self, video: Array, visible_idx: Array | None = None, deterministic: bool = True) -> Array:
    c = self.config
    dtype = compute_dtype(c)
    if video.ndim != 5 or video.shape[-1] != c.in_chans:
      raise ValueError(f'video must be (B, T, H, W, {c.in_chans}) channels-last; got shape {video.shape}')
    t, h, w = grid_for(video.shape[1], video.shape[2], video.shape[3], c.tubelet_size, c.patch_size)
    x = CubeEmbed(c.embed_dim, c.patch_size, c.tubelet_size, dtype, name='patch_embed')(video)
    x = x + jnp.asarray(sinusoid_table(t * h * w, c.embed_dim), dtype)[None]
    if visible_idx is not None:
      x = gather_tokens(x, visible_idx)
    x = nn.Dropout(c.drop_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ('act_batch', 'act_tokens', 'act_embed'))
    x = block_stack(c.embed_dim, c.depth, c.num_heads, c.mlp_hidden_dim, c, dtype, self.kernel_init)(
        x, deterministic)
    if self.final_norm:
      x = layer_norm(c.norm_eps, dtype, 'norm')(x)
    return x


__all__ = ['sinusoid_table', 'VideoViT', 'block_stack', 'Block', 'CubeEmbed', 'gather_tokens', 'XAVIER_UNIFORM',
           'TRUNC_NORMAL_02', 'TORCH_DEFAULT', 'torch_default_bias', 'layer_norm', 'compute_dtype']
