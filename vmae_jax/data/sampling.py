"""Frame indices: which frames of a video make a clip (docs/fidelity.md, "Sampling").

All functions take the video length `n` (frames) and return int64 index arrays in [0, n-1]; the decode stage reads
exactly those frames. Videos shorter than the window repeat frames as the official loaders do (a normal case).
Random choices take an explicit `np.random.Generator`.
"""
from __future__ import annotations

import numpy as np


def _check(n: int, num_frames: int):
  if n <= 0:
    raise ValueError(f'video has {n} frames')
  if num_frames <= 0:
    raise ValueError(f'num_frames must be positive, got {num_frames}')


def pretrain_indices(rng: np.random.Generator, n: int, num_frames: int = 16, sampling_rate: int = 4) -> np.ndarray:
  """The pretraining sampler (VideoMAE `_sample_train_indices` + the TSN batch loader, one segment).

  Start uniformly in [0, n - num_frames·rate]; step by `rate`; once the next step would reach the end the
  index stops advancing (the last reachable frame repeats). Short videos start at 0.
  """
  _check(n, num_frames)
  skip_length = num_frames * sampling_rate
  average_duration = n - skip_length + 1
  start = int(rng.integers(average_duration)) if average_duration > 0 else 0
  # The official loop keeps a 1-based offset and advances only while offset + rate < n.
  offset = start + 1
  out = np.empty(num_frames, np.int64)
  for i in range(num_frames):
    out[i] = offset - 1 if offset <= n else n - 1
    if offset + sampling_rate < n:
      offset += sampling_rate
  return out


def _short_dense(n: int, num_frames: int, sampling_rate: int) -> np.ndarray:
  index = np.linspace(0, n, num=n // sampling_rate)
  index = np.concatenate([index, np.full(num_frames - n // sampling_rate, n)])
  return np.clip(index, 0, n - 1).astype(np.int64)


def dense_train_indices(rng: np.random.Generator, n: int, num_frames: int = 16, sampling_rate: int = 4) -> np.ndarray:
  """Fine-tuning "dense / I3D" sampling: `num_frames` spread by linspace over a random window of num_frames·rate.

  Short videos (n ≤ window): linspace over the video at the stride, padded with the last frame.
  """
  _check(n, num_frames)
  window = num_frames * sampling_rate
  if n <= window:
    return _short_dense(n, num_frames, sampling_rate)
  end = int(rng.integers(window, n))
  start = end - window
  return np.clip(np.linspace(start, end, num=num_frames), start, end - 1).astype(np.int64)


def dense_val_indices(n: int, num_frames: int = 16, sampling_rate: int = 4) -> np.ndarray:
  """Validation during training (V2): the dense window centred in the video."""
  _check(n, num_frames)
  window = num_frames * sampling_rate
  if n <= window:
    return _short_dense(n, num_frames, sampling_rate)
  end = (window + n) // 2
  start = end - window
  return np.clip(np.linspace(start, end, num=num_frames), start, end - 1).astype(np.int64)


def dense_test_indices(n: int, num_frames: int = 16, sampling_rate: int = 4, num_clips: int = 5) -> np.ndarray:
  """Multi-clip test views (num_clips, num_frames): every `rate`-th frame of the whole video (padded to
  num_frames with the last), then clip k starts at int(k·max((len−num_frames)/(num_clips−1), 0))."""
  _check(n, num_frames)
  sampled = list(range(0, n, sampling_rate))
  while len(sampled) < num_frames:
    sampled.append(sampled[-1])
  sampled = np.asarray(sampled, np.int64)
  step = max((len(sampled) - num_frames) / (num_clips - 1), 0.0) if num_clips > 1 else 0.0
  return np.stack([sampled[int(k * step):int(k * step) + num_frames] for k in range(num_clips)])


def segment_train_indices(rng: np.random.Generator, n: int, num_frames: int = 16) -> np.ndarray:
  """Something-Something "TSN" sampling: one random frame from each of `num_frames` equal segments."""
  _check(n, num_frames)
  average = n // num_frames
  if average > 0:
    return np.arange(num_frames) * average + rng.integers(average, size=num_frames)
  if n > num_frames:
    return np.sort(rng.integers(n, size=num_frames))
  return np.zeros(num_frames, np.int64)


def segment_val_indices(n: int, num_frames: int = 16) -> np.ndarray:
  """Segment centres (V2 validation)."""
  _check(n, num_frames)
  tick = n / num_frames
  return np.array([int(tick / 2.0 + tick * x) for x in range(num_frames)], np.int64)


def segment_test_indices(n: int, num_frames: int = 16, num_clips: int = 2) -> np.ndarray:
  """(num_clips, num_frames): clip k takes int(k·tick/S + tick·x) for every segment x (sorted union, then [k::S])."""
  _check(n, num_frames)
  tick = n / num_frames
  offsets = sorted(int(k * tick / num_clips + tick * x) for k in range(num_clips) for x in range(num_frames))
  return np.stack([np.asarray(offsets[k::num_clips], np.int64) for k in range(num_clips)])


def train_indices(rng: np.random.Generator, n: int, mode: str, num_frames: int, sampling_rate: int) -> np.ndarray:
  if mode == 'pretrain':
    return pretrain_indices(rng, n, num_frames, sampling_rate)
  if mode == 'dense':
    return dense_train_indices(rng, n, num_frames, sampling_rate)
  if mode == 'segment':
    return segment_train_indices(rng, n, num_frames)
  raise ValueError(f'sampling mode {mode!r} unknown; choose pretrain, dense or segment')
