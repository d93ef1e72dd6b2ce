"""The entry point of every task:

    python -m vmae_jax.main --config=configs/vitb_finetune.py:dataset=ssv2[,smoke] --workdir=DIR [--config.X=V ...]

An existing workdir is resumed (never refused); a finished one exits 0 without training further. A user error
(an unknown or misspelt field, a wrong type or value, a bad config-file argument, a missing file, list or
checkpoint) stops the run before anything is built or compiled: one line on stderr naming the field or file and
what is allowed, exit code 2 (vmae_jax/train/errors.py); `--debug` or VMAE_JAX_DEBUG=1 adds the traceback. A
non-finite loss stops training with exit code 1.
"""
from __future__ import annotations

import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from vmae_jax.train import errors

PROG = 'python -m vmae_jax.main'
_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file (configs/*.py[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results (resumed if it '
                                                'exists).')
flags.DEFINE_bool('debug', False, f'On an error, show its traceback too (or set {errors.DEBUG_ENV}=1).')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str) -> dict:
  """Run (or resume) the task of `config` in `workdir`; returns the results dict."""
  if config.task == 'demo':
    from vmae_jax.train import demo
    return demo.run(config, workdir)
  import jax

  from vmae_jax.train import schema
  schema.check(config, jax.device_count(), jax.process_count())   # fails fast, before the trainer's imports
  from vmae_jax.train.trainer import Trainer
  return Trainer(config, workdir).run()


def main(argv) -> int:
  """After absl parsed the flags: run, and turn a user error into its one line and exit code."""
  try:
    if len(argv) > 1:
      raise errors.UsageError(f'unexpected arguments {argv[1:]}: every setting is a flag, e.g. '
                              '--config.FIELD=VALUE')
    for noisy in ('absl', 'orbax', 'jax'):
      logging.getLogger(noisy).setLevel(logging.WARNING)
    from vmae_jax.parallel import distributed
    distributed.maybe_initialize()   # before anything touches a device
    run(_CONFIG.value, _WORKDIR.value)
    return 0
  except Exception as e:
    code = errors.report(e, PROG, (flags.FLAGS.is_parsed() and flags.FLAGS.debug) or errors.debug_requested([]))
    if code is None:
      raise
    return code


# ---------------------------------------------------------------------------------------------------------------
# Flag parsing: absl parses (and ml_collections loads the config file and applies --config.X overrides) before
# main() runs; every failure there is the user's and becomes one line naming the flag or field.


def _config_argument(argv) -> str | None:
  """The value of --config (`PATH[:ARG]`) on the command line, if given."""
  for i, arg in enumerate(argv):
    if arg in ('--config', '-config') and i + 1 < len(argv):
      return argv[i + 1]
    match = re.match(r'^--?config=(.*)$', arg)
    if match:
      return match.group(1)
  return None


def _overrides(argv) -> list[tuple[str, str | None]]:
  """(field path, value text or None) of every --config.FIELD[=VALUE] / --noconfig.FIELD argument."""
  out = []
  for arg in argv:
    match = re.match(r'^--?(?:no)?config\.([^=]+)(?:=(.*))?$', arg)
    if match:
      out.append((match.group(1), match.group(2)))
  return out


def _check_config_file(arg: str | None) -> None:
  if not arg:
    return
  path = arg.split(':', 1)[0]
  if os.path.isfile(path):
    return
  folder = os.path.dirname(path) or '.'
  recipes = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py')) if os.path.isdir(folder) else []
  close = errors.did_you_mean(os.path.splitext(os.path.basename(path))[0], recipes)
  raise errors.UsageError(f'--config={arg}: no such config file' + (
      f' (did you mean {" or ".join(os.path.join(folder, c + ".py") for c in close)}?)' if close else
      f'; {folder} holds: {", ".join(r + ".py" for r in recipes)}' if recipes else ''))


def _load_config(arg: str):
  """The config the file gives (None if it does not load), to name what an override got wrong."""
  import importlib.util
  path, colon, extra = arg.partition(':')
  try:   # as ml_collections' config_flags loads it: get_config() or get_config(ARG)
    spec = importlib.util.spec_from_file_location('vmae_jax_user_config', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(extra) if colon else module.get_config()
  except Exception:
    return None


_KINDS = {bool: 'true or false', int: 'an int', float: 'a number', str: 'a string', tuple: 'a tuple, e.g. (1, 2)'}


def _chain(error: BaseException):
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def flag_error(error: BaseException, argv) -> BaseException:
  """The user error behind a failure of absl's flag parsing, as an exception whose message is the one line."""
  from vmae_jax.models.config import ConfigError
  from vmae_jax.train import schema
  chain = list(_chain(error))
  raised = [c for c in chain[1:] if errors.classify(c) and not isinstance(c, flags.Error)]
  if raised:   # e.g. the config file's own ConfigError for an unknown ':dataset=' (the first one raised)
    return raised[-1]
  arg = _config_argument(argv)
  message = errors.one_line(error)
  if arg is None and _overrides(argv):
    return errors.UsageError(f'--config.{_overrides(argv)[0][0]} sets a field of the config file, but no '
                             '--config=configs/FILE.py[:ARG] is given')
  config = _load_config(arg) if arg else None
  if config is not None and hasattr(config, 'keys'):
    for path, _ in _overrides(argv):
      if not schema.has_field(config, path):
        return ConfigError(schema.unknown_field(path, config) + f' (--config.{path})')
    match = re.match(r'^flag --config\.([\w.]+)=(.*?): ', message)
    if match and schema.has_field(config, match.group(1)):
      path, value = match.group(1), match.group(2)
      current = config
      for part in path.split('.'):
        current = current[part]
      kind = _KINDS.get(type(current), type(current).__name__)
      return ConfigError(f'config field {path} must be {kind}, got {value!r} (--config.{path}={value})')
  if isinstance(error, flags.Error) and not message.startswith('flag --config='):
    return errors.UsageError(message)
  # the config file itself failed to load: its first exception, where in the file it was raised
  first = chain[-1]
  path = os.path.abspath((arg or '').split(':', 1)[0])
  if isinstance(first, SyntaxError) and first.filename:
    where = f' at {first.filename}:{first.lineno}'
  else:
    import traceback
    frames = [f for f in traceback.extract_tb(first.__traceback__) if os.path.abspath(f.filename) == path]
    where = f' at {frames[-1].filename}:{frames[-1].lineno}' if frames else ''
  return errors.UsageError(f'--config={arg}: the config file failed{where}: {type(first).__name__}: '
                           f'{errors.one_line(first)}')


def parse_flags(argv):
  """`app.run`'s flags parser: absl's parsing, with its failures turned into one line and exit code 2."""
  debug = errors.debug_requested(argv)
  try:
    _check_config_file(_config_argument(argv))
    try:
      return flags.FLAGS(argv)
    except Exception as e:
      raise flag_error(e, argv) from e
  except Exception as e:
    code = errors.report(e, PROG, debug)
    if code is None:
      raise
    sys.exit(code)


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)
