"""The Grain graph: shard by JAX process → shuffle (per epoch) → random_map (decode, sample, augment, mask) → batch
→ worker processes. Deterministic per (seed, example index): the random draw of example i depends only on the seed
and i (grain's per-element Philox stream), so worker count and restarts do not change the data, and the iterator
state (grain's checkpoint handler, saved with orbax) resumes exactly.

Bad input never kills a run. Any exception while opening or decoding a video is reported once (path + reason) on
the log and in `<error_dir>/data_errors.jsonl`; in training the example is replaced by another, drawn from the
example's own random stream (so the replacement is deterministic too) and counted in `skipped`; in evaluation the
example is emitted with `valid=False` (zeros) so the metric can leave it out and say "N of M evaluated".
`FailureMonitor` stops a source where more than `max_failure_share` of the first `failure_window` videos fail.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from typing import Any

import grain
import numpy as np

from vmae_jax.data import augment, decode, geometry, masking, mixing, sampling
from vmae_jax.data.sources import make_source
from vmae_jax.models.config import grid_for

log = logging.getLogger('vmae_jax.data')


class DataError(RuntimeError):
  """The data source is failing beyond the configured tolerance."""


# ---------------------------------------------------------------------------------------------------------------
# Error reporting (once per path, from any process)


class ErrorReporter:
  """Writes each failing path once to the log and to `<error_dir>/data_errors.jsonl`.

  Worker processes share the dedup through O_EXCL marker files, so "once" holds across processes and epochs.
  """

  def __init__(self, error_dir: str | None):
    self.error_dir = error_dir
    self._seen: set[str] = set()

  def report(self, path: str, reason: str) -> None:
    if path in self._seen:
      return
    self._seen.add(path)
    if self.error_dir:
      markers = os.path.join(self.error_dir, 'data_errors.seen')
      os.makedirs(markers, exist_ok=True)
      marker = os.path.join(markers, hashlib.sha1(path.encode()).hexdigest())
      try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
      except FileExistsError:
        return
      line = json.dumps({'path': path, 'reason': reason}) + '\n'
      fd = os.open(os.path.join(self.error_dir, 'data_errors.jsonl'), os.O_CREAT | os.O_APPEND | os.O_WRONLY)
      try:
        os.write(fd, line.encode())
      finally:
        os.close(fd)
    msg = f'vmae_jax.data: skipping {path}: {reason}'
    log.warning(msg)
    if not logging.getLogger().handlers and not log.handlers:
      print(msg, file=sys.stderr, flush=True)  # worker processes have no handlers configured


def _reason(e: BaseException) -> str:
  return f'{type(e).__name__}: {e}'.splitlines()[0][:500]


# ---------------------------------------------------------------------------------------------------------------
# Per-example work


class TrainExample:
  """index, rng → one training example (with `num_sample` augmented views of one decoded clip)."""

  def __init__(self, source, cfg, task: str, error_dir: str | None):
    self.source, self.cfg, self.task = source, cfg, task
    self.reporter = ErrorReporter(error_dir)

  def _clip(self, record, rng):
    c = self.cfg
    choose = lambda n: sampling.train_indices(rng, n, c.sampling, c.num_frames, c.sampling_rate)
    return decode.read_clip(record, choose, threads=c.decode_threads)[0]

  def __call__(self, index, rng: np.random.Generator) -> dict[str, Any]:
    cfg, skipped, i = self.cfg, 0, int(index)
    while True:
      record = self.source[i]
      try:
        clip = self._clip(record, rng)
        break
      except Exception as e:  # whatever the type: the run goes on, the file is reported and counted
        self.reporter.report(record.get('path', str(i)), _reason(e))
        skipped += 1
        if skipped > cfg.max_replacements:
          raise DataError(f'{skipped} consecutive videos failed to load (last: {record.get("path")}: {_reason(e)})')
        i = int(rng.integers(len(self.source)))
    views = [self._augment(clip, rng) for _ in range(cfg.num_sample)]
    out = {'video': np.stack([v['video'] for v in views]),
           'label': np.full(cfg.num_sample, record['label'], np.int32),
           'skipped': np.int32(skipped), 'index': np.int64(i)}
    for key in views[0]:
      if key != 'video':
        out[key] = np.stack([v[key] for v in views])
    return out

  def _augment(self, clip, rng) -> dict[str, np.ndarray]:
    cfg = self.cfg
    if self.task == 'pretrain':
      video = augment.pretrain_transform(rng, clip, cfg.input_size)  # uint8: normalised on device
      grid = grid_for(cfg.num_frames, cfg.input_size, cfg.input_size, cfg.tubelet_size, cfg.patch_size)
      m = masking.sample_masks(rng, grid, cfg.mask_type, cfg.mask_ratio, cfg.decoder_mask_type,
                               cfg.decoder_mask_ratio)
      return {'video': video, 'visible_idx': m['visible_idx'], 'pred_idx': m['pred_idx'],
              'loss_weight': m['loss_weight']}
    video = augment.finetune_transform(rng, clip, cfg.input_size, flip=cfg.flip, rand_aug=cfg.rand_augment,
                                       erase_prob=cfg.erase_prob, scale=tuple(cfg.crop_scale),
                                       mean=tuple(cfg.mean), std=tuple(cfg.std))
    return {'video': video.astype(np.float32)}


class EvalExample:
  """index → every test view of one video: clips × crops, uint8, or `valid=False` zeros when it cannot be read."""

  def __init__(self, source, cfg, error_dir: str | None, multi_view: bool):
    self.source, self.cfg, self.multi_view = source, cfg, multi_view
    self.reporter = ErrorReporter(error_dir)

  @property
  def num_views(self) -> int:
    return self.cfg.test_num_segment * self.cfg.test_num_crop if self.multi_view else 1

  def __call__(self, index) -> dict[str, Any]:
    cfg, i = self.cfg, int(index)
    record = self.source[i]
    try:
      views = self._views(record)
      valid = True
    except Exception as e:
      self.reporter.report(record.get('path', str(i)), _reason(e))
      views = np.zeros((self.num_views, cfg.num_frames, cfg.input_size, cfg.input_size, 3), np.uint8)
      valid = False
    return {'video': views, 'label': np.int32(record['label']), 'valid': np.bool_(valid), 'index': np.int64(i)}

  def _views(self, record) -> np.ndarray:
    cfg = self.cfg
    if not self.multi_view:
      choose = (lambda n: sampling.segment_val_indices(n, cfg.num_frames)) if cfg.sampling == 'segment' else (
          lambda n: sampling.dense_val_indices(n, cfg.num_frames, cfg.sampling_rate))
      clip, _ = decode.read_clip(record, choose, threads=cfg.decode_threads)
      return geometry.center_crop_view(clip, cfg.short_side, cfg.input_size)[None]
    clips_idx = []

    def choose(n):  # every test clip's frames, each decoded once
      clips_idx.append(sampling.segment_test_indices(n, cfg.num_frames, cfg.test_num_segment)
                       if cfg.sampling == 'segment' else
                       sampling.dense_test_indices(n, cfg.num_frames, cfg.sampling_rate, cfg.test_num_segment))
      return np.unique(clips_idx[0])
    frames, flat = decode.read_clip(record, choose, threads=cfg.decode_threads)
    lookup = {int(f): k for k, f in enumerate(flat)}
    views = []
    for clip_idx in clips_idx[0]:
      clip = frames[[lookup[int(f)] for f in clip_idx]]
      views += geometry.eval_views(clip, cfg.short_side, cfg.input_size, cfg.test_num_crop)
    return np.stack(views)


class MixBatch:
  """Mixup / CutMix on one process's fine-tuning batch, on host, after batching (where the official code mixes:
  per GPU batch, before the forward pass). Adds `target` (B, num_classes) soft labels; `label` stays the hard one."""

  def __init__(self, cfg, num_classes: int):
    self.cfg, self.num_classes = cfg, num_classes

  def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
    c = self.cfg
    video, target = mixing.mixup_cutmix(rng, batch['video'], batch['label'], self.num_classes, c.mixup, c.cutmix,
                                        c.mix_prob, c.mix_switch_prob, c.label_smoothing)
    return {**batch, 'video': video, 'target': target.astype(np.float32)}


# ---------------------------------------------------------------------------------------------------------------
# The graph


def _flatten_samples(batch: dict) -> dict:
  """(B, k, ...) per-view fields → (B·k, ...): the k repeated samples join the batch (V2's collate)."""
  out = {}
  for key, value in batch.items():
    if key in ('skipped', 'index'):
      out[key] = value
    else:
      out[key] = value.reshape((-1,) + value.shape[2:])
  return out


def _process(index: int | None, count: int | None) -> tuple[int, int]:
  if index is None or count is None:
    import jax
    return jax.process_index(), jax.process_count()
  return index, count


def _worker_processes(it: grain.IterDataset, cfg) -> grain.IterDataset:
  if cfg.workers <= 0:
    return it
  # Grain's worker processes read absl flags; outside absl.app.run (notebooks, tests, scripts) they are unparsed
  # and every worker would die with UnparsedFlagAccessError. Defaults are what we want there.
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.workers, per_worker_buffer_size=cfg.prefetch))


