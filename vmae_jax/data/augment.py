"""Host-side clip augmentation (numpy + PIL): the official VideoMAE / VideoMAE V2 train and test transforms.

Clips are uint8 `(T, H, W, 3)` arrays. Every random choice takes an explicit `np.random.Generator`, so one seed gives
one result (the Grain pipeline derives the generator from (seed, example index)). Functions never modify their
inputs. Pixels stay uint8 for as long as the official recipe allows; `normalize` is separate so the pretraining path
can ship uint8 to the device and normalise there.

What is reproduced (spec/videomae.md §5.1, §6.1, §6.2):
- pretraining: `GroupMultiScaleCrop(224, [1, .875, .75, .66], max_distort=1, fix_crop, more_fix_crop)` with a PIL
  bilinear resize, one box for the whole clip, no flip and no colour change (`pretrain_transform`);
- fine-tuning, per clip, in the official order: RandAugment `rand-m7-n4-mstd0.5-inc1` on the full-resolution frames
  (one draw of ops, magnitudes and signs for the whole clip) → ImageNet normalisation → Inception random resized crop
  (torch `interpolate(bilinear, align_corners=False)`) → horizontal flip (not for SSv2) → random erasing with one box
  for every frame (`cube=True`) and fresh N(0, 1) noise per frame (`finetune_transform`);
- evaluation: short-side bilinear resize, then a centre crop (validation) or crops spread along the long side (test);
- batch-level Mixup / CutMix with label smoothing (timm `Mixup`, mode 'batch'), run on the assembled host batch.

The random draws follow the official order (op choice → per-op apply / magnitude / sign; box → flip → erase), from one
generator instead of Python's `random`, NumPy's and torch's global streams, so the distributions match the official
code but not its exact streams.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandAugment's fill for pixels uncovered by rotate / shear / translate. VideoMAE's `create_random_augment` passes
# only `translate_const` and `interpolation` to its RandAugment copy, so the op falls back to timm's grey
# (128, 128, 128); timm's own image pipeline would pass the rounded ImageNet mean (124, 116, 104) instead.
RAND_AUGMENT_FILL = (128, 128, 128)

Box = tuple[int, int, int, int]  # (x, y, width, height) in pixels; x, y = top-left corner
Size = int | tuple[int, int]     # an int is a square; a pair is (height, width)

_PIL_FILTERS = {
    'nearest': Image.Resampling.NEAREST,
    'bilinear': Image.Resampling.BILINEAR,
    'bicubic': Image.Resampling.BICUBIC,
}


def _pair(size: Size) -> tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  if len(size) != 2:
    raise ValueError(f'size must be an int or (height, width), got {size!r}')
  return int(size[0]), int(size[1])


def _check_clip(clip: np.ndarray, name: str = 'clip', dtype=np.uint8) -> np.ndarray:
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f'{name} must be (T, H, W, 3), got shape {clip.shape}')
  if dtype is not None and clip.dtype != dtype:
    raise ValueError(f'{name} must be {np.dtype(dtype).name}, got {clip.dtype}')
  return clip


# ---------------------------------------------------------------------------------------------------------------
# Cropping and resizing

def _crop(clip: np.ndarray, box: Box) -> np.ndarray:
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


def _resize_bilinear(clip: np.ndarray, out_h: int, out_w: int, flip_x: bool = False, window: Box | None = None,
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
  out_h, out_w = _pair(out_size)
  return _resize_bilinear(clip, out_h, out_w)


def crop_resize(clip: np.ndarray, box: Box, out_size: Size, resample: str = 'bilinear') -> np.ndarray:
  """Crop `box` = (x, y, w, h) from every frame and resize to `out_size` → uint8 (T, out_h, out_w, 3).

  resample: 'bilinear' / 'bicubic' / 'nearest' = PIL `Image.resize` per frame (PIL's bilinear is what the official
  pretraining crop uses; it antialiases when shrinking); 'torch_bilinear' = `resize_bilinear` (torch
  `align_corners=False`, no antialias), rounded to uint8.
  """
  clip = _check_clip(clip)
  out_h, out_w = _pair(out_size)
  crop = _crop(clip, box)
  if resample == 'torch_bilinear':
    return _resize_bilinear(crop, out_h, out_w, to_uint8=True)
  if resample not in _PIL_FILTERS:
    raise ValueError(f"resample must be one of {sorted(_PIL_FILTERS) + ['torch_bilinear']}, got {resample!r}")
  filt = _PIL_FILTERS[resample]
  out = np.empty((len(clip), out_h, out_w, 3), np.uint8)
  for t in range(len(clip)):  # one crop + one resize per frame, both in C
    out[t] = np.asarray(Image.fromarray(np.ascontiguousarray(crop[t])).resize((out_w, out_h), filt))
  return out


# ---------------------------------------------------------------------------------------------------------------
# Pretraining: GroupMultiScaleCrop

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
  out_h, out_w = _pair(out_size)
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


def pretrain_transform(rng: np.random.Generator, clip: np.ndarray, out_size: Size = 224) -> np.ndarray:
  """The official pretraining augmentation: multi-scale crop + PIL bilinear resize → uint8 (T, out, out, 3).

  No flip and no colour change; normalisation is left to the caller (the pipeline does it on device).
  """
  clip = _check_clip(clip)
  _, height, width, _ = clip.shape
  box = multi_scale_crop_box(rng, width, height, out_size)
  return crop_resize(clip, box, out_size, 'bilinear')


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning: random resized crop, flip, normalisation, random erasing

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


def _norm_constants(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def normalize(clip: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """(x / 255 − mean) / std per channel → float32, the same float32 steps as ToTensor + Normalize."""
  mean_, std_ = _norm_constants(mean, std)
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
# RandAugment (timm `rand-m*-n*-mstd*-inc*`, video variant: one draw per clip)

_MAX_LEVEL = 10.0

RAND_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize', 'Solarize', 'SolarizeAdd', 'Color',
            'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
RAND_INCREASING_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'PosterizeIncreasing', 'SolarizeIncreasing',
                       'SolarizeAdd', 'ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing',
                       'SharpnessIncreasing', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel')
_SIGNED_OPS = frozenset({'Rotate', 'ShearX', 'ShearY', 'TranslateXRel', 'TranslateYRel', 'ColorIncreasing',
                         'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing'})


@dataclasses.dataclass(frozen=True)
class RandAugOp:
  """One sampled RandAugment layer: which op, whether it fires, its clipped magnitude and its PIL argument.

  arg: degrees (Rotate), bits kept (Posterize*), threshold (Solarize*), amount added (SolarizeAdd), enhance factor
  (Color/Contrast/Brightness/Sharpness*), shear factor (ShearX/Y), translation as a fraction of the frame width /
  height (TranslateX/YRel); None for the argument-free ops and for skipped layers.
  """
  name: str
  applied: bool
  magnitude: float | None = None
  arg: float | int | None = None


def parse_rand_augment(config: str) -> dict:
  """Parse a timm RandAugment string: 'rand-m7-n4-mstd0.5-inc1' → magnitude 7.0, num_layers 4, magnitude_std 0.5,
  increasing True, prob 0.5 (a dict with those keys).

  Defaults as timm: magnitude 10, 2 layers, no noise, the plain op set, prob 0.5 ('p' key). mstd > 100 means uniform
  magnitude in [0, m] (magnitude_std = inf). timm reads 'inc' with `bool(str)`, so even 'inc0' turns the increasing
  set on there; here 'inc0' means off.
  """
  sections = config.split('-')
  if sections[0] != 'rand':
    raise ValueError(f"RandAugment config must start with 'rand', got {config!r}")
  out = {'magnitude': 10.0, 'num_layers': 2, 'magnitude_std': 0.0, 'increasing': False, 'prob': 0.5}
  for section in sections[1:]:
    parts = re.split(r'(\d.*)', section)
    if len(parts) < 2:
      continue
    key, val = parts[:2]
    if key == 'm':
      out['magnitude'] = float(int(val))
    elif key == 'n':
      out['num_layers'] = int(val)
    elif key == 'mstd':
      std = float(val)
      out['magnitude_std'] = math.inf if std > 100 else std
    elif key == 'inc':
      out['increasing'] = bool(int(val))
    elif key == 'p':
      out['prob'] = float(val)
    else:
      raise ValueError(f'unknown RandAugment config section {section!r} in {config!r}')
  return out


def _signed(rng: np.random.Generator, value: float) -> float:
  return -value if rng.random() > 0.5 else value


def _level_to_arg(name: str, magnitude: float, rng: np.random.Generator) -> float | int | None:
  """timm's magnitude → argument maps (level = magnitude / 10); the sign is drawn only for signed ops."""
  level = magnitude / _MAX_LEVEL
  if name in ('AutoContrast', 'Equalize', 'Invert'):
    return None
  if name == 'Rotate':
    return _signed(rng, level * 30.0)  # ±30°
  if name == 'Posterize':
    return int(level * 4)              # keep 0..4 bits: stronger at low magnitude
  if name == 'PosterizeIncreasing':
    return 4 - int(level * 4)          # keep 4..0 bits: stronger at high magnitude
  if name == 'Solarize':
    return int(level * 256)
  if name == 'SolarizeIncreasing':
    return 256 - int(level * 256)
  if name == 'SolarizeAdd':
    return int(level * 110)
  if name in ('Color', 'Contrast', 'Brightness', 'Sharpness'):
    return level * 1.8 + 0.1           # [0.1, 1.9], 1 = unchanged
  if name in ('ColorIncreasing', 'ContrastIncreasing', 'BrightnessIncreasing', 'SharpnessIncreasing'):
    return 1.0 + _signed(rng, level * 0.9)  # away from 1 in either direction as the magnitude grows
  if name in ('ShearX', 'ShearY'):
    return _signed(rng, level * 0.3)
  if name in ('TranslateXRel', 'TranslateYRel'):
    # Relative translation (timm translate_pct 0.45) of the full-resolution frame. translate_const (int(224·0.45)
    # = 100) only feeds the absolute TranslateX/Y ops, which neither op set contains.
    return _signed(rng, level * 0.45)
  raise ValueError(f'unknown RandAugment op {name!r}')


