"""Annotation lists and class lists: the official `<split>.csv` files and `classes.txt`-style name lists.

Both the list source (sources.py) and the TFDS packer (tfds_builder.py) read lists through here, so neither needs
the other (see docs/data.md, "Sources" and "Preparing lists"). The split names themselves live in
`vmae_jax.constants.SPLITS`; a split's list file is `<split>.csv`. The Kinetics class lists and the official
K710 → K400/600/700 index maps ship with the package (`kinetics_file`; vmae_jax/data/kinetics/README.md).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

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


UNLABELLED = -1   # the label of a VideoMAE V2 pretraining line, which has none


@contextlib.contextmanager
def open_list(path: str) -> Iterator[Iterator[str]]:
  """The lines of a text list; SourceError naming the file when it is missing or not UTF-8 text."""
  try:
    with open(path, encoding='utf-8') as f:
      yield f
  except FileNotFoundError:
    raise SourceError(f'{path}: no such list file') from None
  except UnicodeDecodeError as e:
    raise SourceError(f'{path}: not a UTF-8 text list (byte {e.start}: {e.reason}); a list has one '
                      '"relative/path label" per line') from None


def _int(text: str) -> int | None:
  try:
    return int(text)
  except ValueError:
    return None


def _split_last(line: str) -> tuple[str, str]:
  """(everything before the last space/tab/comma-separated token, that token); ('', line) without a separator."""
  cut = max(line.rfind(' '), line.rfind('\t'), line.rfind(','))
  return (line[:cut].rstrip(' \t,'), line[cut + 1:]) if cut >= 0 else ('', line)


def parse_line(line: str) -> tuple[str, str, bool]:
  """(path, label text, is a V2 pretraining line) of one stripped list line.

  Two layouts: the official fine-tuning lists, `path label` (the label is the last space/tab/comma-separated
  token; paths may hold spaces), and VideoMAE V2's pretraining lists, `path start_index -1` (OpenGVLab/VideoMAEv2
  docs/DATASET.md: "video_path 0 -1" for a video; no label). A line ending in an integer and -1 is read as the
  latter."""
  head, last = _split_last(line)
  if last == str(UNLABELLED) and head:
    path, start = _split_last(head)
    if path and _int(start) is not None:
      return path, last, True
  return head, last, False


def read_list(list_file: str, num_classes: int | None = None) -> list[tuple[int, str, int]]:
  """(line number, relative path, label) of every non-empty, non-comment line of an official list.

  A line without a label, a label that is not an integer, or one outside [0, num_classes) is a SourceError naming
  the file and line. `num_classes=None` means the labels are not used (pretraining): a VideoMAE V2 pretraining
  list (`path 0 -1` per line) is read then, each video with label UNLABELLED (-1); with a label space, such a line
  is refused.
  """
  items = []
  with open_list(list_file) as f:
    for lineno, raw in enumerate(f, 1):
      line = raw.strip()
      if not line or line.startswith('#'):
        continue
      rel, label_text, unlabelled = parse_line(line)
      if not rel:
        raise SourceError(f'{list_file}:{lineno}: expected "relative/path label", got {line!r}')
      label = _int(label_text)
      if label is None:
        raise SourceError(f'{list_file}:{lineno}: label {label_text!r} is not an integer')
      if label == UNLABELLED and num_classes is None:
        items.append((lineno, rel, label))
        continue
      if num_classes is None and label < 0:
        raise SourceError(f'{list_file}:{lineno}: label {label} is negative; a label is ≥ 0, or -1 for none')
      if unlabelled:
        raise SourceError(f'{list_file}:{lineno}: {line!r} is a VideoMAE V2 pretraining line (path start_index -1: '
                          f'no label); this run needs "relative/path label" lines, labels in [0, {num_classes}) '
                          f'(model.num_classes={num_classes})')
      if label < 0 or (num_classes is not None and label >= num_classes):
        raise SourceError(f'{list_file}:{lineno}: label {label} outside [0, {num_classes}) '
                          f'(model.num_classes={num_classes})')
      items.append((lineno, rel, label))
  return items


def read_class_names(path: str) -> list[str]:
  """Class names, one per line in label order (blank lines and '#' comments skipped); duplicates are an error."""
  names: list[str] = []
  with open_list(path) as f:
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