def _label(source, i: int) -> int:
  items = getattr(source, 'items', None)  # list sources hold (path, label) in memory; others read the record
  return int(items[i][1]) if items is not None else int(source[i]['label'])


def train_indices(source, subset_per_class: int = 0) -> list[int]:
  """The source indices a training run reads: all, or the first `subset_per_class` of each class."""
  if subset_per_class <= 0:
    return list(range(len(source)))
  if hasattr(source, 'require_labels'):
    source.require_labels(f'data.subset_per_class={subset_per_class}')
  taken: dict[int, int] = {}
  keep = []
  for i in range(len(source)):
    label = _label(source, i)
    if taken.get(label, 0) < subset_per_class:
      taken[label] = taken.get(label, 0) + 1
      keep.append(i)
  return keep


def num_train_videos(cfg, split: str = 'train', num_classes: int | None = None) -> int:
  """How many videos an epoch of `train_dataset` covers (all processes together)."""
  return len(train_indices(make_source(cfg, split, num_classes), cfg.subset_per_class))


class ProcessShare(grain.MapDataset):
  """This process's part of a global stream cut into global batches of `local · count` consecutive elements: the
  `index`-th run of `local` elements of each. The assembled global batch (processes in order, as
  `make_array_from_process_local_data` lays them out) is then the same for any number of processes."""

  def __init__(self, parent: grain.MapDataset, local: int, index: int, count: int):
    super().__init__(parent)
    self._local, self._index, self._count = local, index, count
    self._length = len(parent) // (local * count) * local

  def __len__(self) -> int:
    return self._length

  def _global(self, i: int) -> int:
    return (i // self._local) * self._local * self._count + self._index * self._local + i % self._local

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self.slice(i)
    return self._parent[self._global(i)]

  def __str__(self) -> str:
    return f'ProcessShare(local={self._local}, process {self._index} of {self._count})'


def train_dataset(cfg, task: str, batch_size: int, seed: int, *, num_classes: int | None = None,
                  error_dir: str | None = None, split: str = 'train', num_epochs: int | None = None,
                  process_index: int | None = None, process_count: int | None = None) -> grain.IterDataset:
  """Per-process training batches. `batch_size` is this process's number of videos (× num_sample clips).

  The order and the augmentation draws are those of one global stream (shuffled with `seed`, each example's
  randomness keyed by its global position), of which each process reads its share of every global batch: a run
  on P processes sees exactly the global batches of a run on one. (Mixup/CutMix pair clips within each process's
  batch, as the official per-GPU collate does, so those runs depend on the process count.)"""
  source = make_source(cfg, split, num_classes)
  process_index, process_count = _process(process_index, process_count)
  ds = grain.MapDataset.source(train_indices(source, cfg.subset_per_class))
  ds = ds.shuffle(seed=seed).repeat(num_epochs)
  ds = ds.random_map(TrainExample(source, cfg, task, error_dir), seed=seed)
  if process_count > 1:
    ds = ProcessShare(ds, batch_size, process_index, process_count)
  ds = ds.batch(batch_size, drop_remainder=True).map(_flatten_samples)
  if task != 'pretrain' and (cfg.mixup > 0 or cfg.cutmix > 0):
    if not num_classes:
      raise ValueError('mixup/cutmix needs num_classes (model.num_classes); set data.mixup=data.cutmix=0 to disable')
    ds = ds.random_map(MixBatch(cfg, num_classes), seed=seed + 1)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=cfg.prefetch))
  return _worker_processes(it, cfg)