def rand_augment_params(rng: np.random.Generator, magnitude: float = 7, num_layers: int = 4,
                        magnitude_std: float = 0.5, increasing: bool = True, prob: float = 0.5) -> list[RandAugOp]:
  """Sample one clip's RandAugment layers, in timm's draw order.

  `num_layers` ops are chosen uniformly with replacement (timm's `np.random.choice(replace=True)`); then each layer
  fires with probability `prob`; a firing layer draws its magnitude N(magnitude, magnitude_std) (uniform in
  [0, magnitude] when the std is inf) clipped to [0, 10], then its sign if the op has one.
  """
  names = RAND_INCREASING_OPS if increasing else RAND_OPS
  chosen = rng.integers(len(names), size=num_layers)
  layers = []
  for k in chosen:
    name = names[int(k)]
    if prob < 1.0 and rng.random() > prob:
      layers.append(RandAugOp(name, False))
      continue
    m = float(magnitude)
    if math.isinf(magnitude_std):
      m = float(rng.uniform(0.0, magnitude))
    elif magnitude_std > 0:
      m = float(rng.normal(magnitude, magnitude_std))
    m = max(0.0, min(_MAX_LEVEL, m))
    layers.append(RandAugOp(name, True, m, _level_to_arg(name, m, rng)))
  return layers


