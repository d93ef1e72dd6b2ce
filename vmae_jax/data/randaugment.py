"""RandAugment for clips: timm's `rand-m*-n*-mstd*-inc*` with one draw of ops, magnitudes and signs per clip.

The official fine-tuning applies `rand-m7-n4-mstd0.5-inc1` (bicubic, grey fill) to the full-resolution uint8 frames
before anything else (MCG-NJU/VideoMAE `rand_augment.py` and `video_transforms.create_random_augment`,
OpenGVLab/VideoMAEv2 `dataset/rand_augment.py`; docs/fidelity.md, "Augmentation"). The draws follow timm's order
(op choice → per-op apply / magnitude / sign) from one `np.random.Generator` instead of Python's `random` and NumPy's
global streams, so the distribution matches the official code but not its exact stream.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vmae_jax.data.geometry import PIL_FILTERS, check_clip

# RandAugment's fill for pixels uncovered by rotate / shear / translate. VideoMAE's `create_random_augment` passes
# only `translate_const` and `interpolation` to its RandAugment copy, so the op falls back to timm's grey
# (128, 128, 128); timm's own image pipeline would pass the rounded ImageNet mean (124, 116, 104) instead.
RAND_AUGMENT_FILL = (128, 128, 128)

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
  clip = check_clip(clip)
  if interpolation not in PIL_FILTERS:
    raise ValueError(f'interpolation must be one of {sorted(PIL_FILTERS)}, got {interpolation!r}')
  fns = [_frame_op(op, tuple(int(v) for v in fill), PIL_FILTERS[interpolation]) for op in params if op.applied]
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
