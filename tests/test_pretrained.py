"""Classifier initialisation from checkpoints: encoder-only from pretraining, head remap by class names."""
import json
import os

import jax
import numpy as np
import pytest

from vmae_jax import models
from vmae_jax.data import annotations
from vmae_jax.data.annotations import read_class_names
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import initialize

LABELS = annotations.KINETICS_DIR   # the class lists shipped with the package

PT = ModelConfig(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


@pytest.mark.parametrize('n', [400, 600, 700])
def test_710_head_remap_reproduces_the_official_maps(n):
  k710 = read_class_names(os.path.join(LABELS, 'label_map_k710.txt'))
  dst = read_class_names(os.path.join(LABELS, f'label_map_k{n}.txt'))
  with open(os.path.join(LABELS, f'label_710to{n}.json')) as f:
    official = json.load(f)
  assert len(k710) == 710 and len(dst) == n
  assert initialize.label_index_map(k710, dst) == official


def test_unknown_classes_are_named():
  with pytest.raises(initialize.InitError, match=r"first: \['juggling'\]"):
    initialize.label_index_map(['a', 'b'], ['b', 'juggling'])
  assert initialize.label_index_map(['a', 'dyeing hair'], ['dying hair'], {'dying hair': 'dyeing hair'}) == [1]


def _video(frames, size=32, seed=0):
  return np.random.default_rng(seed).standard_normal((2, frames, size, size, 3)).astype(np.float32)


def test_finetune_from_pretrain_encoder_only_any_frame_count():
  src = jax.tree_util.tree_map(np.asarray, models.init_params(PT, jax.random.key(0)))
  cfg = ModelConfig(kind='classifier', img_size=48, patch_size=8, num_frames=8, embed_dim=64, depth=2, num_heads=4,
                    num_classes=5)
  params = initialize.init_classifier(src, PT, cfg, jax.random.key(1))
  np.testing.assert_array_equal(params['encoder']['blocks']['attn']['qkv_kernel'],
                                src['encoder']['blocks']['attn']['qkv_kernel'])
  assert 'norm' not in params['encoder']  # dropped: mean pooling uses a fresh fc_norm
  np.testing.assert_array_equal(params['fc_norm']['scale'], 1.0)
  assert float(np.abs(params['head_kernel']).max()) < 0.02 * 0.001 * 6  # fresh head × init_scale
  logits = models.build(cfg).apply({'params': params}, _video(8, 48))
  assert logits.shape == (2, 5)
  # Without mean pooling the final norm is kept: the encoder then equals the pretraining encoder, at 8 frames.
  cfg_cls = cfg.replace(use_mean_pooling=False)
  p2 = initialize.init_classifier(src, PT, cfg_cls, jax.random.key(1))
  video = _video(8, 48)
  ours = models.build(cfg_cls).apply({'params': p2}, video, method='encode')
  ref = models.build(PT).apply({'params': src}, video, method='encode')
  np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_classifier_to_classifier_head_remap_by_names():
  src_cfg = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2,
                        num_heads=4, num_classes=5)
  src = jax.tree_util.tree_map(np.asarray, models.init_params(src_cfg.replace(init_scale=1.0), jax.random.key(2)))
  dst_cfg = src_cfg.replace(num_classes=3)
  names = ['a', 'b', 'c', 'd', 'e']
  p = initialize.init_classifier(src, src_cfg, dst_cfg, jax.random.key(3), names, ['d', 'a', 'e'])
  np.testing.assert_array_equal(p['head_kernel'], src['head_kernel'][:, [3, 0, 4]])
  np.testing.assert_array_equal(p['head_bias'], src['head_bias'][[3, 0, 4]])
  np.testing.assert_array_equal(p['fc_norm']['scale'], src['fc_norm']['scale'])
  fresh = initialize.init_classifier(src, src_cfg, dst_cfg, jax.random.key(3))  # no names: a new head
  assert not np.allclose(fresh['head_kernel'], src['head_kernel'][:, :3])
  with pytest.raises(initialize.InitError, match='embed_dim=64 but the model has embed_dim=96'):
    initialize.init_classifier(src, src_cfg, dst_cfg.replace(embed_dim=96, num_heads=4), jax.random.key(0))
