"""The embedded synthetic motion dataset: real H.264 mp4 files whose class can only be told from motion over time.

Why it exists: every stage of the pipeline (list source → PyAV decode → sampling → augmentation → masking) and every
task (pretraining, fine-tuning, evaluation) must run end to end on a CPU without downloading Kinetics. So the clips
are written as ordinary mp4 files plus the official VideoMAE annotation layout (`train.csv`/`val.csv`/`test.csv`,
`relative/path label` per line), and are read exactly like a real dataset.

Why the classes need time: a video model that is only checked on data where one frame gives the answer proves
nothing about its temporal modelling. Each clip shows ONE randomly textured ellipse on a random smooth background;
the class is what the ellipse does: move left/right/up/down (or diagonally), rotate clockwise/counter-clockwise,
grow or shrink. Every per-frame property has the SAME distribution in every class, at every frame:

- position is uniform over the frame, on a torus: an object moving off one edge re-enters at the opposite one
  (it is drawn wrapped), so the position marginal stays uniform at every frame;
- orientation is uniform in [0, 2π);
- log-size is uniform over a fixed range; for grow/shrink it advances on a circle over that range, so the size
  marginal stays uniform too. The price: in about a third of grow/shrink clips the object jumps once from the
  largest to the smallest size (or back), like a new object appearing;
- the textures, aspect ratio and background are drawn the same way for every class.

So a single frame (or a time-averaged frame) carries no class information; two frames do. Motion amounts are set
per clip (not per frame), so they are the same for any `num_frames`.

Generation is deterministic (each clip's parameters come from `np.random.default_rng((seed, class, clip))`, and
x264 output is deterministic), runs once, and is atomic: everything is written into a temporary sibling folder
that is renamed to the final name only when complete.
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import socket
import time
import uuid
from typing import Any, Sequence

import numpy as np

from vmae_jax.data import reencode

FORMAT_VERSION = 1  # bump when the rendering or the files change: it is part of the cache-folder hash

# The classes in label order. The first 8 are the default; the diagonals are extra (cheap, and harder to separate
# from the cardinal moves with a single displacement threshold).
CLASS_NAMES: tuple[str, ...] = (
    'move_left', 'move_right', 'move_up', 'move_down',
    'rotate_clockwise', 'rotate_counterclockwise', 'grow', 'shrink',
    'move_up_left', 'move_up_right', 'move_down_left', 'move_down_right',
)

# Unit (dx, dy) in image coordinates (y points down) for the moving classes.
_DIRECTIONS = {
    'move_left': (-1.0, 0.0), 'move_right': (1.0, 0.0), 'move_up': (0.0, -1.0), 'move_down': (0.0, 1.0),
    'move_up_left': (-0.7071067811865476, -0.7071067811865476),
    'move_up_right': (0.7071067811865476, -0.7071067811865476),
    'move_down_left': (-0.7071067811865476, 0.7071067811865476),
    'move_down_right': (0.7071067811865476, 0.7071067811865476),
}

# Ranges, as fractions of the frame size or per whole clip (so they do not depend on num_frames).
_RADIUS_RANGE = (0.08, 0.32)          # semi-major axis / frame size; log-uniform
_ASPECT_RANGE = (0.45, 0.75)          # semi-minor / semi-major
_TRAVEL_RANGE = (0.25, 0.5)           # translation over the clip / frame size
_TURN_RANGE = (0.5 * np.pi, np.pi)    # rotation over the clip (radians)
_ZOOM_RANGE = (0.35, 0.55)            # |log-size change| over the clip
_OBJECT_CELLS = (3, 6)                # object texture: k×k random colour cells, k in [3, 6]
_BACKGROUND_CELLS = (3, 7)            # background: k×k random colours, bilinear-smoothed
_BACKGROUND_CONTRAST = 0.6            # background colours pulled towards grey so the object stands out

# Encoder settings: fixed, part of FORMAT_VERSION.
_PRESET = 'veryfast'
_CRF = 20
_X264_PARAMS = 'no-mbtree=1'   # mbtree made x264 output vary between runs on rare small clips (see reencode)

DEFAULTS = dict(num_classes=8, clips_per_class=160, num_frames=40, size=96, fps=25, seed=0,
                val_fraction=0.1, test_fraction=0.1,
                # how hard the motion is to see (the demo uses an easier setting; see configs/demo.py)
                background_contrast=_BACKGROUND_CONTRAST, radius_range=_RADIUS_RANGE, travel_range=_TRAVEL_RANGE)
_LOOK = ('background_contrast', 'radius_range', 'travel_range')

log = logging.getLogger(__name__)


def class_names(num_classes: int = DEFAULTS['num_classes']) -> list[str]:
  """The first `num_classes` class names, in label order."""
  if not 1 <= num_classes <= len(CLASS_NAMES):
    raise ValueError(f'synthetic num_classes={num_classes}: must be in [1, {len(CLASS_NAMES)}]')
  return list(CLASS_NAMES[:num_classes])


# ---------------------------------------------------------------------------------------------------------------
# One clip: parameters (the ground truth) and rendering


@dataclasses.dataclass(frozen=True)
class ClipParams:
  """Everything that defines one clip. Per-frame arrays have shape (num_frames,); positions are in pixels with
  (0, 0) the top-left corner of the frame, y pointing down; angle in radians, increasing = clockwise on screen."""
  class_name: str
  size: int
  cx: np.ndarray             # wrapped into [0, size)
  cy: np.ndarray
  cx_unwrapped: np.ndarray   # continuous trajectory (what the motion is)
  cy_unwrapped: np.ndarray
  angle: np.ndarray
  radius: np.ndarray         # semi-major axis in pixels
  aspect: float              # semi-minor / semi-major
  object_texture: np.ndarray       # (k, k, 3) float colours in [0, 255]
  background: np.ndarray           # (size, size, 3) float in [0, 255]

  @property
  def num_frames(self) -> int:
    return int(self.cx.shape[0])


def _smooth_background(rng: np.random.Generator, size: int, contrast: float = _BACKGROUND_CONTRAST) -> np.ndarray:
  cells = int(rng.integers(_BACKGROUND_CELLS[0], _BACKGROUND_CELLS[1] + 1))
  grid = rng.uniform(0, 255, (cells, cells, 3))
  grid = 127.5 + contrast * (grid - 127.5)
  # Bilinear upsampling of the cell grid (separable): smooth, cheap to encode, no per-pixel noise.
  pos = (np.arange(size) + 0.5) / size * (cells - 1)
  lo = np.clip(np.floor(pos).astype(int), 0, max(cells - 2, 0))
  hi = np.minimum(lo + 1, cells - 1)
  w = (pos - lo)[:, None]
  rows = grid[lo] * (1 - w)[:, :, None] + grid[hi] * w[:, :, None]               # (size, cells, 3)
  return rows[:, lo] * (1 - w.T)[:, :, None] + rows[:, hi] * w.T[:, :, None]      # (size, size, 3)


def sample_clip(class_index: int, clip_index: int, seed: int = 0, num_frames: int = DEFAULTS['num_frames'],
                size: int = DEFAULTS['size'], background_contrast: float = _BACKGROUND_CONTRAST,
                radius_range: tuple[float, float] = _RADIUS_RANGE,
                travel_range: tuple[float, float] = _TRAVEL_RANGE) -> ClipParams:
  """The parameters (ground-truth trajectory and textures) of clip `clip_index` of class `class_index`.

  The random stream depends only on (seed, class_index, clip_index), so a clip does not change when the number of
  clips or classes changes. Every draw happens for every class, in the same order, so the streams line up.
  """
  if not 0 <= class_index < len(CLASS_NAMES):
    raise ValueError(f'class_index={class_index} outside [0, {len(CLASS_NAMES)})')
  if num_frames < 2:
    raise ValueError(f'num_frames={num_frames}: motion needs at least 2 frames')
  name = CLASS_NAMES[class_index]
  rng = np.random.default_rng((seed, class_index, clip_index))
  t = np.arange(num_frames) / (num_frames - 1)   # 0 → 1 over the clip

  cx0, cy0 = rng.uniform(0, size, 2)
  angle0 = rng.uniform(0, 2 * np.pi)
  log_lo, log_hi = np.log(radius_range[0] * size), np.log(radius_range[1] * size)
  log_r0 = rng.uniform(log_lo, log_hi)
  aspect = float(rng.uniform(*_ASPECT_RANGE))
  travel = rng.uniform(*travel_range) * size
  turn = rng.uniform(*_TURN_RANGE)
  zoom = rng.uniform(*_ZOOM_RANGE)
  cells = int(rng.integers(_OBJECT_CELLS[0], _OBJECT_CELLS[1] + 1))
  object_texture = rng.uniform(0, 255, (cells, cells, 3))
  background = _smooth_background(rng, size, background_contrast)

  dx, dy = _DIRECTIONS.get(name, (0.0, 0.0))
  cx_unwrapped = cx0 + dx * travel * t
  cy_unwrapped = cy0 + dy * travel * t
  spin = {'rotate_clockwise': 1.0, 'rotate_counterclockwise': -1.0}.get(name, 0.0)
  angle = angle0 + spin * turn * t
  growth = {'grow': 1.0, 'shrink': -1.0}.get(name, 0.0)
  # Log-size moves on a circle over [log_lo, log_hi): uniform at frame 0 ⇒ uniform at every frame.
  log_r = log_lo + np.mod(log_r0 - log_lo + growth * zoom * t, log_hi - log_lo)
  return ClipParams(class_name=name, size=size, cx=np.mod(cx_unwrapped, size), cy=np.mod(cy_unwrapped, size),
                    cx_unwrapped=cx_unwrapped, cy_unwrapped=cy_unwrapped, angle=angle, radius=np.exp(log_r),
                    aspect=aspect, object_texture=object_texture, background=background)


def render_clip(params: ClipParams) -> tuple[np.ndarray, np.ndarray]:
  """Frames uint8 (T, S, S, 3) and the object's coverage alpha float32 (T, S, S) in [0, 1].

  Inverse mapping per pixel: torus offset from the centre → object coordinates (rotated, scaled by the semi-axes)
  → inside test with an anti-aliased edge, texture looked up by nearest cell, so the texture moves, turns and
  scales with the object.
  """
  s = params.size
  f32 = np.float32  # float32 halves the rendering time; the result is rounded to uint8 anyway
  centers = np.arange(s, dtype=f32) + f32(0.5)
  # Torus offsets (shortest signed distance), shape (T, 1, S) for x and (T, S, 1) for y.
  ox = np.mod(centers[None, None, :] - params.cx.astype(f32)[:, None, None] + f32(s / 2), f32(s)) - f32(s / 2)
  oy = np.mod(centers[None, :, None] - params.cy.astype(f32)[:, None, None] + f32(s / 2), f32(s)) - f32(s / 2)
  cos = np.cos(params.angle).astype(f32)[:, None, None]
  sin = np.sin(params.angle).astype(f32)[:, None, None]
  r = params.radius.astype(f32)[:, None, None]
  u = (cos * ox + sin * oy) / r                            # along the major axis, in semi-major units
  v = (cos * oy - sin * ox) / (r * f32(params.aspect))     # along the minor axis
  rho = np.sqrt(u * u + v * v)
  # (1 − ρ) · minor semi-axis ≈ distance to the edge in pixels (exact on the minor axis, conservative elsewhere).
  alpha = np.clip((f32(1) - rho) * (r * f32(params.aspect)) + f32(0.5), f32(0), f32(1))
  k = params.object_texture.shape[0]
  iu = np.clip(((u + f32(1)) * f32(0.5 * k)).astype(np.int32), 0, k - 1)
  iv = np.clip(((v + f32(1)) * f32(0.5 * k)).astype(np.int32), 0, k - 1)
  colour = params.object_texture.astype(f32).reshape(k * k, 3)[iv * k + iu]   # (T, S, S, 3)
  a = alpha[..., None]
  background = params.background.astype(f32)[None]
  frames = background + (colour - background) * a
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8), alpha


def _write_clip(path: str, frames: np.ndarray, fps: int) -> None:
  """Encode one clip to `path` (H.264, yuv420p). Module-level so tests can make it fail midway."""
  data = reencode.encode_frames(frames, fps, gop=None, crf=_CRF, preset=_PRESET, threads=1,
                                x264_params=_X264_PARAMS)
  with open(path, 'wb') as f:
    f.write(data)


def _make_clip(job: tuple) -> str:
  path, class_index, clip_index, seed, num_frames, size, fps, look = job
  frames, _ = render_clip(sample_clip(class_index, clip_index, seed, num_frames, size, **look))
  _write_clip(path, frames, fps)
  return path


# ---------------------------------------------------------------------------------------------------------------
# The dataset folder


def _params(num_classes, clips_per_class, num_frames, size, fps, seed, val_fraction, test_fraction,
            background_contrast=_BACKGROUND_CONTRAST, radius_range=_RADIUS_RANGE, travel_range=_TRAVEL_RANGE) -> dict:
  params = dict(num_classes=int(num_classes), clips_per_class=int(clips_per_class), num_frames=int(num_frames),
                size=int(size), fps=int(fps), seed=int(seed), val_fraction=float(val_fraction),
                test_fraction=float(test_fraction), background_contrast=float(background_contrast),
                radius_range=tuple(float(x) for x in radius_range),
                travel_range=tuple(float(x) for x in travel_range))
  if not 0 <= params['background_contrast'] <= 1:
    raise ValueError(f'synthetic background_contrast={background_contrast}: must be in [0, 1]')
  for key in ('radius_range', 'travel_range'):
    lo, hi = params[key]
    if not 0 < lo <= hi:
      raise ValueError(f'synthetic {key}={params[key]}: must be 0 < low ≤ high')
  class_names(params['num_classes'])  # validates
  if params['clips_per_class'] < 1:
    raise ValueError(f'synthetic clips_per_class={clips_per_class}: must be ≥ 1')
  if params['size'] < 16 or params['size'] % 2:
    raise ValueError(f'synthetic size={size}: must be an even number ≥ 16 (yuv420p needs even sizes)')
  if params['num_frames'] < 2:
    raise ValueError(f'synthetic num_frames={num_frames}: must be ≥ 2')
  if params['fps'] < 1:
    raise ValueError(f'synthetic fps={fps}: must be ≥ 1')
  if not (0 <= params['val_fraction'] < 1 and 0 <= params['test_fraction'] < 1
          and params['val_fraction'] + params['test_fraction'] < 1):
    raise ValueError(f'synthetic val_fraction={val_fraction}, test_fraction={test_fraction}: each in [0, 1) and '
                     'their sum < 1')
  return params


def _fingerprint(params: dict) -> str:
  # The look parameters join the hash only when changed, so the default datasets keep their folder names.
  key = {k: v for k, v in params.items() if k not in _LOOK or tuple(np.atleast_1d(v)) != tuple(
      np.atleast_1d(DEFAULTS[k]))}
  key = dict(key, format_version=FORMAT_VERSION, crf=_CRF, preset=_PRESET, x264_params=_X264_PARAMS)
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_base(cache_dir: str | None = None) -> str:
  """Where synthetic datasets live: `cache_dir`, else $VMAE_JAX_CACHE, else ($XDG_CACHE_HOME or ~/.cache)/vmae_jax;
  datasets go under `<base>/synthetic/`."""
  if cache_dir:
    return os.fspath(cache_dir)
  if os.environ.get('VMAE_JAX_CACHE'):
    return os.environ['VMAE_JAX_CACHE']
  xdg = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(xdg, 'vmae_jax')


def dataset_dir(cache_dir: str | None = None, **kwargs) -> str:
  """The folder `ensure_synthetic` with the same arguments returns (whether or not it exists yet)."""
  params = _params(**{**DEFAULTS, **kwargs})
  name = (f"c{params['num_classes']}x{params['clips_per_class']}_f{params['num_frames']}_s{params['size']}_"
          f'{_fingerprint(params)}')
  return os.path.join(cache_base(cache_dir), 'synthetic', name)


def is_complete(folder: str) -> bool:
  """True when `folder` is a finished dataset of this format (meta.json is written last, before the rename)."""
  try:
    with open(os.path.join(folder, 'meta.json')) as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return False
  return (meta.get('format_version') == FORMAT_VERSION and meta.get('complete') is True
          and all(os.path.isfile(os.path.join(folder, n)) for n in ('train.csv', 'val.csv', 'test.csv',
                                                                     'classes.txt')))


def split_indices(clips_per_class: int, class_index: int, seed: int, val_fraction: float,
                  test_fraction: float) -> dict[str, list[int]]:
  """Clip indices of one class per split: a seeded permutation, val first, then test, the rest train.

  Per class, so the classes stay balanced in every split; at least one clip stays in train.
  """
  rng = np.random.default_rng((seed, 1_000_003, class_index))   # 1_000_003: a stream apart from the clips'
  order = [int(i) for i in rng.permutation(clips_per_class)]
  # A non-zero fraction asks for the split to exist: at least one clip each, as long as train keeps one.
  n_val = max(int(round(clips_per_class * val_fraction)), int(val_fraction > 0))
  n_test = max(int(round(clips_per_class * test_fraction)), int(test_fraction > 0))
  while n_val + n_test >= clips_per_class and (n_val or n_test):
    if n_test >= n_val and n_test:
      n_test -= 1
    else:
      n_val -= 1
  return {'val': sorted(order[:n_val]), 'test': sorted(order[n_val:n_val + n_test]),
          'train': sorted(order[n_val + n_test:])}


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _tmp_prefix(name: str) -> str:
  return f'.tmp-{name}-{socket.gethostname()}-'


def _remove_stale_tmp(parent: str, name: str) -> None:
  """Delete temporary folders left by killed runs on this host (their pid is gone); others may still be working."""
  prefix = _tmp_prefix(name)
  try:
    entries = os.listdir(parent)
  except FileNotFoundError:
    return
  for entry in entries:
    if not entry.startswith(prefix):
      continue
    pid_text = entry[len(prefix):].split('-', 1)[0]
    if pid_text.isdigit() and not _pid_alive(int(pid_text)):
      log.info('synthetic: removing %s left by a run that died', os.path.join(parent, entry))
      shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def _generate(tmp: str, params: dict, num_workers: int) -> dict:
  names = class_names(params['num_classes'])
  jobs, lines = [], {'train': [], 'val': [], 'test': []}
  for class_index, class_name in enumerate(names):
    os.makedirs(os.path.join(tmp, 'videos', class_name))
    splits = split_indices(params['clips_per_class'], class_index, params['seed'], params['val_fraction'],
                           params['test_fraction'])
    split_of = {i: split for split, idx in splits.items() for i in idx}
    for clip_index in range(params['clips_per_class']):
      rel = f'videos/{class_name}/{class_name}_{clip_index:04d}.mp4'
      jobs.append((os.path.join(tmp, rel), class_index, clip_index, params['seed'], params['num_frames'],
                   params['size'], params['fps'], {k: params[k] for k in _LOOK}))
      lines[split_of[clip_index]].append(f'{rel} {class_index}\n')

  start = time.time()
  def progress(done: int) -> None:
    if done % 200 == 0:
      log.info('synthetic: %d/%d clips (%.0f s)', done, len(jobs), time.time() - start)
  parallel = num_workers > 1 and len(jobs) > 1
  if parallel:
    # 'spawn': the parent may already run JAX threads, and forking a threaded process can deadlock.
    ctx = multiprocessing.get_context('spawn')
    try:
      with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
        for done, _ in enumerate(pool.map(_make_clip, jobs, chunksize=16), 1):
          progress(done)
    except concurrent.futures.process.BrokenProcessPool as e:
      # Spawned workers re-import the caller's main module; a script without an `if __name__ == '__main__'`
      # guard breaks them. The clips do not depend on who renders them, so render them here instead.
      log.warning('synthetic: worker processes failed (%s); generating in this process', e)
      parallel = False
  if not parallel:
    for done, job in enumerate(jobs, 1):
      _make_clip(job)
      progress(done)
  seconds = time.time() - start

  for split, split_lines in lines.items():
    with open(os.path.join(tmp, f'{split}.csv'), 'w') as f:
      f.writelines(split_lines)
  with open(os.path.join(tmp, 'classes.txt'), 'w') as f:
    f.writelines(f'{n}\n' for n in names)
  meta = dict(format_version=FORMAT_VERSION, complete=True, params=params, classes=names,
              counts={split: len(v) for split, v in lines.items()}, codec='h264', pix_fmt='yuv420p',
              encoder=dict(preset=_PRESET, crf=_CRF, x264_params=_X264_PARAMS), generation_seconds=round(seconds, 2),
              layout='train.csv/val.csv/test.csv: "relative/path label", paths relative to this folder')
  # meta.json last: a folder with a valid meta.json is complete (and it only gets its final name after this).
  with open(os.path.join(tmp, 'meta.json'), 'w') as f:
    json.dump(meta, f, indent=1)
  return meta


def ensure_synthetic(cache_dir: str | None = None, num_classes: int = DEFAULTS['num_classes'],
                     clips_per_class: int = DEFAULTS['clips_per_class'], num_frames: int = DEFAULTS['num_frames'],
                     size: int = DEFAULTS['size'], fps: int = DEFAULTS['fps'], seed: int = DEFAULTS['seed'],
                     val_fraction: float = DEFAULTS['val_fraction'], test_fraction: float = DEFAULTS['test_fraction'],
                     background_contrast: float = _BACKGROUND_CONTRAST,
                     radius_range: tuple[float, float] = _RADIUS_RANGE,
                     travel_range: tuple[float, float] = _TRAVEL_RANGE,
                     num_workers: int | None = None) -> str:
  """The dataset folder (both the csv folder and the `root` of its relative paths), generated once.

  `<cache base>/synthetic/<c{classes}x{clips}_f{frames}_s{size}_{hash of all parameters + format version}>`; see
  `cache_base` for the base. Returns at once when the folder is complete. Otherwise renders every clip into a
  temporary sibling folder and renames it into place; if another process finished first, its folder wins and
  ours is discarded. `num_workers` (default: min(2, CPUs)) only changes speed, never the bytes.
  """
  params = _params(num_classes, clips_per_class, num_frames, size, fps, seed, val_fraction, test_fraction,
                   background_contrast, radius_range, travel_range)
  final = dataset_dir(cache_dir, **params)
  if is_complete(final):
    return final
  parent, name = os.path.split(final)
  os.makedirs(parent, exist_ok=True)
  _remove_stale_tmp(parent, name)
  if os.path.exists(final):
    # Our own writes never leave an incomplete final folder; this one is foreign (edited, or an older format).
    # Move it aside rather than delete in place, so a reader never sees it half-removed.
    aside = os.path.join(parent, f'.stale-{name}-{uuid.uuid4().hex[:8]}')
    log.warning('synthetic: %s exists but is not a complete dataset of format %d; regenerating', final,
                FORMAT_VERSION)
    try:
      os.rename(final, aside)
      shutil.rmtree(aside, ignore_errors=True)
    except FileNotFoundError:
      pass  # someone else moved it
  tmp = os.path.join(parent, f'{_tmp_prefix(name)}{os.getpid()}-{uuid.uuid4().hex[:8]}')
  os.makedirs(tmp)
  workers = num_workers if num_workers is not None else min(2, os.cpu_count() or 1)
  log.info('synthetic: generating %d classes × %d clips (%d frames, %d px) into %s', num_classes, clips_per_class,
           num_frames, size, final)
  try:
    meta = _generate(tmp, params, workers)
    try:
      os.rename(tmp, final)
    except OSError as e:
      if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and is_complete(final):
        log.info('synthetic: another process finished %s first; discarding ours', final)
        shutil.rmtree(tmp, ignore_errors=True)
        return final
      raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  log.info('synthetic: %s ready (%s clips, %.1f s)', final, meta['counts'], meta['generation_seconds'])
  return final


def read_meta(folder: str) -> dict[str, Any]:
  """meta.json of a generated dataset (parameters, class names, split counts, generation time)."""
  with open(os.path.join(folder, 'meta.json')) as f:
    return json.load(f)


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m vmae_jax.data.synthetic [--num_classes=8 ...]`: generate (or find) the dataset and print its path."""
  import argparse
  parser = argparse.ArgumentParser(description=main.__doc__)
  parser.add_argument('--cache_dir', default=None)
  for key, value in DEFAULTS.items():
    parser.add_argument(f'--{key}', type=type(value), default=value)
  parser.add_argument('--num_workers', type=int, default=None)
  args = vars(parser.parse_args(argv))
  logging.basicConfig(level=logging.INFO, format='%(message)s')
  folder = ensure_synthetic(**args)
  meta = read_meta(folder)
  print(f"{folder}\n  classes: {', '.join(meta['classes'])}\n  clips: {meta['counts']}\n"
        f"  generated in {meta['generation_seconds']} s")


if __name__ == '__main__':
  main()
