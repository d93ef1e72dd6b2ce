"""Masked-video pretraining: V1 (tube mask, loss on every masked token) or V2 dual masking (the decoder keeps half
its tokens, the loss counts kept tokens that were masked for the encoder), chosen by data.decoder_mask_type.

`init.checkpoint` continues pretraining from a checkpoint (converted official/HF weights, ours, or a training
workdir): encoder and fitting decoder parts from a pretraining model, the encoder alone from a classifier
(vmae_jax/weights/initialize.py, `init_pretrain`).

During training: the reconstruction loss on val clips, a kNN top-1 on frozen mean-pooled encoder features (a cheap
signal of representation quality) and a reconstruction picture, each every N steps.
"""
from __future__ import annotations

import functools
import os

import jax
import numpy as np

from vmae_jax import visualize
from vmae_jax.data import pipeline
from vmae_jax.models.target import gather_target, pixel_target, reconstruction_loss
from vmae_jax.parallel import device_batch, sharding
from vmae_jax.tasks import evaluation
from vmae_jax.tasks.base import Task
from vmae_jax.weights import initialize

VAL_SEED = 1234  # fixed masks and crops for the val loss, the same at every evaluation


class Pretrain(Task):
  pipeline_task = 'pretrain'
  batch_keys = ('video', 'visible_idx', 'pred_idx', 'loss_weight')

  def init_params(self, rng):
    if self.config.init.checkpoint:
      return initialize.init_pretrain_from_checkpoint(self.ctx, rng)
    return super().init_params(rng)

  def init_params_sharded(self, rng, shardings):
    if self.config.init.checkpoint:   # host arrays from the checkpoint, then each device takes its shards
      return jax.device_put(initialize.init_pretrain_from_checkpoint(self.ctx, rng), shardings)
    return super().init_params_sharded(rng, shardings)

  def _forward(self, params, batch, rng=None):
    c = self.ctx.model_config
    video = device_batch.normalize_on_device(batch['video'])
    rngs = {'dropout': rng} if rng is not None else {}
    pred = self.model.apply({'params': params}, video, batch['visible_idx'], batch['pred_idx'],
                            deterministic=rng is None, rngs=rngs)
    norm = self.config.pretrain.norm_target

    def per_example_target(video, pred_idx):   # patchify, per-patch normalise, keep the predicted tokens
      return gather_target(pixel_target(video, c.tubelet_size, c.patch_size, normalize=norm), pred_idx)
    labels = sharding.per_example(per_example_target)(video, batch['pred_idx'])
    # loss_weight is all ones without a decoder mask (V1), so one weighted mean serves V1 and V2
    loss = reconstruction_loss(pred, labels, batch['loss_weight'])
    return loss, pred

  def loss(self, params, frozen, batch, rng):
    loss, _ = self._forward(params, batch, rng)
    return loss, {}

  # --- evaluations -------------------------------------------------------------------------------------------
  @functools.cached_property
  def _val_batches(self):
    """Decoded once: the same clips, crops and masks at every evaluation."""
    cfg, p = self.config, self.config.pretrain
    local = max(cfg.eval.batch_size // jax.process_count(), 1)
    ds = pipeline.train_dataset(self.ctx.data_config, 'pretrain', local, VAL_SEED, split=cfg.eval.split,
                                error_dir=self.ctx.workdir)
    it = iter(ds)
    return [next(it) for _ in range(p.val_batches)]

  @functools.cached_property
  def _eval_forward(self):
    return jax.jit(lambda params, batch: self._forward(params, batch))

  def val_loss(self, params) -> tuple[float, dict]:
    losses, first = [], None
    for batch in self._val_batches:
      g = device_batch.global_batch({k: batch[k] for k in self.batch_keys}, self.ctx.mesh)
      loss, pred = self._eval_forward(params, g)
      losses.append(float(loss))
      if first is None:
        first = (batch, pred)
    return float(np.mean(losses)), first

  @functools.cached_property
  def _features(self):
    mean_tokens = lambda params, video: self.model.apply({'params': params}, video, method=self.model.encode).mean(1)
    return jax.jit(evaluation.normalized_features(mean_tokens))

  def knn(self, params) -> float:
    cfg, p = self.config, self.config.pretrain
    kw = dict(num_classes=None, error_dir=self.ctx.workdir)
    bank, bank_labels = evaluation.features(self._features, params, self.ctx.data_config, 'train', cfg.eval.batch_size,
                                            self.ctx.mesh, max_videos=p.knn_bank_videos, **kw)
    query, query_labels = evaluation.features(self._features, params, self.ctx.data_config, cfg.eval.split,
                                              cfg.eval.batch_size, self.ctx.mesh, max_videos=cfg.eval.max_videos,
                                              **kw)
    return evaluation.knn_top1(bank, bank_labels, query, query_labels, p.knn_k, p.knn_temperature)

  def picture(self, step: int, first, writer, name: str | None = None) -> None:
    batch, pred = first
    c = self.ctx.model_config
    local_pred = np.asarray(jax.device_get(pred.addressable_shards[0].data))
    rows = visualize.reconstruction_rows(batch['video'][0], batch['visible_idx'][0], batch['pred_idx'][0],
                                         local_pred[0], c.tubelet_size, c.patch_size,
                                         normalized=self.config.pretrain.norm_target)
    image = visualize.figure(rows)
    if jax.process_index() == 0:
      folder = os.path.join(self.ctx.workdir, 'pictures')
      os.makedirs(folder, exist_ok=True)
      visualize.save_png(image, os.path.join(folder, f'reconstruction_{name or f"{step:07d}"}.png'))
      writer.image(step, 'reconstruction', image)

  def _due(self, step: int, every: int) -> bool:
    return every > 0 and step % every == 0

  def periodic(self, step, params, writer):
    cfg, p = self.config, self.config.pretrain
    out = {}
    want_val = self._due(step, cfg.eval.every_steps)
    want_picture = self._due(step, p.picture_every_steps)
    if want_val or want_picture:
      loss, first = self.val_loss(params)
      if want_val:
        out['val/loss'] = loss
      if want_picture:
        self.picture(step, first, writer)
    if self._due(step, p.knn_every_steps):
      out['val/knn_top1'] = self.knn(params)
    return out

  def final(self, params, writer, step: int):
    p = self.config.pretrain
    loss, first = self.val_loss(params)
    out = {'val/loss': loss}
    if p.picture_every_steps > 0:
      self.picture(step, first, writer, name='final')
    if p.knn_every_steps > 0:
      out['val/knn_top1'] = self.knn(params)
    return out
