"""Supervised classification: `finetune` (from a pretraining checkpoint, a classifier, or scratch) and
`postpretrain` (the same code on a labelled mix such as K710, V2's progressive-training stage 2; the official
repos have no separate code for it either). Soft-target cross-entropy on the Mixup/CutMix targets, or label
smoothing without them; single-view val every N steps (selects the best checkpoint); multi-view eval of the whole
split at the end, as the official scripts do.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from vmae_jax import models
from vmae_jax.tasks import evaluation
from vmae_jax.tasks.base import Task
from vmae_jax.weights import initialize


def classification_loss(logits, batch, num_classes: int, label_smoothing: float):
  logits = logits.astype(jnp.float32)
  if 'target' in batch:
    target = batch['target']
  else:
    target = optax.smooth_labels(jax.nn.one_hot(batch['label'], num_classes), label_smoothing)
  loss = optax.softmax_cross_entropy(logits, target).mean()
  top1 = (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32).mean()
  return loss, {'train/top1': 100.0 * top1}


class Classify(Task):
  pipeline_task = 'finetune'
  best_metric = 'val/top1'

  @property
  def batch_keys(self):
    d = self.ctx.data_config
    return ('video', 'label', 'target') if (d.mixup > 0 or d.cutmix > 0) else ('video', 'label')

  def init_params(self, rng):
    if self.config.init.checkpoint:
      return initialize.init_from_checkpoint(self.ctx, rng)
    return super().init_params(rng)

  def init_params_sharded(self, rng, shardings):
    if self.config.init.checkpoint:   # host arrays from the checkpoint, then each device takes its shards
      return jax.device_put(initialize.init_from_checkpoint(self.ctx, rng), shardings)
    return super().init_params_sharded(rng, shardings)

  @functools.cached_property
  def stateful(self) -> bool:
    """The model keeps BatchNorm statistics: evaluations get {'params', 'batch_stats'} instead of params."""
    return models.abstract_batch_stats(self.ctx.model_config) is not None

  def init_batch_stats(self):
    return initialize.init_batch_stats(self.ctx)

  def logits(self, params, video, rng=None):
    rngs = {'dropout': rng} if rng is not None else {}
    variables = params if self.stateful and rng is None else {'params': params}
    return self.model.apply(variables, video, deterministic=rng is None, rngs=rngs)

  def loss(self, params, frozen, batch, rng):
    if 'batch_stats' in frozen:   # train-mode BatchNorm: batch statistics, running update returned to the loop
      logits, updated = self.model.apply({'params': params, 'batch_stats': frozen['batch_stats']}, batch['video'],
                                         deterministic=False, rngs={'dropout': rng}, mutable=['batch_stats'])
      loss, aux = classification_loss(logits, batch, self.ctx.model_config.num_classes,
                                      self.ctx.data_config.label_smoothing)
      return loss, {**aux, 'batch_stats': updated['batch_stats']}
    logits = self.logits(params, batch['video'], rng)
    return classification_loss(logits, batch, self.ctx.model_config.num_classes,
                               self.ctx.data_config.label_smoothing)

  @functools.cached_property
  def _counts(self):
    """One compiled eval program for every evaluation of the run."""
    d = self.ctx.data_config
    return jax.jit(evaluation.classification_counts(lambda p, v: self.logits(p, v), tuple(d.mean), tuple(d.std)))

  def evaluate(self, params, multi_view: bool, max_videos: int = 0) -> dict:
    cfg = self.config
    return evaluation.classify_split(self._counts, params, self.ctx.data_config, cfg.eval.split,
                                     cfg.eval.batch_size, self.ctx.mesh, multi_view=multi_view,
                                     num_classes=self.ctx.model_config.num_classes, max_videos=max_videos,
                                     error_dir=self.ctx.workdir)

  def periodic(self, step, params, writer):
    every = self.config.eval.every_steps
    if every <= 0 or step % every:
      return {}
    r = self.evaluate(params, multi_view=False, max_videos=self.config.eval.max_videos)
    return {'val/top1': r['top1'], 'val/top5': r['top5'], 'val/loss': r['loss']}

  def final(self, params, writer, step: int):
    """One pass over the whole split: multi-view (the official test protocol) or single view."""
    d, multi_view = self.ctx.data_config, self.config.eval.final_multi_view
    r = self.evaluate(params, multi_view=multi_view)
    if jax.process_index() == 0:
      name = f'{d.test_num_segment}x{d.test_num_crop} views' if multi_view else 'single view'
      evaluation.print_table(f'{self.config.eval.split} split, {self.ctx.model_config.name}', {name: r})
    return {'eval/top1': r['top1'], 'eval/top5': r['top5'], 'eval/videos': r['videos'], 'eval/failed': r['failed']}
