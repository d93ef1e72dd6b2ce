"""Masks made on the host (numpy, seeded): tube, running-cell and random, plus index arrays with static counts.

Conventions (docs/fidelity.md, "Masks"): masks are bool over the flattened (t, h, w) token grid, True = masked for the
encoder mask and True = dropped for the decoder mask. Index arrays are int32 in ascending token order, and their
lengths depend only on the grid and the ratios, so every jitted shape is static.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

Grid = Sequence[int]  # (T', H', W') token grid


def _check_grid(grid: Grid) -> tuple[int, int, int]:
  if len(grid) != 3 or any(int(g) <= 0 for g in grid):
    raise ValueError(f'token grid must be (T\', H\', W\') positive ints, got {tuple(grid)}')
  return int(grid[0]), int(grid[1]), int(grid[2])


def _check_ratio(ratio: float, name: str) -> float:
  if not 0.0 <= ratio < 1.0:
    raise ValueError(f'{name} must be in [0, 1), got {ratio}')
  return float(ratio)


def _check_count(ratio: float, count: int, what: str) -> int:
  """int(ratio·count) masked of `count` tokens; it must leave at least one masked and one visible (the encoder
  needs a token to see, the loss a token to predict)."""
  masked = int(_check_ratio(ratio, 'mask_ratio') * count)
  if not 0 < masked < count:
    raise ValueError(f'mask_ratio={ratio} masks int({ratio} × {count}) = {masked} of the {count} tokens {what}; it '
                     f'must leave at least one masked and one visible token: on this grid, mask_ratio in '
                     f'[1/{count}, 1)')
  return masked


def tube_mask(rng: np.random.Generator, grid: Grid, mask_ratio: float) -> np.ndarray:
  """One random spatial mask with int(ratio·H'W') masked positions, repeated on every temporal slice."""
  t, h, w = _check_grid(grid)
  num_masked = _check_count(mask_ratio, h * w, f"of each frame (tube mask, {h}x{w} tokens per frame)")
  per_frame = np.zeros(h * w, dtype=bool)
  per_frame[rng.permutation(h * w)[:num_masked]] = True
  return np.tile(per_frame, t)


def random_mask(rng: np.random.Generator, grid: Grid, mask_ratio: float) -> np.ndarray:
  """int(ratio·N) masked tokens anywhere in the clip (for ablations; not tube-structured)."""
  t, h, w = _check_grid(grid)
  n = t * h * w
  mask = np.zeros(n, dtype=bool)
  mask[rng.permutation(n)[:_check_count(mask_ratio, n, f'of the clip (random mask, {t}x{h}x{w} tokens)')]] = True
  return mask


def running_cell_patterns(grid: Grid, mask_ratio: float = 0.5) -> np.ndarray:
  """See `_running_cell_patterns`; cached (every example of a run asks for the same four), returned read-only."""
  t, h, w = _check_grid(grid)
  return _running_cell_patterns(t, h, w, float(mask_ratio))


@functools.lru_cache(maxsize=16)
def _running_cell_patterns(t: int, h: int, w: int, mask_ratio: float) -> np.ndarray:
  """The 4 running-cell decoder masks (4, N), True = dropped by the decoder (VideoMAE V2).

  A 2×2 cell holds `int(4·ratio)` dropped slots, queue = [1]*k + [0]*(4-k). For pattern s the cell of temporal slice
  t is the queue rotated by (s + t + 1) mod 4, read row-major into 2×2 and tiled over the H'×W' grid, so the dropped
  positions run around the cell from one slice to the next.
  """
  num_dropped = int(4 * _check_ratio(mask_ratio, 'decoder_mask_ratio'))
  if not 0 < num_dropped < 4:
    raise ValueError(f'decoder_mask_ratio={mask_ratio} gives {num_dropped} dropped slots per 2x2 cell; need 1..3')
  if h % 2 or w % 2:
    raise ValueError(f'running-cell masking tiles 2x2 cells and needs an even token grid; got H\'={h}, W\'={w}')
  queue = np.array([1] * num_dropped + [0] * (4 - num_dropped), dtype=bool)
  patterns = np.empty((4, t, h * w), dtype=bool)
  for start in range(4):
    for frame in range(t):
      cell = queue[(np.arange(4) + start + frame + 1) % 4].reshape(2, 2)
      patterns[start, frame] = np.tile(cell, (h // 2, w // 2)).reshape(-1)
  patterns = patterns.reshape(4, t * h * w)
  patterns.flags.writeable = False
  return patterns


def running_cell_mask(rng: np.random.Generator, grid: Grid, mask_ratio: float = 0.5) -> np.ndarray:
  """One of the 4 running-cell patterns, chosen uniformly."""
  return running_cell_patterns(grid, mask_ratio)[rng.integers(4)].copy()


def indices(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(positions where mask is False, positions where mask is True), ascending int32, for a (N,) bool mask."""
  return np.flatnonzero(~mask).astype(np.int32), np.flatnonzero(mask).astype(np.int32)


ENCODER_MASKS = {'tube': tube_mask, 'random': random_mask}
DECODER_MASKS = {'run_cell': running_cell_mask}


def sample_masks(rng: np.random.Generator, grid: Grid, mask_type: str = 'tube', mask_ratio: float = 0.9,
                 decoder_mask_type: str | None = None, decoder_mask_ratio: float = 0.5) -> dict[str, np.ndarray]:
  """Everything one training example needs, as host arrays with static shapes.

  Returns `encoder_mask` (N,) bool, `visible_idx` (N_vis,), `masked_idx` (N_mask,) and `pred_idx`, the tokens the
  decoder predicts: `masked_idx` without decoder masking (V1), the decoder-kept tokens with it (V2). `loss_weight`
  (len(pred_idx),) float32 is 1 where the predicted token was masked for the encoder (the only tokens the loss
  counts). With a decoder mask, `decoder_mask` (N,) bool is included too.
  """
  if mask_type not in ENCODER_MASKS:
    raise ValueError(f'mask_type {mask_type!r} unknown; choose from {sorted(ENCODER_MASKS)}')
  encoder_mask = ENCODER_MASKS[mask_type](rng, grid, mask_ratio)
  visible_idx, masked_idx = indices(encoder_mask)
  out = {'encoder_mask': encoder_mask, 'visible_idx': visible_idx, 'masked_idx': masked_idx}
  if decoder_mask_type in (None, '', 'none'):
    out['pred_idx'] = masked_idx
  elif decoder_mask_type in DECODER_MASKS:
    decoder_mask = DECODER_MASKS[decoder_mask_type](rng, grid, decoder_mask_ratio)
    out['decoder_mask'] = decoder_mask
    out['pred_idx'] = indices(decoder_mask)[0]
  else:
    raise ValueError(f'decoder_mask_type {decoder_mask_type!r} unknown; choose from {["none"] + sorted(DECODER_MASKS)}')
  out['loss_weight'] = encoder_mask[out['pred_idx']].astype(np.float32)
  return out
