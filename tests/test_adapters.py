"""UniFormerV2 and EVL at initialisation: what their zero-inits imply, against the plain CLIP encoder.

UniFormerV2 (local UniBlocks' last conv, global blocks' out-projections, query token and balance all zero):
  * the backbone stream equals plain CLIP's on the same frames (every frame; frame 2t' with temporal
    downsampling, whose conv1 is centre-inflated), in train and eval mode;
  * the query token is exactly 0 after every global block, so logits = head(LN(0.5 · mean_t CLS_last));
  * the zero-initialised tensors still get gradients (the model can leave the identity).
EVL: the offset-binned temporal cross-attention equals the original's gathered W[idx] form, and is 0 at init.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmae_jax import models
from vmae_jax.models.evl import TemporalCrossAttention, offset_bins
from vmae_jax.weights import initialize

SMALL = dict(img_size=32, patch_size=8, embed_dim=64, depth=3, num_heads=4, decoder_embed_dim=64,
             decoder_num_heads=4, decoder_depth=2, num_classes=5)


def _clip(seed=0):
  c = models.get_config('clip_vit_base_patch16_224', **{k: SMALL[k] for k in ('img_size', 'patch_size', 'embed_dim',
                                                                            'depth', 'num_heads')})
  params = models.init_params(c, jax.random.key(seed))
  # non-zero biases and norms, so an identity that held only for zero biases would fail
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(lambda p: p + 0.1 * rng.standard_normal(p.shape).astype(np.float32)
                                  if p.ndim <= 3 else p, params)
  return c, params


def _adapter(name, version=None, seed=0, **overrides):
  c = models.get_config(name, version=version, **{**SMALL, **overrides})
  clip_c, clip_p = _clip(seed)
  variables = models.init_variables(c, jax.random.key(seed + 1))
  variables['params']['backbone'] = initialize.backbone_from_clip(clip_p, clip_c, c, variables['params']['backbone'])
  return c, variables, clip_c, clip_p


def _video(c, batch=2, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(
      (batch, c.num_frames, c.img_size, c.img_size, 3)).astype(np.float32))


def _clip_tokens(clip_c, clip_p, video):
  return models.build(clip_c).apply({'params': clip_p}, video)


@pytest.mark.parametrize('version', ['k400', 'ssv2'])
@pytest.mark.parametrize('train', [False, True])
def test_uniformerv2_backbone_is_clip_at_init(version, train):
  # (train mode without the SSv2 recipe's stochastic depth, which would drop CLIP's own branches at random)
  c, variables, clip_c, clip_p = _adapter('uniformerv2_b16', version, drop_path_rate=0.0)
  if version == 'ssv2':
    assert not c.no_lmhra and c.temporal_downsample and 'batch_stats' in variables
  video = _video(c)
  m = models.build(c)
  kw = dict(deterministic=not train, method=m.encode)
  if train:
    out, _ = m.apply(variables, video, rngs={'dropout': jax.random.key(3)}, mutable=['batch_stats'], **kw)
  else:
    out = m.apply(variables, video, **kw)
  frames = video[:, ::2] if c.temporal_downsample else video
  expected = _clip_tokens(clip_c, clip_p, frames)
  assert out['tokens'].shape == expected.shape
  np.testing.assert_allclose(out['tokens'], expected, atol=1e-5, rtol=0)
  assert np.all(np.asarray(out['query']) == 0)   # every global block adds exactly zero to the zero query


@pytest.mark.parametrize('version', ['k400', 'ssv2'])
def test_uniformerv2_logits_at_init(version):
  c, variables, clip_c, clip_p = _adapter('uniformerv2_b16', version, seed=4)
  video = _video(c, seed=4)
  logits = models.build(c).apply(variables, video)
  frames = video[:, ::2] if c.temporal_downsample else video
  cls_mean = _clip_tokens(clip_c, clip_p, frames)[:, :, 0].mean(axis=1)
  p = variables['params']
  expected = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False).apply(
      {'params': p['head_norm']}, 0.5 * cls_mean) @ p['head_kernel'] + p['head_bias']
  np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_uniformerv2_zero_inits_get_gradients():
  # no stochastic depth: with a batch of 2 it may drop a whole branch, and its gradient with it
  c, variables, _, _ = _adapter('uniformerv2_b16', 'ssv2', drop_path_rate=0.0, decoder_drop_path_rate=0.0)
  m = models.build(c)
  video = _video(c)

  def loss(params):
    logits, _ = m.apply({**variables, 'params': params}, video, deterministic=False, mutable=['batch_stats'],
                        rngs={'dropout': jax.random.key(0)})
    return jnp.sum(logits * jnp.arange(c.num_classes))
  grads = jax.grad(loss)(variables['params'])
  for path in (('balance',), ('temporal_cls_token',), ('dec_1', 'out_kernel'), ('dec_1', 'mlp', 'fc2_kernel'),
               ('backbone', 'resblocks_2', 'lmhra1', 'expand_kernel'),
               ('backbone', 'resblocks_1', 'lmhra2', 'expand_kernel')):
    # (not the last block's lmhra2: it changes only patch tokens after the last attention, which reach the
    # logits only through the zero out-projection of the last global block, so its gradient is exactly 0 at init)
    g = grads
    for name in path:
      g = g[name]
    assert float(jnp.abs(g).max()) > 0, path


def test_uniformerv2_batch_stats_train_and_eval():
  c, variables, _, _ = _adapter('uniformerv2_b16', 'ssv2')
  m = models.build(c)
  video = _video(c)
  _, updated = m.apply(variables, video, deterministic=False, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(0)})
  bn = updated['batch_stats']['backbone']['resblocks_0']['lmhra1']['bn']
  # momentum 0.1 (torch) = 0.9 kept: mean = 0.1 · batch mean of the patch tokens entering the first block
  stem = models.build(c).apply(variables, video, method=lambda mod, v: mod.backbone.stem(v)[0])
  np.testing.assert_allclose(bn['mean'], 0.1 * np.asarray(stem[:, 1:]).reshape(-1, c.embed_dim).mean(0),
                             atol=1e-6, rtol=0)
  # eval mode reads the running statistics: different statistics, different (but still identity-branch) tokens
  a = m.apply(variables, video)
  b = m.apply({**variables, **updated}, video)
  np.testing.assert_allclose(a, b, atol=1e-5)   # the branch is zero either way at init
  with pytest.raises(Exception):   # train mode needs the collection to be mutable
    m.apply(variables, video, deterministic=False, rngs={'dropout': jax.random.key(0)})


def test_uniformerv2_registered_sizes():
  """Parameter counts of docs/fidelity.md, "Adapters" (B/16 K400 114.55M; SSv2 162.99M with 174 classes)."""
  assert models.count_params('uniformerv2_b16', num_classes=400) == 114_552_208
  assert models.count_params('uniformerv2_l14', num_classes=400) / 1e6 == pytest.approx(354.10, abs=0.01)
  assert models.count_params('uniformerv2_b16', version='ssv2', num_classes=174) == 162_992_814
  assert models.count_params('uniformerv2_l14', version='ssv2', num_classes=174) / 1e6 == pytest.approx(
      573.95, abs=0.01)
  c = models.get_config('uniformerv2_b16', version='ssv2')
  assert (c.num_frames, c.tubelet_size, c.decoder_depth, c.drop_path_rate, c.decoder_drop_path_rate) == \
      (16, 2, 8, 0.2, 0.4)


def test_clip_init_refuses_mismatch():
  c = models.get_config('uniformerv2_b16', **{**SMALL, 'img_size': 48})
  clip_c, clip_p = _clip()
  fresh = models.init_variables(c, jax.random.key(0))['params']['backbone']
  with pytest.raises(initialize.ClipInitError, match='img_size=32 but the model has img_size=48'):
    initialize.backbone_from_clip(clip_p, clip_c, c, fresh)


def _tca_reference(q, k, w1, w2, h, w):
  """The original form (OpenGVLab/efficient-video-recognition model.py, TemporalCrossAttention): W[idx] gathered to
  (P, P, C), rows 0 (CLS) zero, frames t−1 (w1) and t+1 (w2)."""
  qi, qj = np.divmod(np.arange(h * w), w)
  idx = (qi[:, None] - qi[None] + h - 1) * (2 * w - 1) + (qj[:, None] - qj[None] + w - 1)

  def half(q, k, table):
    a = np.einsum('ntqhd,ntkhd->ntqkh', q / np.sqrt(q.shape[-1]), k)
    a = np.exp(a - a.max(axis=3, keepdims=True))
    a = (a / a.sum(axis=3, keepdims=True)).mean(-1)
    return np.einsum('ntqk,qkc->ntqc', a, table[idx])
  b, t, length = q.shape[:3]
  ret = np.zeros((b, t, length, w1.shape[1]))
  ret[:, 1:, 1:] += half(q[:, 1:, 1:], k[:, :-1, 1:], w1)
  ret[:, :-1, 1:] += half(q[:, :-1, 1:], k[:, 1:, 1:], w2)
  return ret


def test_evl_temporal_cross_attention_matches_gathered_form():
  h, w, dim, t = 3, 4, 8, 4
  rng = np.random.default_rng(0)
  q, k = (rng.standard_normal((2, t, 1 + h * w, 2, 5)).astype(np.float32) for _ in range(2))
  module = TemporalCrossAttention((h, w), dim, jnp.float32)
  params = nn.unbox(module.init(jax.random.key(0), q, k)['params'])
  assert float(jnp.abs(module.apply({'params': params}, q, k)).max()) == 0.0    # w1 = w2 = 0 at init
  w1, w2 = (rng.standard_normal(params['w1'].shape).astype(np.float32) for _ in range(2))
  got = module.apply({'params': {'w1': w1, 'w2': w2}}, q, k)
  np.testing.assert_allclose(got, _tca_reference(q, k, w1, w2, h, w), atol=1e-5, rtol=0)
  key, valid = offset_bins(h, w)
  assert key.shape == ((h * w), (2 * h - 1) * (2 * w - 1)) and valid.sum() == (h * w) ** 2


def test_evl_at_init_and_sizes():
  c, variables, clip_c, clip_p = _adapter('evl_b16')
  assert c.freeze_backbone and c.decoder_depth == 2
  m = models.build(c)
  video = _video(c)
  feats = m.apply(variables, video, False, method=m.backbone_features)
  expected = models.build(clip_c).apply({'params': clip_p}, video)
  np.testing.assert_allclose(feats[-1][0], expected, atol=1e-5, rtol=0)   # the last block's output is CLIP's
  query = m.apply(variables, video, method=m.encode)
  assert float(jnp.abs(query).max()) > 0     # EVL's decoder is not zero-initialised
  # trainable (everything outside the backbone) 33.18M and backbone 85.80M for B/16 with 400 classes
  # (docs/fidelity.md, "Adapters")
  counts = jax.tree_util.tree_map(lambda a: int(np.prod(a.shape)),
                                  nn.unbox(models.abstract_params(models.get_config('evl_b16', num_classes=400))))
  backbone = sum(jax.tree_util.tree_leaves(counts.pop('backbone')))
  assert backbone == 85_797_888
  assert sum(jax.tree_util.tree_leaves(counts)) / 1e6 == pytest.approx(33.18, abs=0.01)
