"""Logit distillation: a frozen teacher classifier's logits → a student (the V2 maintainers distilled the
K710-fine-tuned ViT-g into ViT-S/B; OpenGVLab/VideoMAEv2 has no code for it, see OpenGVLab/VideoMAEv2#61
and docs/fidelity.md, "Recipes").

loss = alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − alpha) · label loss, on the same augmented
clip for both. The teacher's parameters are a jit argument (never a compile-time constant) and sit under
stop_gradient: no gradient, no optimizer state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vmae_jax import models
from vmae_jax.models.config import ConfigError
from vmae_jax.parallel import sharding
from vmae_jax.tasks.classify import Classify, classification_loss
from vmae_jax.weights.initialize import restore_any


class Distill(Classify):

  def __init__(self, ctx):
    super().__init__(ctx)
    d = ctx.config.distill
    self.teacher_config, teacher_params = restore_any(d.teacher, d.teacher_step)
    if self.teacher_config.kind != 'classifier' or self.teacher_config.num_classes != ctx.model_config.num_classes:
      raise ConfigError(f'config field distill.teacher={d.teacher!r}: a {self.teacher_config.kind} with '
                        f'{self.teacher_config.num_classes} classes cannot teach a {ctx.model_config.num_classes}-'
                        'class student')
    self.teacher = models.build(self.teacher_config)
    # the teacher (a ViT-g) is sharded by the same rules as the student
    self._teacher_params = jax.device_put(
        teacher_params, sharding.tree_shardings(models.abstract_params(self.teacher_config), ctx.mesh))

  def frozen_inputs(self):
    return {'teacher': self._teacher_params}

  def loss(self, params, frozen, batch, rng):
    d = self.config.distill
    video = batch['video']
    student = self.logits(params, video, rng).astype(jnp.float32)
    teacher = jax.lax.stop_gradient(
        self.teacher.apply({'params': frozen['teacher']}, video, deterministic=True).astype(jnp.float32))
    t = d.temperature
    p_teacher = jax.nn.softmax(teacher / t, axis=-1)
    kl = jnp.sum(p_teacher * (jax.nn.log_softmax(teacher / t, -1) - jax.nn.log_softmax(student / t, -1)), -1)
    kd = (t * t) * kl.mean()
    label_loss, metrics = classification_loss(student, batch, self.ctx.model_config.num_classes,
                                              self.ctx.data_config.label_smoothing)
    agree = (jnp.argmax(student, -1) == jnp.argmax(teacher, -1)).astype(jnp.float32).mean()
    loss = d.alpha * kd + (1.0 - d.alpha) * label_loss
    return loss, {**metrics, 'train/kd': kd, 'train/teacher_agreement': 100.0 * agree}
