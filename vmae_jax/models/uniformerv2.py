"""UniFormerV2: a CLIP image ViT armed with local and global UniBlocks (docs/fidelity.md, "Adapters";
OpenGVLab/UniFormerV2 slowfast/models/uniformerv2_model.py).

    video (B, T, H, W, 3) → conv1 (kernel (kT, p, p), stride (2 if temporal_downsample else 1, p, p)) per frame
      → class token + positions + ln_pre → blocks; block i:
          [local UniBlock on the patch tokens] → attention → [second local UniBlock] → MLP
        after each of the last `decoder_depth` blocks: DPE (depthwise 3×3×3 conv on a copy of the patch tokens)
          → the global UniBlock `dec_j` updates one learnable query by cross-attention over all frames' tokens
      → logits = head(LN((1 − σ(balance))·query + σ(balance)·mean_t(class token of the last block)))

Zero-inits (so the model starts as the image model): each local UniBlock's last 1×1×1 conv, each global block's
attention out-projection and MLP c_proj, the query token, `balance` (σ = 0.5) and the DPE bias. Consequences
(tested): with local branches the backbone stream equals plain CLIP's; the query stays exactly 0 through every
global block, so the logits are head(LN(0.5·mean_t CLS_last)).

BatchNorm statistics of the local UniBlocks live in the `batch_stats` collection: batch statistics and a running
update (momentum 0.1 in torch terms) when `deterministic=False` (call with mutable=['batch_stats']), the running
statistics otherwise. The original computes them per GPU; under jit the sharded batch is one array, so here they
are the statistics of the whole global batch (the running variance uses the biased batch variance, Flax's rule;
torch's running update uses the unbiased one).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax.models import attention
from vmae_jax.models.clip import (
  LINEAR_INIT,
  ClipBlock,
  ClipMlp,
  ClipVisionEncoder,
  clip_layer_norm,
  no_drop_path,
)
from vmae_jax.models.config import ModelConfig
from vmae_jax.models.vit import DropPath, compute_dtype, logical, torch_default_bias

Array = jax.Array
TORCH_CONV_INIT = lambda in_axis, out_axis: nn.initializers.variance_scaling(  # noqa: E731
    1 / 3, 'fan_in', 'uniform', in_axis=in_axis, out_axis=out_axis)


class LocalUniBlock(nn.Module):
  """BatchNorm3d → 1×1×1 conv (C→r) → depthwise temporal conv (3,1,1) → 1×1×1 conv (r→C, zero-init).

  Input and output (N, T', h, w, C); no activation inside, as in the original `Local_MHRA`.
  """
  dim: int
  width: int
  dtype: object

  @nn.compact
  def __call__(self, z: Array, deterministic: bool) -> Array:
    z = nn.BatchNorm(use_running_average=deterministic, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                     scale_init=logical(nn.initializers.ones, ('embed',)),
                     bias_init=logical(nn.initializers.zeros, ('embed',)), name='bn')(z)
    r = self.width
    k1 = self.param('reduce_kernel', logical(LINEAR_INIT, ('embed', 'mlp')), (self.dim, r))
    b1 = self.param('reduce_bias', logical(torch_default_bias(self.dim), ('mlp',)), (r,))
    z = z @ jnp.asarray(k1, self.dtype) + jnp.asarray(b1, self.dtype)
    # depthwise over time: fan_in 3 per channel → torch default bound 1/√3 for weight and bias
    kt = self.param('temporal_kernel', logical(TORCH_CONV_INIT(0, 1), (None, 'mlp')), (3, r))
    bt = self.param('temporal_bias', logical(torch_default_bias(3), ('mlp',)), (r,))
    z = temporal_depthwise(z, jnp.asarray(kt, self.dtype), axis=1) + jnp.asarray(bt, self.dtype)
    k2 = self.param('expand_kernel', logical(nn.initializers.zeros, ('mlp', 'embed')), (r, self.dim))
    b2 = self.param('expand_bias', logical(nn.initializers.zeros, ('embed',)), (self.dim,))
    return z @ jnp.asarray(k2, self.dtype) + jnp.asarray(b2, self.dtype)


def temporal_depthwise(x: Array, kernel: Array, axis: int) -> Array:
  """Cross-correlation along `axis` with a (3, C) per-channel kernel and zero padding 1 (torch Conv, groups=C)."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  xp = jnp.pad(x, pad)
  n = x.shape[axis]
  return sum(jax.lax.slice_in_dim(xp, j, j + n, axis=axis) * kernel[j] for j in range(3))


class UniBlock(ClipBlock):
  """A CLIP block with the local UniBlock(s) on the patch tokens before attention (and before the MLP)."""

  def setup(self):
    super().setup()
    c = self.config
    width = int(c.embed_dim // c.dw_reduction)
    if not c.no_lmhra:
      self.lmhra1 = LocalUniBlock(c.embed_dim, width, compute_dtype(c))
      if c.double_lmhra:
        self.lmhra2 = LocalUniBlock(c.embed_dim, width, compute_dtype(c))

  def local(self, branch, x: Array, num_frames: int, deterministic: bool) -> Array:
    """x (N·T', L, C), batch index n·T' + t, token index 1 + row·w + col; the class token is left alone."""
    nt, tokens, dim = x.shape
    side = int(round((tokens - 1) ** 0.5))
    z = x[:, 1:].reshape(nt // num_frames, num_frames, side, side, dim)
    z = z + self.drop_path(branch(z, deterministic), jnp.asarray(self.drop_path_rate, jnp.float32), deterministic)
    return jnp.concatenate([x[:, :1], z.reshape(nt, tokens - 1, dim)], axis=1)

  def __call__(self, x: Array, num_frames: int, deterministic: bool = True):
    c = self.config
    if not c.no_lmhra:
      x = self.local(self.lmhra1, x, num_frames, deterministic)
    y, q, k = self.attn(self.ln_1(x))
    x = self.residual(x, y, deterministic)
    if not c.no_lmhra and c.double_lmhra:
      x = self.local(self.lmhra2, x, num_frames, deterministic)
    x = self.residual(x, self.mlp(self.ln_2(x)), deterministic)
    return x, q, k


class Extractor(nn.Module):
  """Global UniBlock: the query (N, 1, C) cross-attends to kv (N, T'·L, C), then an MLP; both outputs zero-init."""
  dim: int
  num_heads: int
  mlp_hidden_dim: int
  drop_rate: float
  drop_path_rate: float
  norm_eps: float
  impl: str
  dtype: object

  @nn.compact
  def __call__(self, query: Array, kv: Array, deterministic: bool) -> Array:
    h, hd, d = self.num_heads, self.dim // self.num_heads, self.dim
    drop_path = DropPath() if self.drop_path_rate > 0 else no_drop_path
    rate = jnp.asarray(self.drop_path_rate, jnp.float32)
    # xavier_uniform over the whole fused (3C, C) in_proj_weight, as nn.MultiheadAttention does
    in_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform', in_axis=0, out_axis=(1, 2, 3))
    in_kernel = jnp.asarray(self.param('in_kernel', logical(in_init, ('embed', None, 'heads', 'kv')),
                                       (d, 3, h, hd)), self.dtype)
    in_bias = jnp.asarray(self.param('in_bias', logical(nn.initializers.zeros, (None, 'heads', 'kv')), (3, h, hd)),
                          self.dtype)
    q_in = clip_layer_norm(self.norm_eps, self.dtype, 'ln_1')(query)
    kv_in = clip_layer_norm(self.norm_eps, self.dtype, 'ln_3')(kv)
    q = jnp.einsum('bnd,dhk->bnhk', q_in, in_kernel[:, 0]) + in_bias[0]
    k = jnp.einsum('bnd,dhk->bnhk', kv_in, in_kernel[:, 1]) + in_bias[1]
    v = jnp.einsum('bnd,dhk->bnhk', kv_in, in_kernel[:, 2]) + in_bias[2]
    out = attention.attend(q, k, v, self.impl, self.dtype)
    out_kernel = self.param('out_kernel', logical(nn.initializers.zeros, ('heads', 'kv', 'embed')), (h, hd, d))
    out_bias = self.param('out_bias', logical(nn.initializers.zeros, ('embed',)), (d,))
    out = jnp.einsum('bnhk,hkd->bnd', out, jnp.asarray(out_kernel, self.dtype)) + jnp.asarray(out_bias, self.dtype)
    query = query + drop_path(out, rate, deterministic)
    y = ClipMlp(self.mlp_hidden_dim, self.dtype, self.drop_rate, fc1_init=nn.initializers.xavier_uniform(),
                zero_out=True, name='mlp')(clip_layer_norm(self.norm_eps, self.dtype, 'ln_2')(query), deterministic)
    return query + drop_path(y, rate, deterministic)


def depthwise_conv3d(x: Array, kernel: Array, bias: Array) -> Array:
  """(N, T, h, w, C) depthwise 3×3×3 conv, zero padding 1, kernel (3, 3, 3, 1, C) (Flax layout, groups = C)."""
  out = jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1, 1), padding=((1, 1),) * 3,
                                     dimension_numbers=('NTHWC', 'THWIO', 'NTHWC'),
                                     feature_group_count=x.shape[-1])
  return out + bias


class UniFormerV2(nn.Module):
  config: ModelConfig

  def setup(self):
    c = self.config
    dtype = compute_dtype(c)
    self.backbone = ClipVisionEncoder(c, block=UniBlock, temporal_kernel=3 if c.temporal_downsample else 1)
    n = c.decoder_depth
    rates = np.linspace(0.0, c.decoder_drop_path_rate, n)
    self.dpe_kernel = [self.param(f'dpe_kernel_{j}', logical(TORCH_CONV_INIT((0, 1, 2, 3), 4),
                                                             (None, None, None, None, 'embed')),
                                  (3, 3, 3, 1, c.embed_dim)) for j in range(n)]
    self.dpe_bias = [self.param(f'dpe_bias_{j}', logical(nn.initializers.zeros, ('embed',)), (c.embed_dim,))
                     for j in range(n)]
    self.dec = [Extractor(c.decoder_embed_dim, c.decoder_num_heads, int(round(c.mlp_ratio * c.decoder_embed_dim)),
                          c.decoder_drop_rate, float(rates[j]), c.norm_eps, attention.resolve(c.attention, dtype),
                          dtype) for j in range(n)]
    self.temporal_cls_token = self.param('temporal_cls_token', logical(nn.initializers.zeros, (None, None, 'embed')),
                                         (1, 1, c.embed_dim))
    if not c.freeze_backbone:
      self.balance = self.param('balance', logical(nn.initializers.zeros, ('embed',)), (c.embed_dim,))
    self.head_norm = clip_layer_norm(c.norm_eps, dtype)
    self.head_dropout = nn.Dropout(c.head_drop_rate)
    if c.num_classes > 0:
      self.head_kernel = self.param('head_kernel', logical(TORCH_CONV_INIT(0, 1), ('embed', 'classes')),
                                    (c.embed_dim, c.num_classes))
      self.head_bias = self.param('head_bias', logical(torch_default_bias(c.embed_dim), ('classes',)), (c.num_classes,))

  def encode(self, video: Array, deterministic: bool = True) -> dict[str, Array]:
    """{'tokens': backbone tokens after the last block (B, T', L, C), 'query': the fused global query (B, C)}."""
    c = self.config
    dtype = compute_dtype(c)
    b = video.shape[0]
    x, t = self.backbone.stem(video)
    if c.freeze_backbone:
      x = jax.lax.stop_gradient(x)
    query = jnp.broadcast_to(jnp.asarray(self.temporal_cls_token, dtype), (b, 1, c.embed_dim))
    first_global = c.depth - c.decoder_depth
    for i in range(c.depth):
      x = self.backbone.run_block(i, x, t, deterministic)[0]
      if c.freeze_backbone:
        x = jax.lax.stop_gradient(x)
      if i >= first_global:
        j = i - first_global
        y = x.reshape(b, t, *x.shape[1:])                        # (B, T', L, C)
        side = int(round((y.shape[2] - 1) ** 0.5))
        patches = y[:, :, 1:].reshape(b, t, side, side, c.embed_dim)
        patches = patches + depthwise_conv3d(patches, jnp.asarray(self.dpe_kernel[j], dtype),
                                             jnp.asarray(self.dpe_bias[j], dtype))
        y = jnp.concatenate([y[:, :, :1], patches.reshape(b, t, side * side, c.embed_dim)], axis=2)
        query = self.dec[j](query, y.reshape(b, -1, c.embed_dim), deterministic)   # keys t-major, CLS included
    return {'tokens': x.reshape(b, t, *x.shape[1:]), 'query': query[:, 0]}

  def features(self, video: Array, deterministic: bool = True) -> Array:
    """The fused feature fed to the head's LayerNorm (B, C)."""
    out = self.encode(video, deterministic)
    if self.config.freeze_backbone:
      return out['query']
    weight = jax.nn.sigmoid(jnp.asarray(self.balance, out['query'].dtype))
    residual = out['tokens'][:, :, 0].mean(axis=1)   # the last block's class token, averaged over T'
    return (1 - weight) * out['query'] + weight * residual

  def __call__(self, video: Array, deterministic: bool = True) -> Array:
    x = self.head_dropout(self.head_norm(self.features(video, deterministic)), deterministic=deterministic)
    if self.config.num_classes == 0:
      return x
    dtype = compute_dtype(self.config)
    return x @ jnp.asarray(self.head_kernel, dtype) + jnp.asarray(self.head_bias, dtype)


__all__ = ['UniFormerV2', 'UniBlock', 'LocalUniBlock', 'Extractor', 'depthwise_conv3d', 'temporal_depthwise']
