"""Clip geometry (numpy + PIL): crops, resizes and flips of uint8 `(T, H, W, 3)` clips, one box for every frame.

The official VideoMAE / VideoMAE V2 spatial steps (docs/fidelity.md, "Augmentation"):
- the pretraining crop, `GroupMultiScaleCrop(224, [1, .875, .75, .66], max_distort=1, fix_crop, more_fix_crop)`
  with a PIL bilinear resize (MCG-NJU/VideoMAE `transforms.py`);
- the fine-tuning Inception random resized crop (`video_transforms._get_param_spatial_crop`), resized with torch's
  `interpolate(bilinear, align_corners=False)`, and the horizontal flip;
- the evaluation views: short-side bilinear resize (the loaders' cv2.INTER_LINEAR), then a centre crop (validation)
  or crops spread along the long side (test; MCG-NJU/VideoMAE `kinetics.py`, OpenGVLab/VideoMAEv2
  `dataset/datasets.py`).

Every random choice takes an explicit `np.random.Generator`; functions never modify their inputs. `check_clip`,
`as_pair`, `crop_clip`, `resize_bilinear_fused` and `PIL_FILTERS` are the pieces the other augmentation modules
(randaugment.py, augment.py) build on.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x, y, width, height) in pixels; x, y = top-left corner
Size = int | tuple[int, int]     # an int is a square; a pair is (height, width)

PIL_FILTERS = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
}


def as_pair(size: Size) -> tuple[int, int]:
  """`size` as (height, width): an int is a square."""
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  if len(size) != 2:
    raise ValueError(f'size must be an int or (height, width), got {size!r}')
  return int(size[0]), int(size[1])


def check_clip(clip: np.ndarray, name: str = 'clip', dtype=np.uint8) -> np.ndarray:
  """`clip` as an array, or a ValueError unless it is (T, H, W, 3) of `dtype` (None: any dtype)."""
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f'{name} must be (T, H, W, 3), got shape {clip.shape}')
  if dtype is not None and clip.dtype != dtype:
    raise ValueError(f'{name} must be {np.dtype(dtype).name}, got {clip.dtype}')
  return clip


# ---------------------------------------------------------------------------------------------------------------
# Cropping and resizing

def crop_clip(clip: np.ndarray, box: Box) -> np.ndarray:
  """The same box on every frame; a view when the box is inside the frame, else zero-padded like PIL's `crop`."""
  x, y, w, h = (int(v) for v in box)
  if w <= 0 or h <= 0:
    raise ValueError(f'crop box {box} must have a positive width and height')
  num_frames, height, width, channels = clip.shape
  if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
    return clip[:, y:y + h, x:x + w]
  # Only reachable with GroupMultiScaleCrop's "snap to out_size" on frames just smaller than out_size; PIL pads the
  # part of the box outside the frame with zeros, so we do too.
  out = np.zeros((num_frames, h, w, channels), clip.dtype)
  x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
  if x1 > x0 and y1 > y0:
    out[:, y0 - y:y1 - y, x0 - x:x1 - x] = clip[:, y0:y1, x0:x1]
  return out


