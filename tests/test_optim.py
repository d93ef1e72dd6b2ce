"""Optimizer recipes: schedule values, weight-decay mask, layer-wise decay on scanned layers, accumulation."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vmae_jax import models
from vmae_jax.models.config import ModelConfig
from vmae_jax.train import optim


def test_scaled_lr_rule():
  assert optim.scaled_lr(6e-4, 2048) == pytest.approx(4.8e-3)  # V2 ViT-g pretraining
  assert optim.scaled_lr(1.5e-4, 1024) == pytest.approx(6e-4)    # V1 ViT-S pretraining


def test_schedule_is_the_official_table():
  peak, min_lr, total, warm = 1e-3, 1e-5, 100, 10
  table = optim.schedule_table(peak, min_lr, total, warm)
  assert len(table) == 100
  np.testing.assert_allclose(table[:10], np.linspace(0, peak, 10))  # from 0, its last value the peak
  assert table[0] == 0.0 and table[9] == peak and table[10] == peak
  for i in (10, 37, 99):
    k = i - 10
    assert table[i] == pytest.approx(min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * k / 90)))
  sched = optim.schedule(peak, min_lr, total, warm)
  assert float(sched(5)) == pytest.approx(table[5]) and float(sched(1000)) == pytest.approx(table[-1])
  with pytest.raises(ValueError, match='warmup_steps'):
    optim.schedule_table(peak, min_lr, 10, 20)


def test_weight_decay_mask():
  for name in ('pretrain_videomae_base_patch16_224', 'vit_base_patch16_224'):
    params = nn.unbox(models.abstract_params(models.get_config(name, num_classes=0)))
    mask = optim.decay_mask(params)
    flat = {'/'.join(str(getattr(k, 'key', k)) for k in p): v
            for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
    for path, decays in flat.items():
      leaf = path.split('/')[-1]
      assert decays == leaf.endswith('kernel') or leaf == 'encoder_to_decoder', path
    assert flat['encoder/blocks/attn/qkv_kernel'] and flat['encoder/patch_embed/kernel']
    assert not flat['encoder/blocks/attn/q_bias'] and not flat['encoder/blocks/norm1/scale']
    if 'mask_token' in flat:
      assert not flat['mask_token'] and flat['encoder_to_decoder']


def test_layer_decay_factors_on_scanned_vit_b():
  """decay^(L+1−layer_id) on the scanned blocks of ViT-B (docs/fidelity.md, "Recipes")."""
  params = nn.unbox(models.abstract_params(models.get_config('vit_base_patch16_224', num_classes=400)))
  f = optim.layer_decay_factors(params, depth=12, decay=0.75)
  assert float(f['encoder']['patch_embed']['kernel']) == pytest.approx(0.75 ** 13)  # 0.0238
  blocks = np.asarray(f['encoder']['blocks']['attn']['qkv_kernel']).reshape(-1)
  np.testing.assert_allclose(blocks, 0.75 ** (12 - np.arange(12)), rtol=1e-6)     # block 11 → ×0.75
  assert f['encoder']['blocks']['attn']['qkv_kernel'].shape == (12, 1, 1, 1, 1)
  assert float(f['head_kernel']) == 1.0 and float(f['fc_norm']['scale']) == 1.0


def _tiny():
  return ModelConfig(kind='classifier', img_size=16, patch_size=8, num_frames=2, embed_dim=32, depth=3,
                     num_heads=2, num_classes=4)


def _loss_fn(config, video, labels):
  model = models.build(config)

  def loss(params):
    logits = model.apply({'params': params}, video)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss


def test_layer_decay_equals_per_layer_adamw():
  c = _tiny()
  params = models.init_params(c, jax.random.key(0))
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.standard_normal((4, 2, 16, 16, 3)), jnp.float32)
  grads = jax.grad(_loss_fn(c, video, jnp.array([0, 1, 2, 3])))(params)
  tx, _ = optim.adamw(params, base_lr=1e-3, global_batch=256, total_steps=10, warmup_steps=0, min_lr=0.0,
                      layer_decay=0.5, depth=3, weight_decay=0.05)
  updates, _ = tx.update(grads, tx.init(params), params)
  # Block 0 (layer_id 1) must move like AdamW at lr·0.5^3, with the same decoupled weight decay.
  lr0 = 1e-3 * 0.5 ** 3
  ref = optax.adamw(lr0, weight_decay=0.05)
  leaf = params['encoder']['blocks']['mlp']['fc1_kernel'][0]
  g = grads['encoder']['blocks']['mlp']['fc1_kernel'][0]
  expected, _ = ref.update(g, ref.init(leaf), leaf)
  np.testing.assert_allclose(updates['encoder']['blocks']['mlp']['fc1_kernel'][0], expected, rtol=1e-5, atol=1e-9)


def test_layer_decay_with_a_frozen_part():
  """Layer decay and a frozen mask together (an adapter with freeze_backbone and a layer-decay recipe): the frozen
  part gets exactly zero updates and no optimizer state, the rest the same update as without any freezing."""
  c = _tiny()
  params = models.init_params(c, jax.random.key(0))
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.standard_normal((4, 2, 16, 16, 3)), jnp.float32)
  grads = jax.grad(_loss_fn(c, video, jnp.array([0, 1, 2, 3])))(params)
  frozen = {name: jax.tree_util.tree_map(lambda _: name == 'encoder', sub) for name, sub in params.items()}
  kwargs = dict(base_lr=1e-3, global_batch=256, total_steps=10, warmup_steps=0, min_lr=0.0, layer_decay=0.5, depth=3)
  tx, _ = optim.adamw(params, frozen=frozen, **kwargs)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert all(not np.any(u) for u in jax.tree_util.tree_leaves(updates['encoder']))
  free, _ = optim.adamw(params, **kwargs)
  expected, _ = free.update(grads, free.init(params), params)
  np.testing.assert_allclose(updates['head_kernel'], expected['head_kernel'], rtol=1e-6)


def test_accumulation_equals_the_large_batch():
  c = _tiny()
  params = models.init_params(c, jax.random.key(1))
  rng = np.random.default_rng(1)
  video = jnp.asarray(rng.standard_normal((8, 2, 16, 16, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 4, 8))
  # warmup 0: the official warmup starts at lr 0, so a first warmup step would not move anything.
  kw = dict(base_lr=1e-3, global_batch=8, total_steps=10, warmup_steps=0, clip_grad=1.0, layer_decay=0.75, depth=3)
  big_tx, _ = optim.adamw(params, **kw)
  g = jax.grad(_loss_fn(c, video, labels))(params)
  big_updates, _ = big_tx.update(g, big_tx.init(params), params)
  big = optax.apply_updates(params, big_updates)
  acc_tx, _ = optim.adamw(params, accumulate_steps=2, **kw)
  state = acc_tx.init(params)
  p = params
  for half in (slice(0, 4), slice(4, 8)):
    g = jax.grad(_loss_fn(c, video[half], labels[half]))(p)
    updates, state = acc_tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
  for a, b in zip(jax.tree_util.tree_leaves(big), jax.tree_util.tree_leaves(p)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(big),
                                                      jax.tree_util.tree_leaves(params)))


def test_clipping_and_ema():
  params = {'w_kernel': jnp.ones(4)}
  tx, _ = optim.adamw(params, base_lr=1.0, global_batch=256, total_steps=2, warmup_steps=0, clip_grad=0.02,
                      weight_decay=0.0)
  state = tx.init(params)
  clipped, _ = optax.clip_by_global_norm(0.02).update({'w_kernel': jnp.full(4, 10.0)}, optax.EmptyState())
  assert float(optax.tree.norm(clipped)) == pytest.approx(0.02)
  updates, _ = tx.update({'w_kernel': jnp.full(4, 10.0)}, state, params)
  np.testing.assert_allclose(updates['w_kernel'], -1.0, rtol=1e-5)  # Adam's first step: −lr·sign(g)
  ema = optim.ema_update({'w': jnp.zeros(2)}, {'w': jnp.ones(2)}, 0.9999)
  np.testing.assert_allclose(ema['w'], 1e-4, rtol=1e-4)
