"""One error path for user mistakes, shared by every command line: `python -m vmae_jax.main`, `vmae_jax.convert`,
`vmae_jax.features`, `vmae_jax.visualize`, `vmae_jax.bench` and `vmae_jax.data.prepare`.

A user error (a config field, a flag, a data list, a file, a checkpoint) ends the command with one line on stderr,
`<command>: <kind>: <message>`, and exit code 2; the message names the field, file or key and what is allowed. A
non-finite loss (`TrainingError`) is one line too, with exit code 1. Any other exception is a bug and keeps its
traceback. `--debug` on the command line, or VMAE_JAX_DEBUG=1 in the environment, prints the traceback before the
line (README.md, "Training").

The exception classes are named in `USER_ERRORS` by module and class name rather than imported: this module
imports nothing heavy (a command fails fast, before jax loads), and an exception's class is loaded whenever one is
raised. Subclasses count (the match runs over the class's MRO), so e.g. every `CheckpointError` subclass is a user
error too.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import os
import sys
import traceback
from typing import Callable, Iterable, Sequence

DEBUG_ENV = 'VMAE_JAX_DEBUG'
USER_ERROR_EXIT = 2


class UsageError(ValueError):
  """A command-line argument, or the file it names, is unusable; the message names the flag and what is allowed."""


# (module, class) → (exit code, the kind the line starts with). Every class here is a ValueError/RuntimeError whose
# message already names its field, file or key.
USER_ERRORS: dict[tuple[str, str], tuple[int, str]] = {
    (__name__, 'UsageError'): (2, 'error'),
    ('absl.flags._exceptions', 'Error'): (2, 'error'),
    ('absl.app', 'UsageError'): (2, 'error'),
    ('vmae_jax.models.config', 'ConfigError'): (2, 'config error'),
    ('vmae_jax.parallel.distributed', 'DistributedConfigError'): (2, 'config error'),
    ('vmae_jax.weights.initialize', 'InitError'): (2, 'config error'),
    ('vmae_jax.weights.checkpoint', 'CheckpointError'): (2, 'checkpoint error'),
    ('vmae_jax.weights.videomae_import', 'ConvertError'): (2, 'error'),
    ('vmae_jax.weights.official_layout', 'LayoutError'): (2, 'error'),
    ('vmae_jax.weights.clip_import', 'ClipLayoutError'): (2, 'error'),
    ('vmae_jax.weights.export', 'ExportError'): (2, 'error'),
    ('vmae_jax.data.annotations', 'SourceError'): (2, 'data error'),
    ('vmae_jax.data.prepare', 'PrepareError'): (2, 'error'),
    ('vmae_jax.data.tfds_builder', 'BuildError'): (2, 'data error'),
    ('vmae_jax.data.decode', 'DecodeError'): (2, 'data error'),   # a video the user named cannot be read
    # the user's videos fail to load beyond data.max_failure_share / max_replacements: their data, not a bug
    ('vmae_jax.data.pipeline', 'DataError'): (2, 'data error'),
    ('vmae_jax.train.trainer', 'TrainingError'): (1, 'training stopped'),   # a non-finite loss
}
# A path the user gave that is missing or unreadable (the message is the path and the reason).
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def classify(error: BaseException) -> tuple[int, str] | None:
  """(exit code, kind) for a user error, None for anything else."""
  for klass in type(error).__mro__:
    module = klass.__module__
    if module == '__main__':   # a class of the module run by `python -m`: named by its real name
      module = getattr(getattr(sys.modules['__main__'], '__spec__', None), 'name', module)
    found = USER_ERRORS.get((module, klass.__qualname__))
    if found:
      return found
  if isinstance(error, FILE_ERRORS):
    return USER_ERROR_EXIT, 'error'
  return None


def one_line(error: BaseException) -> str:
  """The error's message on one line."""
  if isinstance(error, FILE_ERRORS) and error.filename:
    text = f'{error.filename}: {error.strerror or type(error).__name__}'
  else:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  return ' '.join(part.strip() for part in text.splitlines() if part.strip()) or type(error).__name__


def debug_requested(argv: Sequence[str] | None = None) -> bool:
  """`--debug` among the arguments (default sys.argv) or VMAE_JAX_DEBUG set to anything but '', '0', 'false'."""
  argv = sys.argv[1:] if argv is None else argv
  return os.environ.get(DEBUG_ENV, '').strip().lower() not in ('', '0', 'false', 'no') or '--debug' in argv


def report(error: BaseException, prog: str, debug: bool = False) -> int | None:
  """Print a user error as one line (after its traceback when `debug`) and return its exit code; None (nothing
  printed) when `error` is not a user error."""
  found = classify(error)
  if found is None:
    return None
  if debug:
    traceback.print_exception(error)
  code, kind = found
  print(f'{prog}: {kind}: {one_line(error)}', file=sys.stderr, flush=True)
  return code


def cli(prog: str) -> Callable:
  """Decorator for a command's `main(argv=None) -> int`: a user error becomes its one line and exit code."""
  def wrap(main):
    @functools.wraps(main)
    def run(argv=None):
      try:
        return main(argv)
      except Exception as e:
        code = report(e, prog, debug_requested(argv))
        if code is None:
          raise
        return code
    return run
  return wrap


class ArgumentParser(argparse.ArgumentParser):
  """argparse with `--debug` and one-line errors (exit code 2, argparse's own) instead of usage + message."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.add_argument('--debug', action='store_true',
                      help=f'on an error, show its traceback too (or set {DEBUG_ENV}=1)')

  def error(self, message: str):
    self.exit(USER_ERROR_EXIT, f'{self.prog}: error: {message} (--help lists the arguments)\n')


def at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
  """An argparse type: an int ≥ `minimum` (and ≤ `maximum`)."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'{text!r} is not an int') from None
    if value < minimum or (maximum is not None and value > maximum):
      raise argparse.ArgumentTypeError(f'must be an int ≥ {minimum}, got {value}' if maximum is None else
                                       f'must be an int in [{minimum}, {maximum}], got {value}')
    return value
  parse.__name__ = f'int ≥ {minimum}'
  return parse


def did_you_mean(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
  """Up to `limit` candidates close to `name`, closest first: for a dotted `name`, the same last part in another
  section (`optim.warmup_steps` → `warmup_steps`), then close spellings in its own section, then anywhere
  (`optim.warmup_steps` → `warmup_epochs`)."""
  candidates = [c for c in dict.fromkeys(candidates) if c != name]
  leaf = name.rsplit('.', 1)[-1]
  parent = name.rpartition('.')[0]
  same_leaf = [c for c in candidates if c.rsplit('.', 1)[-1] == leaf]
  siblings = [c for c in candidates if c.rpartition('.')[0] == parent]
  by_leaf = {}
  for c in siblings + candidates:   # a leaf name seen in the own section first
    by_leaf.setdefault(c.rsplit('.', 1)[-1], c)
  near_sibling = difflib.get_close_matches(leaf, [c.rsplit('.', 1)[-1] for c in siblings], n=limit, cutoff=0.7)
  near_leaf = difflib.get_close_matches(leaf, list(by_leaf), n=limit, cutoff=0.75)
  found = same_leaf + [by_leaf[k] for k in near_sibling + near_leaf]
  return list(dict.fromkeys(found))[:limit]