def _solarize_add_lut(add: int, threshold: int = 128) -> list[int]:
  lut = [min(255, i + add) if i < threshold else i for i in range(256)]
  return lut * 3  # one table per RGB band


def _frame_op(op: RandAugOp, fill: tuple[int, ...], resample: Image.Resampling) -> Callable[[Image.Image], Image.Image]:
  """The PIL function one layer applies to each frame (same argument for every frame)."""
  name, arg = op.name, op.arg
  geo = {'resample': resample, 'fillcolor': tuple(fill)}
  affine = Image.Transform.AFFINE
  if name == 'AutoContrast':
    return ImageOps.autocontrast
  if name == 'Equalize':
    return ImageOps.equalize
  if name == 'Invert':
    return ImageOps.invert
  if name == 'Rotate':
    return lambda im: im.rotate(arg, **geo)
  if name.startswith('Posterize'):
    return (lambda im: im) if arg >= 8 else (lambda im: ImageOps.posterize(im, arg))
  if name.startswith('Solarize') and name != 'SolarizeAdd':
    return lambda im: ImageOps.solarize(im, arg)
  if name == 'SolarizeAdd':
    lut = _solarize_add_lut(arg)
    return lambda im: im.point(lut)
  enhancers = {'Color': ImageEnhance.Color, 'Contrast': ImageEnhance.Contrast,
               'Brightness': ImageEnhance.Brightness, 'Sharpness': ImageEnhance.Sharpness}
  base = name.removesuffix('Increasing')
  if base in enhancers:
    return lambda im: enhancers[base](im).enhance(arg)
  if name == 'ShearX':
    return lambda im: im.transform(im.size, affine, (1, arg, 0, 0, 1, 0), **geo)
  if name == 'ShearY':
    return lambda im: im.transform(im.size, affine, (1, 0, 0, arg, 1, 0), **geo)
  if name == 'TranslateXRel':
    return lambda im: im.transform(im.size, affine, (1, 0, arg * im.size[0], 0, 1, 0), **geo)
  if name == 'TranslateYRel':
    return lambda im: im.transform(im.size, affine, (1, 0, 0, 0, 1, arg * im.size[1]), **geo)
  raise ValueError(f'unknown RandAugment op {name!r}')


