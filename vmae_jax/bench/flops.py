"""Model FLOPs per clip: the analytic count behind the benchmark's TFLOP/s and MFU figures.

Matmul FLOPs only, a multiply-add counted as 2. For a transformer block over n tokens of width d with MLP hidden m:

    block(n, d, m) = 2·n·(4·d² + 2·d·m)  +  4·n²·d
                     qkv (3d²), out-proj (d²),   QKᵀ (2n²d) and probs·V (2n²d)
                     fc1 + fc2 (2dm)

Forward pass of one clip (N tokens in the clip, K = C·t·p² pixels per token):

  * cube embedding   2·N·K·D, on every token: both our encoder and HF/official code embed the whole clip and then
                     keep the visible tokens;
  * encoder          depth × block(n_enc, D, M): n_enc = the visible tokens (pretraining) or all N (classifier);
  * pretraining:     encoder_to_decoder 2·n_enc·D·D_dec, decoder depth_dec × block(n_enc + n_pred, D_dec, M_dec)
                     (the decoder runs on its own tokens: the visible ones plus one mask token per predicted token),
                     pixel head 2·n_pred·D_dec·K on the predicted tokens only;
  * classifier:      head 2·D·classes (after mean pooling: one vector per clip).

A training step counts 3× the forward (the usual fwd + 2× for the backward's input and weight gradients; the cube
embedding's input gradient is never computed, so this over-counts it by one third, kept for the convention). Model
FLOPs, not hardware FLOPs: remat recomputation, LayerNorm, softmax, GELU, the loss and the optimizer update are not
counted, so MFU compares implementations doing the same model work.

The hand-counted table of docs/fidelity.md ("FLOPs") also gives the train figure without the cube embedding (blocks,
encoder_to_decoder and the pixel head); `gflops_without_embedding` is that subtotal.
"""
from __future__ import annotations

from typing import Any

from vmae_jax.models.config import ModelConfig

TRAIN_FACTOR = 3


def block_flops(n: int, d: int, m: int) -> int:
  """Forward matmul FLOPs of one pre-norm transformer block over n tokens (width d, MLP hidden m)."""
  return 2 * n * (4 * d * d + 2 * d * m) + 4 * n * n * d


def forward_flops(config: ModelConfig, num_encoder_tokens: int | None = None, num_pred: int = 0) -> dict[str, int]:
  """Per-clip forward FLOPs by component (see the module docstring), plus 'total'.

  Pretraining models need `num_encoder_tokens` (visible tokens) and `num_pred` (tokens the decoder predicts);
  classifiers run the encoder on every token.
  """
  c = config
  n_all = c.num_tokens
  pixels = c.in_chans * c.tubelet_size * c.patch_size ** 2
  parts = {'patch_embed': 2 * n_all * pixels * c.embed_dim}
  if c.kind == 'pretrain':
    if num_encoder_tokens is None or num_pred <= 0:
      raise ValueError(f'{c.name or "pretrain model"}: forward_flops needs num_encoder_tokens and num_pred > 0 '
                       f'(got {num_encoder_tokens}, {num_pred})')
    n_enc = num_encoder_tokens
    parts['encoder'] = c.depth * block_flops(n_enc, c.embed_dim, c.mlp_hidden_dim)
    parts['encoder_to_decoder'] = 2 * n_enc * c.embed_dim * c.decoder_embed_dim
    parts['decoder'] = c.decoder_depth * block_flops(n_enc + num_pred, c.decoder_embed_dim, c.decoder_mlp_hidden_dim)
    parts['pixel_head'] = 2 * num_pred * c.decoder_embed_dim * pixels
  else:
    n_enc = n_all if num_encoder_tokens is None else num_encoder_tokens
    parts['encoder'] = c.depth * block_flops(n_enc, c.embed_dim, c.mlp_hidden_dim)
    parts['head'] = 2 * c.embed_dim * c.num_classes
  parts['total'] = sum(parts.values())
  return parts


def train_flops(config: ModelConfig, num_encoder_tokens: int | None = None, num_pred: int = 0) -> int:
  """Model FLOPs of one training step per clip: 3 × forward."""
  return TRAIN_FACTOR * forward_flops(config, num_encoder_tokens, num_pred)['total']


def gflops_without_embedding(config: ModelConfig, num_encoder_tokens: int, num_pred: int) -> float:
  """Train GFLOP/clip without the cube embedding (the subtotal docs/fidelity.md quotes beside the total)."""
  parts = forward_flops(config, num_encoder_tokens, num_pred)
  return TRAIN_FACTOR * (parts['total'] - parts['patch_embed']) / 1e9


def summary(config: ModelConfig, num_encoder_tokens: int | None, num_pred: int) -> dict[str, Any]:
  parts = forward_flops(config, num_encoder_tokens, num_pred)
  return {'forward_gflop_per_clip': parts['total'] / 1e9, 'train_gflop_per_clip': TRAIN_FACTOR * parts['total'] / 1e9,
          'forward_gflop_parts': {k: v / 1e9 for k, v in parts.items() if k != 'total'}}
