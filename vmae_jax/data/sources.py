"""Random-access sources of video records: the official annotation lists, TFDS shards, the synthetic dataset.

A record is a dict: `path` (the name used in messages), `label` (int), and the bytes as `file` (a path),
`video_bytes` or `jpeg_frames` (see decode.py). Sources are plain picklable objects with `__len__`/`__getitem__`, so
Grain can read them from worker processes. Reading the list files themselves is annotations.py's job (docs/data.md,
"Sources").
"""
from __future__ import annotations

import os
from typing import Any

from vmae_jax.data.annotations import SPLIT_FILES, UNLABELLED, SourceError, read_list


class ListSource:
  """The official layout: `<path>/{train,val,test}.csv`, one `relative/path label` per line (space or comma),
  paths joined to `root`. Bad lines, labels outside [0, num_classes) and empty lists fail at construction. Without
  `num_classes` (pretraining) VideoMAE V2's unlabelled lists (`path 0 -1`) are read too: `unlabelled` counts their
  videos, whose label is -1 (annotations.read_list)."""

  def __init__(self, path: str, split: str, root: str = '', num_classes: int | None = None):
    if split not in SPLIT_FILES:
      raise SourceError(f'split {split!r} unknown; choose from {sorted(SPLIT_FILES)}')
    self.list_file = os.path.join(path, SPLIT_FILES[split])
    if not os.path.isfile(self.list_file):
      raise SourceError(f'{self.list_file}: annotation list not found (data.path={path!r}, split={split!r})')
    self.root = root
    self.items = [(rel, label) for _, rel, label in read_list(self.list_file, num_classes)]
    if not self.items:
      raise SourceError(f'{self.list_file}: the annotation list is empty')
    self.unlabelled = sum(label == UNLABELLED for _, label in self.items)

  def require_labels(self, why: str) -> None:
    """SourceError when the list has videos without a label; `why` names the setting that needs them."""
    if self.unlabelled:
      raise SourceError(f'{self.list_file}: {self.unlabelled} of its {len(self.items)} videos have no label (a '
                        f'VideoMAE V2 pretraining list), but {why} needs labels')

  def __len__(self) -> int:
    return len(self.items)

  def __getitem__(self, index: int) -> dict[str, Any]:
    rel, label = self.items[index]
    return {'path': rel, 'file': os.path.join(self.root, rel), 'label': label}


def make_source(data_config, split: str, num_classes: int | None = None):
  """The source a data config asks for: `source` = 'list' | 'tfds' | 'synthetic' (default when `path` is empty)."""
  kind = data_config.source or ('synthetic' if not data_config.path else 'list')
  if kind == 'list':
    if not data_config.path:
      raise SourceError("data.source='list' needs data.path (the folder holding train.csv/val.csv/test.csv)")
    return ListSource(data_config.path, split, data_config.root or '', num_classes)
  # Imported on use: tensorflow_datasets adds ~0.5 s to every process (Grain workers too) that never reads TFDS, and
  # the synthetic cache is only needed when asked for.
  if kind == 'synthetic':
    from vmae_jax.data import synthetic_cache
    folder = synthetic_cache.ensure_synthetic(**dict(data_config.synthetic))
    return ListSource(folder, split, folder, num_classes)
  if kind == 'tfds':
    from vmae_jax.data import tfds_builder
    if not data_config.path:
      raise SourceError("data.source='tfds' needs data.path (the TFDS data_dir written by the builder)")
    return tfds_builder.load_source(data_config.path, split)
  raise SourceError(f"data.source={kind!r} unknown; choose 'list', 'tfds' or 'synthetic'")