def eval_dataset(cfg, batch_size: int, *, num_classes: int | None = None, error_dir: str | None = None,
                 split: str = 'val', multi_view: bool = True, process_index: int | None = None,
                 process_count: int | None = None, indices=None) -> grain.IterDataset:
  """Per-process evaluation batches in a fixed order; every video (of `indices`, default all) appears once
  (last batch may be smaller)."""
  source = make_source(cfg, split, num_classes)
  process_index, process_count = _process(process_index, process_count)
  chosen = list(range(len(source))) if indices is None else [int(i) for i in indices]
  ds = grain.MapDataset.source(chosen)[process_index::process_count]
  ds = ds.map(EvalExample(source, cfg, error_dir, multi_view)).batch(batch_size, drop_remainder=False)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=cfg.prefetch))
  return _worker_processes(it, cfg)


class FailureMonitor:
  """Counts load attempts from the batches' `skipped` field; stops a source that fails too often early on."""

  def __init__(self, max_share: float = 0.5, window: int = 100):
    self.max_share, self.window = max_share, window
    self.attempts = 0
    self.failures = 0
    self.total_skipped = 0

  def update(self, batch: dict) -> int:
    skipped = int(np.sum(batch['skipped']))
    self.total_skipped += skipped
    if self.attempts < self.window:
      self.attempts += len(np.atleast_1d(batch['skipped'])) + skipped
      self.failures += skipped
      if self.failures > self.max_share * self.window or (
          self.attempts >= self.window and self.failures > self.max_share * self.attempts):
        raise DataError(f'{self.failures} of the first {self.attempts} videos failed to load (more than '
                        f'{self.max_share:.0%}); see data_errors.jsonl for the paths and reasons')
    return skipped

  def metrics(self) -> dict[str, int]:
    """For the training log: videos replaced so far in this process."""
    return {'data/skipped': self.total_skipped}
