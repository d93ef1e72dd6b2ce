"""The synthetic dataset on disk: real H.264 mp4 files of synthetic.py's clips plus the official annotation lists,
generated once per parameter set under a cache folder, atomically.

Why it exists: every stage of the pipeline (list source → PyAV decode → sampling → augmentation → masking) and every
task (pretraining, fine-tuning, evaluation) must run end to end on a CPU without downloading Kinetics. So the clips
are written as ordinary mp4 files plus the official VideoMAE annotation layout (`train.csv`/`val.csv`/`test.csv`,
`relative/path label` per line), and are read exactly like a real dataset (docs/data.md, "Synthetic data").

Where: `<cache base>/synthetic/<name with a hash of every parameter>` (`cache_base`: `cache_dir`, else
$VMAE_JAX_CACHE, else the XDG cache). Generation is deterministic (synthetic.py draws each clip from its own seed, and
x264 output is deterministic), runs once, and is atomic: everything is written into a temporary sibling folder that
is renamed to the final name only when complete.

    python -m vmae_jax.data.synthetic_cache [--num_classes=8 ...]
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
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
from vmae_jax.data.annotations import SPLIT_FILES
from vmae_jax.data.synthetic import DEFAULTS, class_names, render_clip, sample_clip

FORMAT_VERSION = 1  # bump when the rendering (synthetic.py) or the files change: it is part of the cache-folder hash

# Encoder settings: fixed, part of FORMAT_VERSION.
_PRESET = 'veryfast'
_CRF = 20
_X264_PARAMS = 'no-mbtree=1'   # mbtree made x264 output vary between runs on rare small clips (see reencode)

# The parameters that set how the clips look: passed to `sample_clip`, and hashed only when not the default.
_LOOK = ('background_contrast', 'radius_range', 'travel_range')

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# One clip on disk


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
            background_contrast=DEFAULTS['background_contrast'], radius_range=DEFAULTS['radius_range'],
            travel_range=DEFAULTS['travel_range']) -> dict:
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
          and all(os.path.isfile(os.path.join(folder, n)) for n in (*SPLIT_FILES.values(), 'classes.txt')))


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
  jobs, lines = [], {split: [] for split in SPLIT_FILES}
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
    with open(os.path.join(tmp, SPLIT_FILES[split]), 'w') as f:
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
                     background_contrast: float = DEFAULTS['background_contrast'],
                     radius_range: tuple[float, float] = DEFAULTS['radius_range'],
                     travel_range: tuple[float, float] = DEFAULTS['travel_range'],
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
  """`python -m vmae_jax.data.synthetic_cache [--num_classes=8 ...]`: generate (or find) the dataset, print its path."""
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
