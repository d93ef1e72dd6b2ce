"""Continued pretraining (`task=pretrain` with `init.checkpoint`): the Pretrain task's init loads encoder and decoder
from a saved pretraining checkpoint (the first loss is the saved model's), the encoder alone from a classifier, a
decoder of another shape stays fresh, and a missing path or another encoder architecture is an InitError."""
from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from vmae_jax import models
from vmae_jax.models.config import ModelConfig
from vmae_jax.tasks.base import Context
from vmae_jax.tasks.pretrain import Pretrain
from vmae_jax.train import schema
from vmae_jax.weights import checkpoint, initialize

PT = ModelConfig(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
FT = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 num_classes=3)


def _random(c: ModelConfig, seed: int) -> dict:
  """Random parameters of the model's shapes (from the abstract tree: no init run), nothing equal to a fresh init."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda x: (0.1 * rng.standard_normal(x.shape)).astype(np.float32),
                                nn.unbox(models.abstract_params(c)))


def _task(model_config: ModelConfig, path: str = '', step: int = -1) -> Pretrain:
  config = schema.defaults('pretrain')
  config.init.checkpoint = path
  config.init.step = step
  return Pretrain(Context(config, model_config, None, '', None))


def _batch(c: ModelConfig, seed: int = 0) -> dict:
  """A fixed V1 batch: uint8 video, half the tokens visible, the other half predicted."""
  rng = np.random.default_rng(seed)
  n = int(np.prod(c.token_grid()))
  order = np.stack([rng.permutation(n) for _ in range(2)]).astype(np.int32)
  visible, pred = np.sort(order[:, :n // 2], 1), np.sort(order[:, n // 2:], 1)
  video = rng.integers(0, 256, (2, c.num_frames, c.img_size, c.img_size, 3), dtype=np.uint8)
  return {'video': video, 'visible_idx': visible, 'pred_idx': pred,
          'loss_weight': np.ones(pred.shape, np.float32)}


def _loss_fn(task: Pretrain):
  """The task's training loss (what the first step computes), compiled once."""
  return jax.jit(lambda params, batch: task.loss(params, {}, batch, jax.random.key(0))[0])


def _assert_tree_equal(got, want):
  flat = dict(jax.tree_util.tree_leaves_with_path(got))
  assert flat.keys() == dict(jax.tree_util.tree_leaves_with_path(want)).keys()
  for path, leaf in jax.tree_util.tree_leaves_with_path(want):
    np.testing.assert_array_equal(np.asarray(flat[path]), leaf, err_msg=jax.tree_util.keystr(path))


def test_continue_from_a_pretraining_checkpoint(tmp_path, capsys):
  saved = _random(PT, seed=5)
  checkpoint.save(str(tmp_path / 'pt'), saved, PT)
  task = _task(PT, str(tmp_path / 'pt'))
  params = task.init_params(jax.random.key(0))
  _assert_tree_equal(params, saved)
  out = capsys.readouterr().out
  assert 'loaded encoder, encoder_to_decoder, mask_token, decoder/blocks, decoder/norm, decoder/head_kernel' in out
  assert 'fresh nothing' in out
  batch, loss = _batch(PT), _loss_fn(task)
  fresh = _task(PT).init_params(jax.random.key(0))
  assert float(loss(params, batch)) == float(loss(saved, batch))
  assert abs(float(loss(params, batch)) - float(loss(fresh, batch))) > 1e-3
  # the sharded path (what the trainer calls) gives the same parameters
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  sharded = task.init_params_sharded(jax.random.key(0), jax.tree_util.tree_map(lambda _: one, params))
  _assert_tree_equal(jax.tree_util.tree_map(np.asarray, sharded), saved)


def test_continue_from_a_classifier_loads_the_encoder_only(tmp_path, capsys):
  saved = _random(FT, seed=6)
  checkpoint.save(str(tmp_path / 'ft'), saved, FT)
  params = _task(PT, str(tmp_path / 'ft')).init_params(jax.random.key(0))
  fresh = _task(PT).init_params(jax.random.key(0))
  enc = dict(saved['encoder'], norm=fresh['encoder']['norm'])   # a mean-pooling classifier has no encoder norm
  _assert_tree_equal(params['encoder'], enc)
  _assert_tree_equal({k: v for k, v in params.items() if k != 'encoder'},
                     {k: v for k, v in fresh.items() if k != 'encoder'})
  out = capsys.readouterr().out
  assert 'loaded encoder (without its final norm) (a classifier checkpoint)' in out
  assert 'fresh encoder/norm, encoder_to_decoder, mask_token, decoder (a classifier has none)' in out


def test_another_decoder_stays_fresh(tmp_path):
  src = PT.replace(decoder_embed_dim=48, decoder_num_heads=3)
  saved = _random(src, seed=7)
  params, loaded, fresh = initialize.init_pretrain(saved, src, PT, jax.random.key(0))
  assert loaded == ['encoder', 'decoder/head_bias']   # the pixel bias has the same shape: (3 · 2 · 8 · 8,)
  assert fresh[0].startswith('encoder_to_decoder (checkpoint shapes differ: decoder_embed_dim=48')
  _assert_tree_equal(params['encoder'], saved['encoder'])


@pytest.mark.parametrize('field,value', [('embed_dim', 96), ('depth', 3), ('patch_size', 16)])
def test_another_encoder_is_an_init_error(tmp_path, field, value):
  src = PT.replace(**{field: value}, **({'num_heads': 4} if field == 'embed_dim' else {}))
  checkpoint.save(str(tmp_path / 'other'), _random(src, seed=1), src)
  with pytest.raises(initialize.InitError, match=rf'init.checkpoint={tmp_path}/other: checkpoint {field}={value} '
                                                 rf'but the model has {field}={getattr(PT, field)}'):
    _task(PT, str(tmp_path / 'other')).init_params(jax.random.key(0))


def test_missing_path_is_an_init_error(tmp_path):
  with pytest.raises(initialize.InitError, match=rf'init.checkpoint={tmp_path}/nope: no such file or directory'):
    _task(PT, str(tmp_path / 'nope')).init_params(jax.random.key(0))


def test_continue_from_a_converted_official_pth(tmp_path, capsys):
  """The original modelling code's weights (`{'model': state_dict}`) → `convert` → continued pretraining: every
  parameter is the official one, read through the layout table independently of the checkpoint."""
  import torch
  import torch_refs

  from vmae_jax import convert
  from vmae_jax.weights import official_layout
  ref = torch_refs.original_pretrain(PT, seed=0)
  torch.save({'model': ref.state_dict()}, tmp_path / 'pt.pth')
  convert.convert(str(tmp_path / 'pt.pth'), str(tmp_path / 'ckpt'), num_heads=4, decoder_num_heads=2,
                  img_size=32, num_frames=4)
  params = _task(PT, str(tmp_path / 'ckpt')).init_params(jax.random.key(0))
  official = {k: v.numpy() for k, v in ref.state_dict().items()}
  _assert_tree_equal(params, official_layout.params_from_official(official, PT))
  assert 'fresh nothing' in capsys.readouterr().out
