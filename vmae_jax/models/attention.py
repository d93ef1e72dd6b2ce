"""Scaled dot-product attention: the one entry every model uses (video ViT, CLIP, UniFormerV2, EVL).

Inputs are (batch, tokens, heads, head_dim); the scale is head_dim^-0.5, applied to q before the product, as in the
official VideoMAE and CLIP code. Implementations (ModelConfig.attention):

  einsum  q·kᵀ, softmax in float32, ·v, written out. The only path with dropout on the attention probabilities;
          on CPU it measured faster than XLA's fused attention (BENCHMARKS.md, "Attention implementation on CPU").
  xla     `jax.nn.dot_product_attention(implementation='xla')`.
  cudnn   `jax.nn.dot_product_attention(implementation='cudnn')`: cuDNN flash attention, fp16/bf16 on GPU only.
  auto    cudnn on GPU in half precision, einsum everywhere else (`resolve`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
IMPLS = ('auto', 'einsum', 'xla', 'cudnn')


def resolve(impl: str, dtype) -> str:
  """The implementation 'auto' stands for on this backend and dtype; any other name is returned as is."""
  if impl != 'auto':
    return impl
  if jax.default_backend() == 'gpu' and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16):
    return 'cudnn'
  return 'einsum'


def attend(q: Array, k: Array, v: Array, impl: str, dtype,
           probs_dropout: Callable[[Array], Array] | None = None) -> Array:
  """softmax(q·kᵀ/√d)·v, output (batch, q tokens, heads, head_dim) in `dtype`. `impl` is a resolved name.
  `probs_dropout` (applied to the probabilities) forces the einsum path: the fused kernels have no such hook."""
  scale = q.shape[-1] ** -0.5
  if impl == 'einsum' or probs_dropout is not None:
    logits = jnp.einsum('bqhk,bshk->bhqs', q * scale, k)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(dtype)
    if probs_dropout is not None:
      probs = probs_dropout(probs)
    return jnp.einsum('bhqs,bshk->bqhk', probs, v)
  return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=impl)
