"""The public API: load from a converted checkpoint or a training-style workdir, dtype casting, clear errors."""
import jax
import numpy as np
import pytest

import vmae_jax
from vmae_jax import models
from vmae_jax.data import masking
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import checkpoint
from vmae_jax.weights.loaded import masks_to_indices

PT = ModelConfig(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
FT = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 num_classes=3)


def _video(batch=2, frames=4, size=32, seed=0):
  return np.random.default_rng(seed).standard_normal((batch, frames, size, size, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def pretrain_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp('pt')
  checkpoint.save(d, models.init_params(PT, jax.random.key(0)), PT)
  return str(d)


def test_workdir_layout_and_latest_step(tmp_path):
  """A training workdir keeps checkpoints under <workdir>/checkpoints; load takes the latest step."""
  p0 = models.init_params(FT, jax.random.key(0))
  p1 = models.init_params(FT, jax.random.key(1))
  checkpoint.save(tmp_path / 'checkpoints', p0, FT, step=10)
  checkpoint.save(tmp_path / 'checkpoints', p1, FT, step=20)
  m = vmae_jax.load(str(tmp_path))
  np.testing.assert_array_equal(m.variables['params']['head_kernel'], p1['head_kernel'])
  from vmae_jax.weights.loaded import load
  np.testing.assert_array_equal(load(str(tmp_path), step=10).variables['params']['head_kernel'], p0['head_kernel'])


def test_other_frame_counts_and_sizes(pretrain_dir):
  m = vmae_jax.load(pretrain_dir)
  assert m.encode(_video(frames=8, size=48)).shape == (2, 4 * 6 * 6, 64)  # tables regenerated
  mask = np.stack([masking.tube_mask(np.random.default_rng(i), (4, 6, 6), 0.9) for i in range(2)])
  out = m.reconstruct(_video(frames=8, size=48), mask)
  assert out['pred'].shape == (2, int(mask[0].sum()), 3 * 2 * 8 * 8) and np.isfinite(float(out['loss']))


def test_bf16_load(pretrain_dir):
  m = vmae_jax.load(pretrain_dir, dtype='bfloat16')
  assert m.config.dtype == 'bfloat16'
  assert m.variables['params']['mask_token'].dtype == jax.numpy.bfloat16  # cast while reading
  assert str(m.encode(_video()).dtype) == 'bfloat16'
  assert vmae_jax.load(pretrain_dir).variables['params']['mask_token'].dtype == np.float32  # default: as stored


def test_errors_are_clear(pretrain_dir, tmp_path):
  m = vmae_jax.load(pretrain_dir)
  with pytest.raises(ValueError, match='same number of tokens'):
    bad = np.zeros((2, 32), bool)
    bad[0, :5] = True
    m.reconstruct(_video(), bad)
  with pytest.raises(ValueError, match='classifier with a head'):
    m.classify(_video())
  with pytest.raises(ValueError, match=r'\(B, T, H, W, 3\)'):
    m.encode(_video()[0])
  with pytest.raises(ValueError, match='not divisible by patch_size'):
    m.encode(_video(size=36))
  with pytest.raises(checkpoint.CheckpointError, match='no such checkpoint directory'):
    vmae_jax.load(str(tmp_path / 'nowhere'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(checkpoint.CheckpointError, match='no committed checkpoint'):
    vmae_jax.load(str(tmp_path / 'empty'))


def test_masks_to_indices():
  mask = np.array([[True, False, True, False], [False, True, True, False]])
  keep, drop = masks_to_indices(mask, 'm')
  np.testing.assert_array_equal(keep, [[1, 3], [0, 3]])
  np.testing.assert_array_equal(drop, [[0, 2], [1, 2]])
