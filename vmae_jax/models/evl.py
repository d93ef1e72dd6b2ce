"""EVL: a frozen CLIP image encoder and a light decoder over its last N blocks (docs/fidelity.md, "Adapters";
OpenGVLab/efficient-video-recognition model.py).

    frames → CLIP blocks; the last N (= decoder_depth) blocks give their outputs F_i and attention q_i, k_i
    query = cls_token (zeros); for each decoder layer i:
      F = F_i + temporal_conv_i(F_i) + temporal_pos_embed_i + TCA_i(q_i, k_i)        # (B, T, L, C)
      query = query + attn(norm1(query), norm3(F as T·L tokens, t-major))
      query = query + fc2(dropout(QuickGELU(fc1(norm2(query)))))
    logits = head(dropout(LN(query)))

TCA (temporal cross-attention): frame t's patch queries attend (softmax per head, then mean over heads) to frame
t−1's (weights w1) and t+1's (w2) patch keys; each probability scales a learned C-vector picked by the 2-D offset
between query and key patch. Computed in the offset-binned form: the probabilities are gathered into
(P, (2h−1)(2w−1)) offset bins and multiplied by w (no (P, P, C) tensor). w1, w2, the positional table and the query
token start at zero; the decoder has no zero-init outputs, so it is not the identity at init.

Frozen (`freeze_backbone`, the default for EVL): the backbone's outputs pass through stop_gradient, so no backward
pass runs through it; the optimizer masks its parameters out (optim.adamw(frozen=...)), so they carry no state and
stay bit-identical.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax.models import attention
from vmae_jax.models.clip import ClipMlp, ClipVisionEncoder, clip_layer_norm, quick_gelu
from vmae_jax.models.config import ModelConfig
from vmae_jax.models.uniformerv2 import TORCH_CONV_INIT, temporal_depthwise
from vmae_jax.models.vit import compute_dtype, logical, torch_default_bias

Array = jax.Array


def offset_bins(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  """For each query patch q and 2-D offset bin r = (qi−ki+h−1)(2w−1) + (qj−kj+w−1): the key patch k (clamped)
  and whether it lies on the grid. Shapes (P, (2h−1)(2w−1))."""
  qi, qj = np.divmod(np.arange(h * w), w)
  di, dj = np.divmod(np.arange((2 * h - 1) * (2 * w - 1)), 2 * w - 1)
  ki = qi[:, None] - (di[None] - (h - 1))
  kj = qj[:, None] - (dj[None] - (w - 1))
  valid = (ki >= 0) & (ki < h) & (kj >= 0) & (kj < w)
  key = np.where(valid, ki * w + kj, 0)
  return key.astype(np.int32), valid


class TemporalCrossAttention(nn.Module):
  grid: tuple[int, int]
  dim: int
  dtype: object

  def half(self, q: Array, k: Array, table: Array) -> Array:
    """q, k (B, T*, P, H, Dh) of the patch tokens → (B, T*, P, C)."""
    logits = jnp.einsum('btqhd,btkhd->bthqk', q * q.shape[-1] ** -0.5, k).astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1).mean(axis=2)                      # (B, T*, P, P)
    key, valid = offset_bins(*self.grid)
    binned = jnp.take_along_axis(probs, jnp.asarray(key)[None, None], axis=-1) * jnp.asarray(valid, probs.dtype)
    return (binned.astype(self.dtype) @ jnp.asarray(table, self.dtype))

  @nn.compact
  def __call__(self, q: Array, k: Array) -> Array:
    """q, k (B, T, L, H, Dh) → (B, T, L, C); the class-token rows are zero."""
    h, w = self.grid
    bins = (2 * h - 1) * (2 * w - 1)
    w1 = self.param('w1', logical(nn.initializers.zeros, (None, 'embed')), (bins, self.dim))
    w2 = self.param('w2', logical(nn.initializers.zeros, (None, 'embed')), (bins, self.dim))
    q, k = q[:, :, 1:], k[:, :, 1:]
    prev = self.half(q[:, 1:], k[:, :-1], w1)     # frame t reads frame t−1
    nxt = self.half(q[:, :-1], k[:, 1:], w2)      # frame t reads frame t+1
    ret = jnp.pad(prev, ((0, 0), (1, 0), (0, 0), (0, 0))) + jnp.pad(nxt, ((0, 0), (0, 1), (0, 0), (0, 0)))
    return jnp.pad(ret, ((0, 0), (0, 0), (1, 0), (0, 0)))


class DecoderLayer(nn.Module):
  """query + attn(norm1(query), norm3(memory)), then query + mlp(norm2(query)); xavier weights, zero attn biases,
  MLP biases normal(1e-6), as EVL initialises them."""
  config: ModelConfig

  @nn.compact
  def __call__(self, query: Array, memory: Array, deterministic: bool) -> Array:
    c = self.config
    dtype = compute_dtype(c)
    d, e, h = c.embed_dim, c.decoder_embed_dim, c.decoder_num_heads
    hd = e // h
    xavier = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform', in_axis=0, out_axis=(1, 2))
    kernels = {n: jnp.asarray(self.param(f'{n}_kernel', logical(xavier, ('embed', 'heads', 'kv')), (d, h, hd)), dtype)
               for n in ('q', 'k', 'v')}
    biases = {n: jnp.asarray(self.param(f'{n}_bias', logical(nn.initializers.zeros, ('heads', 'kv')), (h, hd)), dtype)
              for n in ('q', 'k', 'v')}
    qn = clip_layer_norm(c.norm_eps, dtype, 'norm1')(query)
    mn = clip_layer_norm(c.norm_eps, dtype, 'norm3')(memory)
    q = jnp.einsum('bnd,dhk->bnhk', qn, kernels['q']) + biases['q']
    k = jnp.einsum('bnd,dhk->bnhk', mn, kernels['k']) + biases['k']
    v = jnp.einsum('bnd,dhk->bnhk', mn, kernels['v']) + biases['v']
    out = attention.attend(q, k, v, attention.resolve(c.attention, dtype), dtype)
    out_kernel = self.param('out_kernel', logical(nn.initializers.variance_scaling(
        1.0, 'fan_avg', 'uniform', in_axis=(0, 1), out_axis=2), ('heads', 'kv', 'embed')), (h, hd, d))
    out_bias = self.param('out_bias', logical(nn.initializers.zeros, ('embed',)), (d,))
    query = query + jnp.einsum('bnhk,hkd->bnd', out, jnp.asarray(out_kernel, dtype)) + jnp.asarray(out_bias, dtype)
    mlp = EvlMlp(int(round(c.mlp_ratio * d)), dtype, c.decoder_drop_rate, name='mlp')
    return query + mlp(clip_layer_norm(c.norm_eps, dtype, 'norm2')(query), deterministic)


class EvlMlp(ClipMlp):
  """ClipMlp with EVL's init: xavier kernels, biases normal(1e-6)."""

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    d = x.shape[-1]
    xavier, tiny = nn.initializers.xavier_uniform(), nn.initializers.normal(1e-6)
    fc1 = self.param('fc1_kernel', logical(xavier, ('embed', 'mlp')), (d, self.hidden_dim))
    b1 = self.param('fc1_bias', logical(tiny, ('mlp',)), (self.hidden_dim,))
    fc2 = self.param('fc2_kernel', logical(xavier, ('mlp', 'embed')), (self.hidden_dim, d))
    b2 = self.param('fc2_bias', logical(tiny, ('embed',)), (d,))
    x = quick_gelu(x @ jnp.asarray(fc1, self.dtype) + jnp.asarray(b1, self.dtype))
    x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
    return x @ jnp.asarray(fc2, self.dtype) + jnp.asarray(b2, self.dtype)


