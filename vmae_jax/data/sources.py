"""Random-access sources of video records: the official annotation lists, TFDS shards, the synthetic dataset.

A record is a dict: `path` (the name used in messages), `label` (int), and the bytes as `file` (a path),
`video_bytes` or `jpeg_frames` (see decode.py). Sources are plain picklable objects with `__len__`/`__getitem__`, so
Grain can read them from worker processes.
"""
from __future__ import annotations

import os
from typing import Any

SPLIT_FILES = {'train': 'train.csv', 'val': 'val.csv', 'test': 'test.csv'}


class SourceError(ValueError):
  """An annotation list or source setting is unusable; the message names the file and line or the field."""


def read_list(list_file: str, num_classes: int | None = None) -> list[tuple[int, str, int]]:
  """(line number, relative path, label) of every non-empty, non-comment line of an official list.

  The label is the last space/tab/comma-separated token; everything before it is the path (paths may hold spaces).
  A line without a label, a label that is not an integer, or one outside [0, num_classes) is a SourceError naming
  the file and line.
  """
  items = []
  with open(list_file) as f:
    for lineno, raw in enumerate(f, 1):
      line = raw.strip()
      if not line or line.startswith('#'):
        continue
      cut = max(line.rfind(' '), line.rfind('\t'), line.rfind(','))
      rel, label_text = line[:cut].rstrip(' \t,'), line[cut + 1:]
      if cut < 0 or not rel:
        raise SourceError(f'{list_file}:{lineno}: expected "relative/path label", got {line!r}')
      try:
        label = int(label_text)
      except ValueError:
        raise SourceError(f'{list_file}:{lineno}: label {label_text!r} is not an integer') from None
      if label < 0 or (num_classes is not None and label >= num_classes):
        raise SourceError(f'{list_file}:{lineno}: label {label} outside [0, {num_classes}) '
                          f'(model.num_classes={num_classes})')
      items.append((lineno, rel, label))
  return items


def read_class_names(path: str) -> list[str]:
  """Class names, one per line in label order (blank lines and '#' comments skipped); duplicates are an error."""
  names: list[str] = []
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      name = line.strip()
      if not name or name.startswith('#'):
        continue
      if name in names:
        raise SourceError(f'{path}:{lineno}: class {name!r} listed twice')
      names.append(name)
  if not names:
    raise SourceError(f'{path}: no class names')
  return names


class ListSource:
  """The official layout: `<path>/{train,val,test}.csv`, one `relative/path label` per line (space or comma),
  paths joined to `root`. Bad lines, labels outside [0, num_classes) and empty lists fail at construction."""

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
  if kind == 'synthetic':
    from vmae_jax.data import synthetic
    folder = synthetic.ensure_synthetic(**dict(data_config.synthetic))
    return ListSource(folder, split, folder, num_classes)
  if kind == 'tfds':
    from vmae_jax.data import tfds_builder
    if not data_config.path:
      raise SourceError("data.source='tfds' needs data.path (the TFDS data_dir written by the builder)")
    return tfds_builder.load_source(data_config.path, split)
  raise SourceError(f"data.source={kind!r} unknown; choose 'list', 'tfds' or 'synthetic'")
