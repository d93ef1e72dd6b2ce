"""Annotation lists and class lists: the official `<split>.csv` files and `classes.txt`-style name lists.

Both the list source (sources.py) and the TFDS packer (tfds_builder.py) read lists through here, so neither needs
the other (see docs/data.md, "Sources" and "Preparing lists"). The split names themselves live in
`vmae_jax.constants.SPLITS`; a split's list file is `<split>.csv`. The Kinetics class lists and the official
K710 → K400/600/700 index maps ship with the package (`kinetics_file`; vmae_jax/data/kinetics/README.md).
"""
from __future__ import annotations

import os

from vmae_jax.constants import SPLITS

SPLIT_FILES = {split: f'{split}.csv' for split in SPLITS}   # split → its list file, in train/val/test order


KINETICS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'kinetics')


def kinetics_file(name: str) -> str:
  """Path of a shipped Kinetics file, e.g. 'label_map_k400.txt' or 'label_710to400.json'."""
  path = os.path.join(KINETICS_DIR, name)
  if not os.path.isfile(path):
    raise SourceError(f'{name}: not a shipped Kinetics file; there are {sorted(os.listdir(KINETICS_DIR))}')
  return path


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
