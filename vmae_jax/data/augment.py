"""Host-side clip augmentation: the official VideoMAE / VideoMAE V2 train transforms, composed from their pieces.

Clips are uint8 `(T, H, W, 3)` arrays. Every random choice takes an explicit `np.random.Generator`, so one seed gives
one result (the Grain pipeline derives the generator from (seed, example index)). Functions never modify their
inputs. Pixels stay uint8 for as long as the official recipe allows; `normalize` is separate so the pretraining path
can ship uint8 to the device and normalise there.

What is reproduced (docs/fidelity.md, "Augmentation"; MCG-NJU/VideoMAE `kinetics.py`, `transforms.py`,
`video_transforms.py`, `random_erasing.py`, and their OpenGVLab/VideoMAEv2 `dataset/` counterparts):
- pretraining: `GroupMultiScaleCrop(224, [1, .875, .75, .66], max_distort=1, fix_crop, more_fix_crop)` with a PIL
  bilinear resize, one box for the whole clip, no flip and no colour change (`pretrain_transform`);
- fine-tuning, per clip, in the official order: RandAugment `rand-m7-n4-mstd0.5-inc1` on the full-resolution frames
  (one draw of ops, magnitudes and signs for the whole clip) → ImageNet normalisation → Inception random resized crop
  (torch `interpolate(bilinear, align_corners=False)`) → horizontal flip (not for SSv2) → random erasing with one box
  for every frame (`cube=True`) and fresh N(0, 1) noise per frame (`finetune_transform`).

The pieces live by idea: geometry.py (crops, resizes, flips, the evaluation views), randaugment.py and mixing.py
(batch-level Mixup / CutMix); this module holds normalisation, random erasing and the two transforms.

The random draws follow the official order (op choice → per-op apply / magnitude / sign; box → flip → erase), from one
generator instead of Python's `random`, NumPy's and torch's global streams, so the distributions match the official
code but not its exact streams.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from vmae_jax.constants import IMAGENET_MEAN, IMAGENET_STD
from vmae_jax.data.geometry import (
  Size,
  as_pair,
  check_clip,
  crop_clip,
  crop_resize,
  multi_scale_crop_box,
  random_resized_crop_box,
  resize_bilinear_fused,
)
from vmae_jax.data.randaugment import rand_augment

# ---------------------------------------------------------------------------------------------------------------
# Pretraining

def pretrain_transform(rng: np.random.Generator, clip: np.ndarray, out_size: Size = 224) -> np.ndarray:
  """The official pretraining augmentation: multi-scale crop + PIL bilinear resize → uint8 (T, out, out, 3).

  No flip and no colour change; normalisation is left to the caller (the pipeline does it on device).
  """
  clip = check_clip(clip)
  _, height, width, _ = clip.shape
  box = multi_scale_crop_box(rng, width, height, out_size)
  return crop_resize(clip, box, out_size, 'bilinear')


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and random erasing

def normalize(clip: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """(x / 255 − mean) / std per channel → float32, the same float32 steps as ToTensor + Normalize."""
  mean_, std_ = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  out = np.asarray(clip).astype(np.float32)
  out /= np.float32(255.0)
  out -= mean_
  out /= std_
  return out


def _erase_box(rng: np.random.Generator, height: int, width: int, count: int, min_area: float, max_area: float,
               log_aspect: tuple[float, float], attempts: int) -> tuple[int, int, int, int] | None:
  """One erase box (top, left, h, w) or None when every attempt falls outside the frame."""
  for _ in range(attempts):
    target_area = float(rng.uniform(min_area, max_area)) * height * width / count
    aspect = math.exp(float(rng.uniform(*log_aspect)))
    h = int(round(math.sqrt(target_area * aspect)))
    w = int(round(math.sqrt(target_area / aspect)))
    if w < width and h < height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  return None


def _erase_values(rng: np.random.Generator, mode: str, shape: tuple[int, ...]) -> np.ndarray | float:
  if mode == 'pixel':  # per-pixel N(0, 1): in normalised units, noise around the mean image
    return rng.standard_normal(shape, dtype=np.float32)
  if mode == 'rand':   # one N(0, 1) colour per channel
    return rng.standard_normal((1,) * (len(shape) - 1) + (shape[-1],), dtype=np.float32)
  return 0.0           # 'const': the mean colour


def _erase_inplace(rng: np.random.Generator, video: np.ndarray, prob: float, min_area: float, max_area: float,
                   min_aspect: float, max_aspect: float | None, mode: str, count: int, cube: bool,
                   attempts: int | None) -> np.ndarray:
  mode = mode.lower()
  if mode not in ('pixel', 'rand', 'const'):
    raise ValueError(f"random erasing mode must be 'pixel', 'rand' or 'const', got {mode!r}")
  log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))
  # The official cube variant (VideoMAE's random_erasing.py `_erase_cube`) tries 100 times; timm's per-image one 10.
  attempts = attempts if attempts is not None else (100 if cube else 10)
  num_frames, height, width, channels = video.shape
  # With cube=True the clip is one "image": one apply-draw and one box for all frames. Otherwise each frame draws
  # its own (timm applied to a (T, C, H, W) batch).
  groups = [range(num_frames)] if cube else [[t] for t in range(num_frames)]
  for frames in groups:
    if prob <= 0 or rng.random() > prob:
      continue
    n = count if count <= 1 else int(rng.integers(1, count + 1))
    for _ in range(n):
      box = _erase_box(rng, height, width, n, min_area, max_area, log_aspect, attempts)
      if box is None:
        continue
      top, left, h, w = box
      for t in frames:  # fresh values for every frame, inside the shared box
        video[t, top:top + h, left:left + w] = _erase_values(rng, mode, (h, w, channels))
  return video


def random_erasing(rng: np.random.Generator, clip: np.ndarray, prob: float = 0.25, min_area: float = 0.02,
                   max_area: float = 1 / 3, min_aspect: float = 0.3, max_aspect: float | None = None,
                   mode: str = 'pixel', count: int = 1, cube: bool = True, attempts: int | None = None) -> np.ndarray:
  """timm RandomErasing on a normalised float clip (T, H, W, C) → new float32 array.

  With probability `prob`, up to `count` boxes (area U(min_area, max_area)·HW/count, log-uniform aspect h/w in
  [min_aspect, max_aspect], default max 1/min_aspect; accepted when h < H and w < W) are filled with per-pixel
  N(0, 1) noise ('pixel'), a per-channel N(0, 1) colour ('rand') or 0 ('const'). `cube=True` (VideoMAE): the same
  box on every frame, fresh noise per frame, 100 attempts. `attempts` defaults to 100 with cube, 10 without.
  """
  clip = np.asarray(clip)
  if clip.ndim != 4:
    raise ValueError(f'clip must be (T, H, W, C), got shape {clip.shape}')
  video = clip.astype(np.float32, copy=True)
  return _erase_inplace(rng, video, prob, min_area, max_area, min_aspect, max_aspect, mode, count, cube, attempts)


# ---------------------------------------------------------------------------------------------------------------
# The fine-tuning transform

def finetune_transform(rng: np.random.Generator, clip: np.ndarray, out_size: Size = 224, flip: bool = True,
                       rand_aug: bool = True, erase_prob: float = 0.25, mean: Sequence[float] = IMAGENET_MEAN,
                       std: Sequence[float] = IMAGENET_STD, scale: tuple[float, float] = (0.08, 1.0),
                       ratio: tuple[float, float] = (0.75, 1.3333)) -> np.ndarray:
  """The official per-clip fine-tuning augmentation (`_aug_frame`) → normalised float32 (T, out_h, out_w, 3).

  RandAugment (full-resolution frames) → normalise → random resized crop to `out_size` (torch bilinear,
  align_corners=False) → horizontal flip p 0.5 (`flip=False` for SSv2) → random erasing (`erase_prob`, pixel mode,
  one box for all frames). `ratio` defaults to the official literal (0.75, 1.3333), not 4/3.

  Two exact rewrites for speed: normalisation is affine per channel and bilinear weights sum to 1, so resizing
  the uint8 crop and normalising the 224² result equals normalising first (to float32 rounding, ~1e-6); and the flip
  is folded into the resize by reading the column taps backwards.
  """
  clip = check_clip(clip)
  out_h, out_w = as_pair(out_size)
  if rand_aug:
    clip = rand_augment(rng, clip)
  _, height, width, _ = clip.shape
  box = random_resized_crop_box(rng, height, width, scale, ratio)
  flipped = flip and rng.random() < 0.5
  video = resize_bilinear_fused(crop_clip(clip, box), out_h, out_w, flip_x=flipped, normalize_with=(mean, std))
  return _erase_inplace(rng, video, erase_prob, 0.02, 1 / 3, 0.3, None, 'pixel', 1, True, None)