def _linear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Source indices and weights of torch's bilinear `align_corners=False` (half-pixel centres, no antialias).

  src = (dst + 0.5)·in/out − 0.5, clamped at 0; the two taps are floor(src) and the next pixel (the last one repeated
  at the far edge). Computed in float32 like torch's CPU kernel, so the weights round the same way. This is also
  what cv2.INTER_LINEAR samples (in fixed point for uint8).
  """
  f32 = np.float32
  scale = f32(in_size) / f32(out_size)
  src = (np.arange(out_size).astype(f32) + f32(0.5)) * scale - f32(0.5)
  src = np.maximum(src, f32(0.0))
  lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  frac = np.clip(src - lo.astype(f32), f32(0.0), f32(1.0))
  hi = np.minimum(lo + 1, in_size - 1)
  return lo, hi, f32(1.0) - frac, frac


def _lerp(x: np.ndarray, taps: tuple, axis: int) -> np.ndarray:
  """Two-tap linear interpolation of a 2-D array along `axis` → float32 (a fresh array)."""
  lo, hi, w_lo, w_hi = taps
  shape = (-1, 1) if axis == 0 else (1, -1)
  a = np.take(x, lo, axis=axis).astype(np.float32, copy=False)  # take copies, so in-place below is safe
  if not w_hi.any():  # a pure gather (same size, or a window of it): exact without the second tap
    return a
  b = np.take(x, hi, axis=axis).astype(np.float32, copy=False)
  a *= w_lo.reshape(shape)
  b *= w_hi.reshape(shape)
  a += b
  return a


def _norm_constants(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def resize_bilinear_fused(clip: np.ndarray, out_h: int, out_w: int, flip_x: bool = False,
                          window: Box | None = None,
                          normalize_with: tuple[Sequence[float], Sequence[float]] | None = None,
                          to_uint8: bool = False) -> np.ndarray:
  """Bilinear (torch align_corners=False) resize of a (T, H, W, C) clip → float32 (or uint8 with `to_uint8`).

  `window` = (x, y, w, h) keeps only that part of the out_h × out_w result (a crop after the resize, without
  computing the rest); `flip_x` mirrors the result by reading the column taps backwards (free);
  `normalize_with` = (mean, std) applies (v/255 − mean)/std to the result. Frame by frame on (H, W·C) views, with
  the normalisation / rounding done while the frame is still in cache: about twice as fast as whole-clip passes.
  """
  num_frames, in_h, in_w, channels = clip.shape
  rows, cols = _linear_taps(in_h, out_h), _linear_taps(in_w, out_w)
  if window is not None:
    x, y, w, h = window
    rows = tuple(a[y:y + h] for a in rows)
    cols = tuple(a[x:x + w] for a in cols)
  if flip_x:
    cols = tuple(a[::-1] for a in cols)
  n_h, n_w = len(rows[0]), len(cols[0])
  # Column taps in units of the flattened W·C axis: pixel index · C + channel, same weight for every channel.
  lane = np.arange(channels)
  cols = ((cols[0][:, None] * channels + lane).ravel(), (cols[1][:, None] * channels + lane).ravel(),
          np.repeat(cols[2], channels), np.repeat(cols[3], channels))
  if normalize_with is not None:
    mean, std = _norm_constants(*normalize_with)
    mean, std = np.tile(mean, n_w), np.tile(std, n_w)  # per lane of the flattened W·C axis
  frames = clip.reshape(num_frames, in_h, in_w * channels)  # a view even for a crop: (W, C) stays contiguous
  rows_first = n_h * in_w <= in_h * n_w  # first the pass that leaves the smaller intermediate
  out = np.empty((num_frames, n_h, n_w * channels), np.uint8 if to_uint8 else np.float32)
  for t in range(num_frames):
    if rows_first:
      frame = _lerp(_lerp(frames[t], rows, 0), cols, 1)
    else:
      frame = _lerp(_lerp(frames[t], cols, 1), rows, 0)
    if normalize_with is not None:  # the same float32 steps as ToTensor + Normalize
      frame /= np.float32(255.0)
      frame -= mean
      frame /= std
    if to_uint8:
      np.rint(frame, out=frame)
      np.clip(frame, 0, 255, out=frame)
    out[t] = frame
  return out.reshape(num_frames, n_h, n_w, channels)


def resize_bilinear(clip: np.ndarray, out_size: Size) -> np.ndarray:
  """`torch.nn.functional.interpolate(mode='bilinear', align_corners=False)` on every frame → float32 (T, h, w, C).

  Numpy, no antialias: the official fine-tuning crop and its cv2 test-time resize both sample this way, which
  PIL's bilinear (antialiased when shrinking) does not.
  """
  clip = np.asarray(clip)
  if clip.ndim != 4:
    raise ValueError(f'clip must be (T, H, W, C), got shape {clip.shape}')
  out_h, out_w = as_pair(out_size)
  return resize_bilinear_fused(clip, out_h, out_w)


def crop_resize(clip: np.ndarray, box: Box, out_size: Size, resample: str = 'bilinear') -> np.ndarray:
  """Crop `box` = (x, y, w, h) from every frame and resize to `out_size` → uint8 (T, out_h, out_w, 3).

  resample: 'bilinear' / 'bicubic' / 'nearest' = PIL `Image.resize` per frame (PIL's bilinear is what the official
  pretraining crop uses; it antialiases when shrinking); 'torch_bilinear' = `resize_bilinear` (torch
  `align_corners=False`, no antialias), rounded to uint8.
  """
  clip = check_clip(clip)
  out_h, out_w = as_pair(out_size)
  crop = crop_clip(clip, box)
  if resample == 'torch_bilinear':
    return resize_bilinear_fused(crop, out_h, out_w, to_uint8=True)
  if resample not in PIL_FILTERS:
    raise ValueError(f"resample must be one of {sorted(PIL_FILTERS) + ['torch_bilinear']}, got {resample!r}")
  filt = PIL_FILTERS[resample]
  out = np.empty((len(clip), out_h, out_w, 3), np.uint8)
  for t in range(len(clip)):  # one crop + one resize per frame, both in C
    out[t] = np.asarray(Image.fromarray(np.ascontiguousarray(crop[t])).resize((out_w, out_h), filt))
  return out


# ---------------------------------------------------------------------------------------------------------------
# Multi-scale crop (GroupMultiScaleCrop: the pretraining crop)

def fixed_crop_offsets(width: int, height: int, crop_w: int, crop_h: int,
                       more_fix_crop: bool = True) -> list[tuple[int, int]]:
  """GroupMultiScaleCrop's grid of (x, y) offsets, in the official order.

  Steps are (W − cw)//4 and (H − ch)//4. The 5 basic points: the 4 corners (top-left, top-right, bottom-left,
  bottom-right) and the centre. `more_fix_crop` adds 8: middle-left, middle-right, bottom-middle, top-middle, and the
  4 quarter points (1,1), (3,1), (1,3), (3,3) in step units.
  """
  sx, sy = (width - crop_w) // 4, (height - crop_h) // 4
  grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
  if more_fix_crop:
    grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
  return [(i * sx, j * sy) for i, j in grid]


def multi_scale_crop_sizes(width: int, height: int, out_size: Size = 224, scales: Sequence[float] = (1, .875, .75, .66),
                           max_distort: int = 1) -> list[tuple[int, int]]:
  """The candidate (crop_w, crop_h) pairs, in the official order (height index outer, width index inner)."""
  out_h, out_w = as_pair(out_size)
  base = min(width, height)
  sizes = [int(base * s) for s in scales]
  # Official rule: a size within 2 px of the output is snapped to it (the crop then needs no near-identity resize).
  crop_hs = [out_h if abs(s - out_h) < 3 else s for s in sizes]
  crop_ws = [out_w if abs(s - out_w) < 3 else s for s in sizes]
  return [(w, h) for i, h in enumerate(crop_hs) for j, w in enumerate(crop_ws) if abs(i - j) <= max_distort]


def multi_scale_crop_box(rng: np.random.Generator, width: int, height: int, out_size: Size = 224,
                         scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1, fix_crop: bool = True,
                         more_fix_crop: bool = True) -> Box:
  """One GroupMultiScaleCrop box (x, y, crop_w, crop_h) for a width × height frame.

  A (w, h) pair is drawn uniformly from `multi_scale_crop_sizes`; then the offset uniformly from
  `fixed_crop_offsets` (fix_crop) or uniformly over all valid positions (otherwise).
  """
  pairs = multi_scale_crop_sizes(width, height, out_size, scales, max_distort)
  crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
  if fix_crop:
    offsets = fixed_crop_offsets(width, height, crop_w, crop_h, more_fix_crop)
    x, y = offsets[int(rng.integers(len(offsets)))]
  else:
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
  return int(x), int(y), int(crop_w), int(crop_h)


# ---------------------------------------------------------------------------------------------------------------
# Random resized crop and flip (fine-tuning)

def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3), attempts: int = 10) -> Box:
  """Inception-style box (x, y, w, h), as the official `video_transforms._get_param_spatial_crop`.

  Up to `attempts` tries of area ~ U(scale)·H·W and aspect w/h log-uniform in `ratio`, w = round(√(area·r)),
  h = round(√(area/r)), accepted when 0 < w ≤ W and 0 < h ≤ H (top drawn before left). Otherwise a centred
  fallback: the whole frame with its aspect clamped into `ratio`.
  """
  area = height * width
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for _ in range(attempts):
    target_area = float(rng.uniform(scale[0], scale[1])) * area
    aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      y = int(rng.integers(0, height - h + 1))
      x = int(rng.integers(0, width - w + 1))
      return x, y, w, h
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    w, h = int(round(height * max(ratio))), height
  else:
    w, h = width, height
  return (width - w) // 2, (height - h) // 2, w, h


def horizontal_flip(rng: np.random.Generator, clip: np.ndarray, prob: float = 0.5) -> np.ndarray:
  """Mirror every frame (all or none) with probability `prob` → a new array of the same dtype."""
  clip = np.asarray(clip)
  if rng.random() < prob:
    return np.ascontiguousarray(clip[:, :, ::-1])
  return clip.copy()


# ---------------------------------------------------------------------------------------------------------------
# Evaluation views

def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
  """(new_h, new_w) with the short side = `short_side` and the long side int(short_side·long/short) (official)."""
  if width < height:
    return int(short_side * height / width), short_side
  return short_side, int(short_side * width / height)


def resize_short_side(clip: np.ndarray, short_side: int = 224) -> np.ndarray:
  """Resize every frame so its short side is `short_side` → uint8.

  The official test/validation path resizes decoded numpy frames with cv2.INTER_LINEAR, i.e. half-pixel bilinear
  without antialias; `resize_bilinear` computes the same in float and rounds (cv2's fixed point is within ±1).
  A clip whose short side already matches is returned unchanged (copied), as the official code skips it.
  """
  clip = check_clip(clip)
  _, height, width, _ = clip.shape
  if min(height, width) == short_side:
    return clip.copy()
  new_h, new_w = short_side_size(height, width, short_side)
  return resize_bilinear_fused(clip, new_h, new_w, to_uint8=True)


def _centre_offset(size: int, crop: int) -> int:
  return int(round((size - crop) / 2.0))  # Python's round (half to even), as the official CenterCrop


def _check_crop_fits(height: int, width: int, crop: int) -> None:
  if crop > min(height, width):
    raise ValueError(f'crop {crop} is larger than the resized frame {height}x{width}')


def center_crop_view(clip: np.ndarray, short_side: int = 224, crop_size: int = 224) -> np.ndarray:
  """Validation view: short-side resize, then the centre crop_size² crop → uint8 (T, crop, crop, 3).

  Offsets round((size − crop)/2) as the official CenterCrop; only the cropped window of the resize is computed.
  """
  clip = check_clip(clip)
  _, height, width, _ = clip.shape
  resized = (height, width) if min(height, width) == short_side else short_side_size(height, width, short_side)
  _check_crop_fits(*resized, crop_size)
  y, x = _centre_offset(resized[0], crop_size), _centre_offset(resized[1], crop_size)
  if resized == (height, width):
    return np.ascontiguousarray(clip[:, y:y + crop_size, x:x + crop_size])
  return resize_bilinear_fused(clip, *resized, window=(x, y, crop_size, crop_size), to_uint8=True)


def eval_views(clip: np.ndarray, short_side: int = 224, crop_size: int = 224, num_crops: int = 3) -> list[np.ndarray]:
  """Test views: short-side resize, then `num_crops` crops along the long side → list of uint8 (T, crop, crop, 3).

  Crop j starts at int(j·(long − crop)/(num_crops − 1)) on the long axis (the vertical one when H ≥ W), as the
  official test loader does. The official crop spans the whole short side (short_side = crop = 224 in every
  script); when crop_size < short_side the short axis is centre-cropped here. num_crops = 1 is the centre crop.
  """
  if num_crops < 1:
    raise ValueError(f'num_crops must be >= 1, got {num_crops}')
  if num_crops == 1:
    return [center_crop_view(clip, short_side, crop_size)]
  resized = resize_short_side(clip, short_side)
  _, height, width, _ = resized.shape
  _check_crop_fits(height, width, crop_size)
  vertical = height >= width
  step = (max(height, width) - crop_size) / (num_crops - 1)
  across = _centre_offset(width if vertical else height, crop_size)
  views = []
  for j in range(num_crops):
    start = int(j * step)
    y, x = (start, across) if vertical else (across, start)
    views.append(np.ascontiguousarray(resized[:, y:y + crop_size, x:x + crop_size]))
  return views
