"""Host masks: counts, per-frame identity of tube masks, the four running-cell patterns, seed determinism."""
import numpy as np
import pytest

from vmae_jax.data import masking


@pytest.mark.parametrize('grid,ratio,per_frame_masked', [((8, 14, 14), 0.9, 176), ((8, 16, 16), 0.9, 230),
                                                         ((8, 14, 14), 0.75, 147), ((3, 5, 7), 0.5, 17)])
def test_tube_mask_counts_and_tubes(grid, ratio, per_frame_masked):
  t, h, w = grid
  mask = masking.tube_mask(np.random.default_rng(0), grid, ratio)
  assert mask.shape == (t * h * w,) and mask.dtype == bool
  frames = mask.reshape(t, h * w)
  assert (frames.sum(axis=1) == per_frame_masked).all()
  assert (frames == frames[0]).all()  # the same spatial mask on every temporal slice


def test_spec_token_count_table():
  """The token-count table of docs/fidelity.md, "Masks", both patch sizes."""
  for grid, vis, keep, loss_tokens in [((8, 14, 14), 160, 784, 704), ((8, 16, 16), 208, 1024, 920)]:
    for seed in range(5):
      m = masking.sample_masks(np.random.default_rng(seed), grid, 'tube', 0.9, 'run_cell', 0.5)
      assert len(m['visible_idx']) == vis
      assert len(m['masked_idx']) == np.prod(grid) - vis
      assert len(m['pred_idx']) == keep
      assert m['loss_weight'].sum() == loss_tokens
  v1 = masking.sample_masks(np.random.default_rng(0), (8, 14, 14), 'tube', 0.9)
  assert len(v1['pred_idx']) == 1408 and (v1['pred_idx'] == v1['masked_idx']).all() and v1['loss_weight'].all()


def test_indices_ascending_int32_and_complementary():
  m = masking.sample_masks(np.random.default_rng(3), (4, 6, 6), 'tube', 0.75, 'run_cell', 0.5)
  for k in ('visible_idx', 'masked_idx', 'pred_idx'):
    assert m[k].dtype == np.int32 and (np.diff(m[k]) > 0).all()
  assert np.array_equal(np.sort(np.concatenate([m['visible_idx'], m['masked_idx']])), np.arange(144))
  assert not m['encoder_mask'][m['visible_idx']].any() and m['encoder_mask'][m['masked_idx']].all()
  assert not m['decoder_mask'][m['pred_idx']].any()
  assert np.array_equal(m['loss_weight'], m['encoder_mask'][m['pred_idx']].astype(np.float32))


def test_running_cell_four_patterns():
  patterns = masking.running_cell_patterns((8, 4, 6), 0.5).reshape(4, 8, 4, 6)
  # Pattern 0 per the official generator (OpenGVLab/VideoMAEv2 dataset/masking_generator.py; docs/fidelity.md,
  # "Masks"): cells for t = 0..3, repeating from t = 4.
  expected = [[[1, 0], [0, 1]], [[0, 0], [1, 1]], [[0, 1], [1, 0]], [[1, 1], [0, 0]]]
  for t in range(8):
    cell = np.array(expected[t % 4], dtype=bool)
    assert np.array_equal(patterns[0, t], np.tile(cell, (2, 3)))
  # Patterns 1..3 are the same sequence shifted by one slice each.
  for s in range(1, 4):
    for t in range(8):
      assert np.array_equal(patterns[s, t], patterns[0, (t + s) % 8])
  # Half of every slice is kept, and each position is kept 4 times over 8 slices.
  assert (patterns.reshape(4, 8, -1).sum(-1) == 12).all()
  assert ((~patterns).sum(axis=1) == 4).all()
  assert len({p.tobytes() for p in patterns}) == 4


def test_running_cell_picks_each_pattern_and_copies():
  rng = np.random.default_rng(0)
  patterns = masking.running_cell_patterns((2, 2, 2))
  seen = set()
  for _ in range(64):
    m = masking.running_cell_mask(rng, (2, 2, 2))
    seen.add(int(np.flatnonzero((patterns == m).all(axis=1))[0]))
  assert seen == {0, 1, 2, 3}


def test_seed_determinism_and_variation():
  a = masking.sample_masks(np.random.default_rng(42), (8, 14, 14), 'tube', 0.9, 'run_cell')
  b = masking.sample_masks(np.random.default_rng(42), (8, 14, 14), 'tube', 0.9, 'run_cell')
  c = masking.sample_masks(np.random.default_rng(43), (8, 14, 14), 'tube', 0.9, 'run_cell')
  for k in a:
    assert np.array_equal(a[k], b[k])
  assert not np.array_equal(a['encoder_mask'], c['encoder_mask'])


def test_random_mask_counts():
  m = masking.random_mask(np.random.default_rng(0), (8, 14, 14), 0.9)
  assert m.sum() == int(0.9 * 1568)
  assert not (m.reshape(8, -1) == m.reshape(8, -1)[0]).all()  # not tube-structured


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='even token grid'):
    masking.running_cell_mask(np.random.default_rng(0), (8, 7, 7))
  with pytest.raises(ValueError, match='mask_ratio'):
    masking.tube_mask(np.random.default_rng(0), (8, 14, 14), 1.2)
  with pytest.raises(ValueError, match='decoder_mask_type'):
    masking.sample_masks(np.random.default_rng(0), (8, 14, 14), decoder_mask_type='block')
  with pytest.raises(ValueError, match='mask_type'):
    masking.sample_masks(np.random.default_rng(0), (8, 14, 14), mask_type='cube')
