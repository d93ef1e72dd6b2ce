"""Frame sampling against the official rules (docs/fidelity.md, "Sampling")."""
import numpy as np
import pytest

from vmae_jax.data import sampling


def test_pretrain_long_video_stride_and_range():
  for seed in range(20):
    idx = sampling.pretrain_indices(np.random.default_rng(seed), 300, 16, 4)
    assert len(idx) == 16 and (np.diff(idx) == 4).all()
    assert 0 <= idx[0] <= 300 - 64 and idx[-1] <= 299
  starts = {int(sampling.pretrain_indices(np.random.default_rng(s), 65, 16, 4)[0]) for s in range(50)}
  assert starts == {0, 1}  # n − 64 + 1 = 2 possible starts


def test_pretrain_short_video_repeats_last_reachable_frame():
  idx = sampling.pretrain_indices(np.random.default_rng(0), 30, 16, 4)
  np.testing.assert_array_equal(idx, [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8)
  # A window fits exactly in 64 frames; at 61 the last step would reach the end, so frame 56 repeats.
  np.testing.assert_array_equal(sampling.pretrain_indices(np.random.default_rng(0), 64, 16, 4), range(0, 64, 4))
  np.testing.assert_array_equal(sampling.pretrain_indices(np.random.default_rng(0), 61, 16, 4),
                                list(range(0, 60, 4)) + [56])


def test_dense_train():
  for seed in range(20):
    idx = sampling.dense_train_indices(np.random.default_rng(seed), 300, 16, 4)
    start = idx[0]
    np.testing.assert_array_equal(idx, np.clip(np.linspace(start, start + 64, 16), start, start + 63).astype(int))
    assert 0 <= start <= 300 - 64 - 1
  short = sampling.dense_train_indices(np.random.default_rng(0), 40, 16, 4)
  np.testing.assert_array_equal(short[:10], np.linspace(0, 40, 10).astype(int).clip(0, 39))
  assert (short[10:] == 39).all() and len(short) == 16


def test_dense_val_is_centred():
  idx = sampling.dense_val_indices(300, 16, 4)
  end = (64 + 300) // 2
  np.testing.assert_array_equal(idx, np.clip(np.linspace(end - 64, end, 16), end - 64, end - 1).astype(int))


def test_dense_test_clips():
  clips = sampling.dense_test_indices(300, 16, 4, 5)
  assert clips.shape == (5, 16)
  # 75 sampled frames, step (75 − 16)/4 = 14.75 → starts 0, 14, 29, 44, 59 (in sampled-frame units).
  np.testing.assert_array_equal(clips[:, 0], np.array([0, 14, 29, 44, 59]) * 4)
  assert (np.diff(clips, axis=1) == 4).all()
  short = sampling.dense_test_indices(20, 16, 4, 5)  # 5 sampled frames padded to 16; all clips identical
  np.testing.assert_array_equal(short, np.tile([0, 4, 8, 12, 16] + [16] * 11, (5, 1)))


def test_segment_sampling():
  for seed in range(10):
    idx = sampling.segment_train_indices(np.random.default_rng(seed), 160, 16)
    assert ((idx // 10) == np.arange(16)).all()
  assert len(sampling.segment_train_indices(np.random.default_rng(0), 10, 16)) == 16
  np.testing.assert_array_equal(sampling.segment_val_indices(160, 16), np.arange(16) * 10 + 5)
  test = sampling.segment_test_indices(160, 16, 2)
  np.testing.assert_array_equal(test[0], np.arange(16) * 10)
  np.testing.assert_array_equal(test[1], np.arange(16) * 10 + 5)


@pytest.mark.parametrize('frames,rate', [(8, 2), (32, 4), (16, 1)])
def test_any_number_of_frames(frames, rate):
  rng = np.random.default_rng(0)
  for mode in ('pretrain', 'dense', 'segment'):
    for n in (5, 50, 500):
      idx = sampling.train_indices(rng, n, mode, frames, rate)
      assert len(idx) == frames and idx.min() >= 0 and idx.max() <= n - 1
