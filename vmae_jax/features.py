"""Batched, windowed clip features for temporal action detection (the VideoMAE V2 `extract_tad_feature.py`
convention), one `.npy` per video.

    python -m vmae_jax.features --checkpoint=CKPT_OR_WORKDIR --data.path=VIDEOS_DIR_OR_LIST --out=DIR \
        [--stride=4] [--resize=squash] [--normalize=none] [--batch_size=32]

Per video with n frames: windows of `num_frames` (the model's, 16 for the released models) consecutive frames
(`--frame_step` > 1 spaces them) starting every `--stride` frames (V2: 4 for THUMOS14, 16 for FineAction); a
video shorter than one window gives one window with its last frame repeated. Each window gives one vector: the
classifier's pooled feature (fc_norm of the mean token, `forward_features`; 1408-d for ViT-g) or, for a
pretraining checkpoint, the mean of its encoder tokens. `OUT/<video id>.npy` is float32 (num_windows, D); the id is
the video's path relative to the folder or list, without extension.

Preprocessing defaults to V2's: bilinear resize to exactly img_size² (aspect not kept) and pixels / 255 with *no*
mean/std normalisation, which is what the hosted V2 features used although training normalises
(OpenGVLab/VideoMAEv2 extract_tad_feature.py, OpenGVLab/VideoMAEv2#62). `--normalize=imagenet` and
`--resize=crop` (short side + centre crop, the evaluation view) give the training-consistent variant.

Batches of windows are split over all local devices (data parallel). Decoding runs in a background thread ahead of
the device. Finished videos are skipped on a rerun (outputs are written atomically, tmp + rename); a video that
cannot be read is reported, listed in `OUT/failed.txt` with the reason, and skipped. `OUT/features.json` records
the settings; a rerun with different settings into the same folder is refused.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import sys
import threading
from typing import Iterator

import numpy as np

from vmae_jax import constants
from vmae_jax.data import annotations, decode, geometry
from vmae_jax.data.annotations import SourceError, parse_line
from vmae_jax.train.errors import ArgumentParser, UsageError, at_least, cli

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm', '.mov', '.m4v', '.flv', '.mpg', '.mpeg', '.wmv', '.3gp')
SETTINGS_FILE = 'features.json'
FAILED_FILE = 'failed.txt'


@dataclasses.dataclass(frozen=True)
class Video:
  id: str      # output name: OUT/<id>.npy
  file: str    # the path opened


@dataclasses.dataclass(frozen=True)
class Settings:
  stride: int = 4
  frame_step: int = 1
  resize: str = 'squash'       # 'squash' (V2 TAD) | 'crop'
  normalize: str = 'none'      # 'none' (V2 TAD) | 'imagenet'

  def check(self) -> None:
    if self.stride < 1:
      raise UsageError(f'--stride={self.stride}: must be ≥ 1')
    if self.frame_step < 1:
      raise UsageError(f'--frame_step={self.frame_step}: must be ≥ 1')
    if self.resize not in ('squash', 'crop'):
      raise UsageError(f"--resize={self.resize!r}: must be 'squash' or 'crop'")
    if self.normalize not in ('none', 'imagenet'):
      raise UsageError(f"--normalize={self.normalize!r}: must be 'none' or 'imagenet'")


# ---------------------------------------------------------------------------------------------------------------
# Which videos


def _strip_ext(path: str) -> str:
  return os.path.splitext(path)[0]


def list_videos(path: str, root: str = '') -> list[Video]:
  """A folder (every video file below it, sorted) or a list file (one path per line; a trailing integer label,
  as in the official lists, or V2's `0 -1`, is ignored; relative paths are joined to `root`)."""
  if os.path.isdir(path):
    videos = []
    for folder, _, files in sorted(os.walk(path)):
      for name in sorted(files):
        if name.lower().endswith(VIDEO_EXTENSIONS):
          full = os.path.join(folder, name)
          videos.append(Video(_strip_ext(os.path.relpath(full, path)), full))
    if not videos:
      raise SourceError(f'{path}: no video files ({", ".join(VIDEO_EXTENSIONS)}) below this folder; pass a folder '
                        f'of videos or a list file')
    return videos
  if not os.path.isfile(path):
    raise SourceError(f'{path}: no such folder or list file (--data.path)')
  if path.lower().endswith(VIDEO_EXTENSIONS):
    raise SourceError(f'{path}: a video, not a list file (--data.path); pass the folder that holds it or a list file')
  videos, seen = [], {}
  with annotations.open_list(path) as f:
    for lineno, raw in enumerate(f, 1):
      line = raw.strip()
      if not line or line.startswith('#'):
        continue
      head, label, _ = parse_line(line)   # `path label` or V2's `path 0 -1`: the label is ignored
      rel = head if head and label.lstrip('-').isdigit() else line
      vid = _strip_ext(os.path.basename(rel) if os.path.isabs(rel) else os.path.normpath(rel))
      if vid in seen:
        raise SourceError(f'{path}:{lineno}: video id {vid!r} already given on line {seen[vid]}')
      seen[vid] = lineno
      videos.append(Video(vid, os.path.join(root, rel)))
  if not videos:
    raise SourceError(f'{path}: the list is empty')
  return videos


# ---------------------------------------------------------------------------------------------------------------
# Windows and pixels


def window_starts(n: int, num_frames: int, stride: int, frame_step: int = 1) -> np.ndarray:
  """First frame of every window that fits in n frames; [0] when none fits (the short video is padded)."""
  span = (num_frames - 1) * frame_step + 1
  return np.arange(0, max(n - span, 0) + 1, stride)


def _prepare(frames: np.ndarray, size: int, settings: Settings) -> np.ndarray:
  """uint8 (T, H, W, 3) → float32 (T, size, size, 3) in the model's input range."""
  if settings.resize == 'squash':
    x = geometry.resize_bilinear(frames, size)          # float, not rounded (V2 resizes float tensors)
  else:
    x = geometry.center_crop_view(frames, size, size).astype(np.float32)
  x /= np.float32(255.0)
  if settings.normalize == 'imagenet':
    x -= np.asarray(constants.IMAGENET_MEAN, np.float32)
    x /= np.asarray(constants.IMAGENET_STD, np.float32)
  return x


def window_chunks(video: Video, num_frames: int, size: int, settings: Settings,
                  chunk: int) -> Iterator[tuple[np.ndarray, int]]:
  """(windows float32 (k ≤ chunk, num_frames, size, size, 3), total windows of the video), chunk by chunk; each chunk
  decodes just the frames its windows cover, once."""
  record = {'file': video.file, 'path': video.file}
  n = decode.num_frames(record)
  starts = window_starts(n, num_frames, settings.stride, settings.frame_step)
  offsets = np.arange(num_frames) * settings.frame_step
  for lo in range(0, len(starts), chunk):
    index = starts[lo:lo + chunk, None] + offsets[None]          # (k, num_frames) frame numbers
    index = np.minimum(index, n - 1)                             # a short video repeats its last frame
    needed, where = np.unique(index, return_inverse=True)
    pixels = _prepare(decode.decode_frames(record, needed), size, settings)
    yield pixels[where.reshape(index.shape)], len(starts)


# ---------------------------------------------------------------------------------------------------------------
# The device side


def feature_fn(model):
  """A jitted (variables, windows) → (B, D) float32: the pooled feature of each window."""
  import jax
  module = model.module

  def pooled(variables, x):
    if model.config.kind == 'classifier':
      return module.apply(variables, x, method=module.features)
    return module.apply(variables, x, method=module.encode).mean(axis=1)
  return jax.jit(lambda v, x: pooled(v, x).astype(np.float32))


def _prefetch(items: Iterator, depth: int) -> Iterator:
  """Run `items` in a daemon thread, `depth` ahead (PyAV decodes outside the GIL); errors re-raise here."""
  q: queue.Queue = queue.Queue(maxsize=depth)
  done = object()

  def work():
    try:
      for item in items:
        q.put(item)
    except BaseException as e:  # handed to the consumer
      q.put(('__error__', e))
    q.put(done)
  threading.Thread(target=work, daemon=True).start()
  while True:
    item = q.get()
    if item is done:
      return
    if isinstance(item, tuple) and len(item) == 2 and item[0] == '__error__':
      raise item[1]
    yield item


def _atomic_save(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp.npy'
  np.save(tmp, array)
  os.replace(tmp, path)


def _check_settings(out: str, record: dict) -> None:
  path = os.path.join(out, SETTINGS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    for key, value in record.items():
      if key in old and old[key] != value:
        raise UsageError(f'{path}: this folder holds features made with {key}={old[key]!r}, not {value!r}; '
                         f'use another --out or the same settings')
  os.makedirs(out, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, path)


def extract(checkpoint: str, videos: list[Video], out: str, settings: Settings = Settings(), batch_size: int = 32,
            step: int | None = None, progress: bool = True) -> dict:
  """Write OUT/<id>.npy for every video not done yet; returns {'written', 'skipped', 'failed': [(file, reason)]}."""
  import jax

  import vmae_jax
  from vmae_jax.parallel import sharding
  settings.check()
  devices = jax.local_devices()
  mesh = sharding.make_mesh((len(devices), 1, 1), devices)
  model = vmae_jax.load(checkpoint, mesh=mesh, step=step)
  c = model.config
  _check_settings(out, dict(checkpoint=os.path.abspath(checkpoint), num_frames=c.num_frames, img_size=c.img_size,
                            **dataclasses.asdict(settings)))
  batch = -(-batch_size // len(devices)) * len(devices)   # a multiple of the device count
  run = feature_fn(model)
  batch_sharding = sharding.batch_sharding(mesh)
  videos = videos[jax.process_index()::jax.process_count()]
  todo = [v for v in videos if not os.path.exists(os.path.join(out, v.id + '.npy'))]
  failed: list[tuple[str, str]] = []

  def chunks():
    for v in todo:
      try:
        for pixels, total in window_chunks(v, c.num_frames, c.img_size, settings, batch):
          yield v, pixels, total, None
      except Exception as e:  # a broken video costs itself only
        yield v, None, 0, f'{type(e).__name__}: {e}'.splitlines()[0][:500]

  from tqdm import tqdm
  bar = tqdm(total=len(todo), desc='features', unit='video', disable=not progress, file=sys.stderr)
  parts: dict[str, list[np.ndarray]] = {}
  written = 0
  for v, pixels, total, error in _prefetch(chunks(), depth=4):
    if error is not None:
      parts.pop(v.id, None)
      failed.append((v.file, error))
      bar.write(f'features: skipping {v.file}: {error}')
      bar.update(1)
      continue
    k = len(pixels)
    padded = np.concatenate([pixels, np.repeat(pixels[-1:], batch - k, axis=0)]) if k < batch else pixels
    feats = np.asarray(run(model.variables, jax.device_put(padded, batch_sharding)))[:k]
    parts.setdefault(v.id, []).append(feats)
    if sum(len(p) for p in parts[v.id]) == total:
      _atomic_save(os.path.join(out, v.id + '.npy'), np.concatenate(parts.pop(v.id)))
      written += 1
      bar.update(1)
  bar.close()
  name = FAILED_FILE if jax.process_count() == 1 else f'failed.{jax.process_index()}.txt'
  with open(os.path.join(out, name), 'w') as f:
    f.writelines(f'{path}\t{reason}\n' for path, reason in failed)
  return {'written': written, 'skipped': len(videos) - len(todo), 'failed': failed}


@cli('python -m vmae_jax.features')
def main(argv=None) -> int:
  parser = ArgumentParser(prog='python -m vmae_jax.features', description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', required=True, help='converted checkpoint or training workdir')
  parser.add_argument('--data.path', dest='data_path', required=True,
                      help='a folder of videos, or a list file (one path per line, optional trailing label)')
  parser.add_argument('--data.root', dest='data_root', default='', help='prefix for relative paths of a list file')
  parser.add_argument('--out', required=True, help='output folder: <video id>.npy, failed.txt, features.json')
  parser.add_argument('--stride', type=at_least(1), default=4, help='frames between window starts (V2: 4 THUMOS, '
                                                                    '16 FineAction)')
  parser.add_argument('--frame_step', type=at_least(1), default=1, help='frame spacing inside a window (V2: 1)')
  parser.add_argument('--resize', choices=('squash', 'crop'), default='squash',
                      help='squash: bilinear to img_size² (V2 TAD); crop: short side + centre crop')
  parser.add_argument('--normalize', choices=('none', 'imagenet'), default='none',
                      help='none: pixels/255 (V2 TAD); imagenet: mean/std as in training')
  parser.add_argument('--batch_size', type=at_least(1), default=32, help='windows per device step (all devices)')
  parser.add_argument('--step', type=at_least(0), default=None, help='checkpoint step (default: latest)')
  args = parser.parse_args(argv)
  settings = Settings(stride=args.stride, frame_step=args.frame_step, resize=args.resize, normalize=args.normalize)
  if os.path.isfile(args.out):
    raise UsageError(f'--out={args.out}: is a file; give a folder for the .npy outputs')
  videos = list_videos(args.data_path, args.data_root)   # SourceError naming the file or folder
  result = extract(args.checkpoint, videos, args.out, settings, args.batch_size, args.step)
  print(f'{args.out}: {result["written"]} written, {result["skipped"]} already done, {len(result["failed"])} failed'
        + (f' (listed in {os.path.join(args.out, FAILED_FILE)}):' if result['failed'] else ''))
  for path, reason in result['failed']:
    print(f'  {path}: {reason}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
