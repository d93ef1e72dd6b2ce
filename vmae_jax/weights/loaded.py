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

from vmae_jax import models
from vmae_jax.models.config import HEAD_KINDS, ModelConfig
from vmae_jax.models.target import gather_target, pixel_target, reconstruction_loss
from vmae_jax.parallel import sharding
from vmae_jax.weights import checkpoint


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
  mesh: jax.sharding.Mesh | None = None   # set when the parameters are sharded over a mesh (load(mesh=...))

  @functools.cached_property
  def module(self) -> nn.Module:
    return models.build(self.config)

  def _check_video(self, video) -> jax.Array:
    video = jnp.asarray(video, jnp.float32)
    if video.ndim != 5 or video.shape[-1] != self.config.in_chans:
      raise ValueError(f'video must be float32 (B, T, H, W, {self.config.in_chans}); got shape {video.shape}')
    self.config.token_grid(*video.shape[1:4])  # divisibility check with a clear error
    return self._place(video)

  def _place(self, video: jax.Array) -> jax.Array:
    """On a mesh, split the batch over its batch axes when it divides evenly, else replicate it."""
    if self.mesh is None:
      return video
    ways = int(np.prod([self.mesh.shape[a] for a in sharding.BATCH_AXES]))
    target = sharding.batch_sharding(self.mesh) if video.shape[0] % ways == 0 else sharding.replicated(self.mesh)
    return jax.device_put(video, target)

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


def _target_shardings(boxed, shapes, mesh, device):
  """Where each parameter goes: NamedShardings from the logical axes on `mesh`, else one device (replicated)."""
  if mesh is not None:
    return sharding.tree_shardings(boxed, mesh)   # dims the mesh axes do not divide stay whole
  one = jax.sharding.SingleDeviceSharding(device or jax.devices()[0])
  return jax.tree_util.tree_map(lambda _: one, shapes)


def restore(path, step: int | None = None, device=None, mesh=None, dtype=None) -> tuple[ModelConfig, dict]:
  """(config, params) of the latest (or given) step.

  Placement: `mesh` (a `jax.sharding.Mesh` with the axes of `vmae_jax.parallel.sharding`) shards every parameter by its
  logical axes, whatever mesh wrote the checkpoint; without it all parameters go to `device` (default: the first).
  `dtype` casts the floating parameters as orbax reads them (the restored tree holds only the cast copy). Only the
  `params` item is read: optimizer state and iterator of a training workdir stay on disk. A dimension its mesh
  axes do not divide stays whole (`sharding.unsplit_dims` lists them).
  """
  cast = None if dtype is None else jnp.dtype(dtype)

  def abstract_for(config: ModelConfig):
    boxed = models.abstract_params(config)
    shapes = nn.unbox(boxed)

    def leaf(x, s):
      want = cast if cast is not None and jnp.issubdtype(x.dtype, jnp.floating) else x.dtype
      return jax.ShapeDtypeStruct(x.shape, want, sharding=s)
    return jax.tree_util.tree_map(leaf, shapes, _target_shardings(boxed, shapes, mesh, device))
  return checkpoint.restore(path, abstract_for, step)


def load(path, dtype=None, mesh=None, step: int | None = None) -> LoadedModel:
  """Restore the latest (or given) step of a checkpoint written by `convert` or by training, onto whatever devices
  exist: one device (default) or sharded over `mesh` (e.g. `vmae_jax.parallel.sharding.make_mesh((1, 4, 1))`).

  `dtype` ('bfloat16', 'float32', ...) sets the compute dtype and casts the floating parameters to it on restore
  (a bf16 ViT-g needs about 2 GB instead of 4 GB). Without it, parameters and compute stay float32.

  The files read are checked against the step's checksum manifest first (vmae_jax/weights/checkpoint.py): a file
  that is missing, truncated or changed raises CheckpointError naming it. A step without a manifest (written by
  an older version or by plain orbax) is read as it is.
  """
  config, params = restore(path, step, mesh=mesh, dtype=dtype)
  variables = {'params': params}
  stats = models.abstract_batch_stats(config)
  if stats is not None:   # UniFormerV2 with local UniBlocks: the running BatchNorm statistics (small: replicated)
    where = sharding.replicated(mesh) if mesh is not None else jax.sharding.SingleDeviceSharding(jax.devices()[0])
    stats = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=where), stats)
    restored = checkpoint.restore_batch_stats(path, stats, step)
    if restored is None:
      raise checkpoint.CheckpointError(f'{path}: a {config.kind} model with BatchNorm, but the checkpoint holds no '
                                       'batch_stats')
    variables['batch_stats'] = restored
  if dtype is not None:
    config = config.replace(dtype=jnp.dtype(dtype).name)
  return LoadedModel(config=config, variables=variables, mesh=mesh)
