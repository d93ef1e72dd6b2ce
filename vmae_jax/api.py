"""`vmae_jax.load(path)`: a restored checkpoint as a ready-to-call model for notebooks and scripts.

    m = vmae_jax.load('ckpt/vit_b_k400')
    logits = m.classify(video)             # video float32 (B, T, H, W, 3), already normalised
    tokens = m.encode(video)               # (B, N, D)
    out = m.reconstruct(video, encoder_mask, decoder_mask=None)   # {'pred', 'loss'}

No mean/std is applied inside: `video` is what the model eats (ImageNet-normalised RGB, channels last).
"""
from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax import checkpoint, models
from vmae_jax.models.config import HEAD_KINDS, ModelConfig
from vmae_jax.target import gather_target, pixel_target, reconstruction_loss


def masks_to_indices(mask: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(B, N) bool → (positions where False, positions where True), each (B, K) ascending; counts must be equal."""
  mask = np.asarray(mask, dtype=bool)
  if mask.ndim != 2:
    raise ValueError(f'{name} must be (B, N) bool, got shape {mask.shape}')
  counts = mask.sum(axis=1)
  if np.any(counts != counts[0]):
    raise ValueError(f'{name}: every row must mask the same number of tokens (static shapes); got {counts.tolist()}')
  order = np.argsort(mask, axis=1, kind='stable').astype(np.int32)  # False first, each group ascending
  keep = mask.shape[1] - int(counts[0])
  return order[:, :keep], order[:, keep:]


@dataclasses.dataclass
class LoadedModel:
  config: ModelConfig
  variables: dict

  @functools.cached_property
  def module(self) -> nn.Module:
    return models.build(self.config)

  def _check_video(self, video) -> jax.Array:
    video = jnp.asarray(video, jnp.float32)
    if video.ndim != 5 or video.shape[-1] != self.config.in_chans:
      raise ValueError(f'video must be float32 (B, T, H, W, {self.config.in_chans}); got shape {video.shape}')
    self.config.token_grid(*video.shape[1:4])  # divisibility check with a clear error
    return video

  @functools.cached_property
  def _encode(self):
    method = self.module.encode
    return jax.jit(lambda v, x: self.module.apply(v, x, method=method))

  @functools.cached_property
  def _classify(self):
    return jax.jit(lambda v, x: self.module.apply(v, x))

  @functools.cached_property
  def _predict(self):
    return jax.jit(lambda v, x, vis, pred: self.module.apply(v, x, vis, pred))

  def encode(self, video) -> jax.Array:
    """Last hidden state (B, N, D) over all tokens; after the final norm where the model has one."""
    return self._encode(self.variables, self._check_video(video))

  def classify(self, video) -> jax.Array:
    """Logits (B, num_classes)."""
    if self.config.kind not in HEAD_KINDS or self.config.num_classes == 0:
      raise ValueError(f'classify needs a classifier with a head; this checkpoint is a {self.config.kind} model '
                       f'with num_classes={self.config.num_classes}')
    return self._classify(self.variables, self._check_video(video))

  def reconstruct(self, video, encoder_mask, decoder_mask=None) -> dict[str, jax.Array]:
    """Pixel predictions and loss. Masks are bool (B, N): True = masked (encoder) / dropped (decoder).

    Without `decoder_mask` (V1): `pred` covers the encoder-masked tokens and the loss is their plain MSE. With it
    (V2): `pred` covers the decoder-kept tokens and the loss counts only those that were also encoder-masked.
    """
    if self.config.kind != 'pretrain':
      raise ValueError('reconstruct needs a pretraining checkpoint (with a decoder); this one is a classifier')
    video = self._check_video(video)
    c = self.config
    visible_idx, masked_idx = masks_to_indices(encoder_mask, 'encoder_mask')
    if visible_idx.shape[0] != video.shape[0]:
      raise ValueError(f'encoder_mask has {visible_idx.shape[0]} rows for a batch of {video.shape[0]}')
    if decoder_mask is None:
      pred_idx, weight = masked_idx, None
    else:
      pred_idx, _ = masks_to_indices(decoder_mask, 'decoder_mask')
      weight = jnp.asarray(np.take_along_axis(np.asarray(encoder_mask, bool), pred_idx, axis=1), jnp.float32)
    pred = self._predict(self.variables, video, jnp.asarray(visible_idx), jnp.asarray(pred_idx))
    labels = gather_target(pixel_target(video, c.tubelet_size, c.patch_size), jnp.asarray(pred_idx))
    return {'pred': pred, 'loss': reconstruction_loss(pred, labels, weight)}


def restore(path, step: int | None = None, device=None) -> tuple[ModelConfig, dict]:
  """(config, params) of the latest (or given) step, restored onto one device (default: the first)."""
  sharding = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])

  def abstract_for(config: ModelConfig):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                  nn.unbox(models.abstract_params(config)))
  return checkpoint.restore(path, abstract_for, step)


def load(path, dtype=None, step: int | None = None) -> LoadedModel:
  """Restore the latest (or given) step of a checkpoint written by `convert` or by training, on the default device.

  `dtype` ('bfloat16', 'float32', ...) sets the compute dtype; parameters are restored in float32.
  """
  config, params = restore(path, step)
  variables = {'params': params}
  stats = models.abstract_batch_stats(config)
  if stats is not None:   # UniFormerV2 with local UniBlocks: the running BatchNorm statistics
    restored = checkpoint.restore_batch_stats(path, stats, step)
    if restored is None:
      raise checkpoint.CheckpointError(f'{path}: a {config.kind} model with BatchNorm, but the checkpoint holds no '
                                       'batch_stats')
    variables['batch_stats'] = restored
  if dtype is not None:
    config = config.replace(dtype=jnp.dtype(dtype).name)
  return LoadedModel(config=config, variables=variables)