def apply_rand_augment(clip: np.ndarray, params: Sequence[RandAugOp], fill: Sequence[int] = RAND_AUGMENT_FILL,
                       interpolation: str = 'bicubic') -> np.ndarray:
  """Apply sampled layers to every frame with PIL → new uint8 clip. Histogram ops (AutoContrast, Equalize) and
  Contrast use each frame's own statistics, as the official per-frame PIL calls do."""
  clip = _check_clip(clip)
  if interpolation not in _PIL_FILTERS:
    raise ValueError(f'interpolation must be one of {sorted(_PIL_FILTERS)}, got {interpolation!r}')
  fns = [_frame_op(op, tuple(int(v) for v in fill), _PIL_FILTERS[interpolation]) for op in params if op.applied]
  if not fns:
    return clip.copy()
  out = np.empty_like(clip)
  for t in range(len(clip)):
    im = Image.fromarray(clip[t])
    for fn in fns:
      im = fn(im)
    out[t] = np.asarray(im)
  return out


def rand_augment(rng: np.random.Generator, clip: np.ndarray, magnitude: float = 7, num_layers: int = 4,
                 magnitude_std: float = 0.5, increasing: bool = True, prob: float = 0.5,
                 fill: Sequence[int] = RAND_AUGMENT_FILL, interpolation: str = 'bicubic') -> np.ndarray:
  """RandAugment with one parameter draw for the whole clip (defaults = the official `rand-m7-n4-mstd0.5-inc1`,
  bicubic, grey fill) → new uint8 clip."""
  params = rand_augment_params(rng, magnitude, num_layers, magnitude_std, increasing, prob)
  return apply_rand_augment(clip, params, fill, interpolation)


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
  clip = _check_clip(clip)
  out_h, out_w = _pair(out_size)
  if rand_aug:
    clip = rand_augment(rng, clip)
  _, height, width, _ = clip.shape
  box = random_resized_crop_box(rng, height, width, scale, ratio)
  flipped = flip and rng.random() < 0.5
  video = _resize_bilinear(_crop(clip, box), out_h, out_w, flip_x=flipped, normalize_with=(mean, std))
  return _erase_inplace(rng, video, erase_prob, 0.02, 1 / 3, 0.3, None, 'pixel', 1, True, None)


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
  clip = _check_clip(clip)
  _, height, width, _ = clip.shape
  if min(height, width) == short_side:
    return clip.copy()
  new_h, new_w = short_side_size(height, width, short_side)
  return _resize_bilinear(clip, new_h, new_w, to_uint8=True)


def _centre_offset(size: int, crop: int) -> int:
  return int(round((size - crop) / 2.0))  # Python's round (half to even), as the official CenterCrop


def _check_crop_fits(height: int, width: int, crop: int) -> None:
  if crop > min(height, width):
    raise ValueError(f'crop {crop} is larger than the resized frame {height}x{width}')


def center_crop_view(clip: np.ndarray, short_side: int = 224, crop_size: int = 224) -> np.ndarray:
  """Validation view: short-side resize, then the centre crop_size² crop → uint8 (T, crop, crop, 3).

  Offsets round((size − crop)/2) as the official CenterCrop; only the cropped window of the resize is computed.
  """
  clip = _check_clip(clip)
  _, height, width, _ = clip.shape
  resized = (height, width) if min(height, width) == short_side else short_side_size(height, width, short_side)
  _check_crop_fits(*resized, crop_size)
  y, x = _centre_offset(resized[0], crop_size), _centre_offset(resized[1], crop_size)
  if resized == (height, width):
    return np.ascontiguousarray(clip[:, y:y + crop_size, x:x + crop_size])
  return _resize_bilinear(clip, *resized, window=(x, y, crop_size, crop_size), to_uint8=True)


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


# ---------------------------------------------------------------------------------------------------------------
# Mixup / CutMix (batch level)

