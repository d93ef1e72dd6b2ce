"""The entry point of every task:

    python -m vmae_jax.main --config=configs/vitb_finetune.py:dataset=ssv2[,smoke] --workdir=DIR [--config.X=V ...]

An existing workdir is resumed (never refused); a finished one exits 0 without training further. Config errors
(unknown field, wrong type, inconsistent values) stop the run before anything is built or compiled, exit code 2.
"""
from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file (configs/*.py[:arg]).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and results (resumed if it '
                                                'exists).')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir: str) -> dict:
  """Run (or resume) the task of `config` in `workdir`; returns the results dict."""
  if config.task == 'demo':
    from vmae_jax.train import demo
    return demo.run(config, workdir)
  from vmae_jax.train.trainer import Trainer
  return Trainer(config, workdir).run()


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for noisy in ('absl', 'orbax', 'jax'):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  from vmae_jax.models.config import ConfigError
  from vmae_jax.parallel import distributed
  from vmae_jax.weights.initialize import InitError
  try:
    distributed.maybe_initialize()   # before anything touches a device
  except distributed.DistributedConfigError as e:
    print(f'vmae_jax.main: config error: {e}', file=sys.stderr, flush=True)
    return 2
  from vmae_jax.data.pipeline import DataError
  from vmae_jax.train.trainer import TrainingError
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, InitError) as e:
    print(f'vmae_jax.main: config error: {e}', file=sys.stderr, flush=True)
    return 2
  except (TrainingError, DataError) as e:
    print(f'vmae_jax.main: training stopped: {e}', file=sys.stderr, flush=True)
    return 1
  return 0


if __name__ == '__main__':
  app.run(lambda argv: sys.exit(main(argv)))