class EVL(nn.Module):
  config: ModelConfig

  def setup(self):
    c = self.config
    dtype = compute_dtype(c)
    n, side = c.decoder_depth, c.img_size // c.patch_size
    self.backbone = ClipVisionEncoder(c)
    self.cls_token = self.param('cls_token', logical(nn.initializers.zeros, ('embed',)), (c.embed_dim,))
    self.temporal_conv_kernel = [self.param(f'temporal_conv_kernel_{i}', logical(TORCH_CONV_INIT(0, 1),
                                                                                 (None, 'embed')), (3, c.embed_dim))
                                 for i in range(n)]
    self.temporal_conv_bias = [self.param(f'temporal_conv_bias_{i}', logical(torch_default_bias(3), ('embed',)),
                                          (c.embed_dim,)) for i in range(n)]
    self.temporal_pos_embed = [self.param(f'temporal_pos_embed_{i}', logical(nn.initializers.zeros,
                                                                             (None, 'embed')),
                                          (c.num_frames, c.embed_dim)) for i in range(n)]
    self.cross_attention = [TemporalCrossAttention((side, side), c.embed_dim, dtype) for _ in range(n)]
    self.decoder_layers = [DecoderLayer(c) for _ in range(n)]
    self.head_norm = clip_layer_norm(c.norm_eps, dtype)
    self.head_dropout = nn.Dropout(c.head_drop_rate)
    if c.num_classes > 0:
      self.head_kernel = self.param('head_kernel', logical(TORCH_CONV_INIT(0, 1), ('embed', 'classes')),
                                    (c.embed_dim, c.num_classes))
      self.head_bias = self.param('head_bias', logical(torch_default_bias(c.embed_dim), ('classes',)), (c.num_classes,))

  def backbone_features(self, video: Array, deterministic: bool) -> list[tuple[Array, Array, Array]]:
    """(out, q, k) of the last `decoder_depth` blocks, each (B, T, L, ...)."""
    c = self.config
    if video.shape[1] != c.num_frames:
      raise ValueError(f'{c.name or "evl"}: the temporal position tables hold {c.num_frames} frames (model '
                       f'config num_frames); got a clip of {video.shape[1]}')
    b = video.shape[0]
    x, t = self.backbone.stem(video)
    feats = []
    for i in range(c.depth):
      x, q, k = self.backbone.run_block(i, x, t, deterministic)
      if i >= c.depth - c.decoder_depth:
        feats.append(tuple(a.reshape(b, t, *a.shape[1:]) for a in (x, q, k)))
    if c.freeze_backbone:
      feats = jax.lax.stop_gradient(feats)
    return feats

  def encode(self, video: Array, deterministic: bool = True) -> Array:
    """The decoded query token (B, C) before the head's LayerNorm."""
    c = self.config
    dtype = compute_dtype(c)
    feats = self.backbone_features(video, deterministic)
    b = video.shape[0]
    query = jnp.broadcast_to(jnp.asarray(self.cls_token, dtype), (b, 1, c.embed_dim))
    for i, (out, q, k) in enumerate(feats):
      f = out + temporal_depthwise(out, jnp.asarray(self.temporal_conv_kernel[i], dtype), axis=1) + \
          jnp.asarray(self.temporal_conv_bias[i], dtype)
      f = f + jnp.asarray(self.temporal_pos_embed[i], dtype)[None, :, None]
      f = f + self.cross_attention[i](q, k)
      query = self.decoder_layers[i](query, f.reshape(b, -1, c.embed_dim), deterministic)
    return query[:, 0]

  def __call__(self, video: Array, deterministic: bool = True) -> Array:
    x = self.head_dropout(self.head_norm(self.encode(video, deterministic)), deterministic=deterministic)
    if self.config.num_classes == 0:
      return x
    dtype = compute_dtype(self.config)
    return x @ jnp.asarray(self.head_kernel, dtype) + jnp.asarray(self.head_bias, dtype)


__all__ = ['EVL', 'TemporalCrossAttention', 'DecoderLayer', 'offset_bins']