@dataclasses.dataclass(frozen=True)
class MixParams:
  """One batch's mixing: `lam` = weight of each sample's own label; `box` = (top, bottom, left, right) of the CutMix
  region taken from the flipped batch, None for Mixup or no mixing (lam = 1)."""
  lam: float
  box: tuple[int, int, int, int] | None = None


def mixup_cutmix_params(rng: np.random.Generator, height: int, width: int, mixup_alpha: float = 0.8,
                        cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                        correct_lam: bool = True) -> MixParams:
  """timm `Mixup._params_per_batch` + `cutmix_bbox_and_lam`, in timm's draw order.

  With probability `prob`: CutMix (prob `switch_prob` when both alphas are > 0) with lam ~ Beta(cutmix_alpha), else
  Mixup with lam ~ Beta(mixup_alpha). The CutMix box has sides int(H·√(1−lam)), int(W·√(1−lam)) around a uniform
  centre, clipped to the frame; lam is then corrected to 1 − (box area)/(H·W).
  """
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    raise ValueError('mixup_cutmix needs mixup_alpha > 0 or cutmix_alpha > 0')
  if not rng.random() < prob:
    return MixParams(1.0)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = bool(rng.random() < switch_prob)
  else:
    use_cutmix = cutmix_alpha > 0
  lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
  if lam == 1.0 or not use_cutmix:
    return MixParams(lam)
  cut = math.sqrt(1.0 - lam)
  cut_h, cut_w = int(height * cut), int(width * cut)
  cy = int(rng.integers(0, height))
  cx = int(rng.integers(0, width))
  top, bottom = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
  left, right = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
  if correct_lam:
    lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
  return MixParams(lam, (top, bottom, left, right))


def smoothed_one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.1) -> np.ndarray:
  """timm's smoothed one-hot: off = smoothing/K, on = 1 − smoothing + off → float32 (B, K), rows sum to 1."""
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]')
  off = smoothing / num_classes
  out = np.full((labels.size, num_classes), off, np.float32)
  out[np.arange(labels.size), labels] = 1.0 - smoothing + off
  return out


def apply_mixup_cutmix(videos: np.ndarray, labels: np.ndarray, params: MixParams, num_classes: int,
                       label_smoothing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Mix a (B, T, H, W, C) batch with its reverse (x[::-1]) → (new float32 videos, float32 (B, K) soft targets)."""
  videos = np.asarray(videos)
  if videos.ndim != 5:
    raise ValueError(f'videos must be (B, T, H, W, C), got shape {videos.shape}')
  lam = params.lam
  if params.box is None and lam != 1.0:  # Mixup: 3 passes over the batch, no extra temporaries
    out = np.multiply(videos, np.float32(lam), dtype=np.float32)
    out += np.multiply(videos[::-1], np.float32(1.0 - lam), dtype=np.float32)
  else:
    out = videos.astype(np.float32, copy=True)
  if params.box is not None:
    top, bottom, left, right = params.box
    out[:, :, top:bottom, left:right] = videos[::-1, :, top:bottom, left:right]  # one box, every frame
  y = smoothed_one_hot(labels, num_classes, label_smoothing)
  targets = (y * np.float32(lam) + y[::-1] * np.float32(1.0 - lam)).astype(np.float32)
  return out, targets


def mixup_cutmix(rng: np.random.Generator, videos: np.ndarray, labels: np.ndarray, num_classes: int,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                 label_smoothing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """timm Mixup in 'batch' mode on a normalised float batch (B, T, H, W, C) → (videos, soft targets (B, K)).

  One lam for the whole batch; each sample is mixed with the batch in reverse order (timm's `x.flip(0)`); a CutMix
  box is shared by every frame (VideoMAE V1 cuts `x[..., yl:yh, xl:xh]`, V2 folds T into channels: the same thing);
  targets are the smoothed one-hots mixed the same way. Runs on the host on the assembled per-process batch, before
  device transfer, so with several processes (or several devices per process) the mixing partners come from the
  local batch, as each official GPU mixes its own; the batch size must be even, as timm asserts.
  """
  videos = np.asarray(videos)
  if videos.ndim != 5:
    raise ValueError(f'videos must be (B, T, H, W, C), got shape {videos.shape}')
  if len(videos) % 2:
    raise ValueError(f'mixup_cutmix needs an even batch size (timm asserts it), got {len(videos)}')
  params = mixup_cutmix_params(rng, videos.shape[2], videos.shape[3], mixup_alpha, cutmix_alpha, prob, switch_prob)
  return apply_mixup_cutmix(videos, labels, params, num_classes, label_smoothing)
