"""Multi-process start-up: one JAX process per host (TPU VM worker, or GPU node), all running the same command.

`maybe_initialize()` runs before anything touches a device and calls `jax.distributed.initialize` when the
environment says this is one process of several:

  * `JAX_COORDINATOR_ADDRESS` (host:port of process 0) with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`, and
    optionally `JAX_LOCAL_DEVICE_IDS` (comma-separated): explicit, what launch/gpu_slurm.sh exports and what the
    two-process CPU test uses;
  * a Slurm step with more than one task (`SLURM_NTASKS` > 1), or a multi-host Cloud TPU slice (`TPU_WORKER_HOSTNAMES`
    lists several hosts), or `VMAE_MULTIHOST=1`: JAX's own cluster auto-detection.

Otherwise the run is single-process and nothing is called. After initialisation, `jax.devices()` lists every
device of every process; each process feeds its own share of every batch (data/pipeline.py slices the dataset by
`jax.process_index()`), orbax writes checkpoints collectively, and only process 0 logs and writes metrics.
"""
from __future__ import annotations

import os

import jax
import numpy as np


class DistributedConfigError(ValueError):
  """The multi-process environment variables are incomplete or inconsistent."""


def _env_int(name: str) -> int:
  value = os.environ.get(name)
  if value is None:
    raise DistributedConfigError(f'JAX_COORDINATOR_ADDRESS is set, so {name} must be set too')
  try:
    return int(value)
  except ValueError:
    raise DistributedConfigError(f'environment variable {name}={value!r} is not an integer') from None


def multiprocess_requested(env=None) -> str | None:
  """'explicit', 'auto' or None (single process), from the environment."""
  env = os.environ if env is None else env
  if env.get('JAX_COORDINATOR_ADDRESS'):
    return 'explicit'
  if int(env.get('SLURM_NTASKS', '1') or 1) > 1:
    return 'auto'
  if len([h for h in env.get('TPU_WORKER_HOSTNAMES', '').split(',') if h.strip()]) > 1:
    return 'auto'
  if env.get('VMAE_MULTIHOST') == '1':
    return 'auto'
  return None


def maybe_initialize() -> bool:
  """Initialise jax.distributed if the environment asks for it (idempotent); True when multi-process."""
  mode = multiprocess_requested()
  if mode is None:
    return False
  if jax.distributed.is_initialized():
    return True
  if mode == 'explicit':
    num, pid = _env_int('JAX_NUM_PROCESSES'), _env_int('JAX_PROCESS_ID')
    if not 0 <= pid < num:
      raise DistributedConfigError(f'JAX_PROCESS_ID={pid} is outside [0, JAX_NUM_PROCESSES={num})')
    local = os.environ.get('JAX_LOCAL_DEVICE_IDS')
    jax.distributed.initialize(coordinator_address=os.environ['JAX_COORDINATOR_ADDRESS'], num_processes=num,
                               process_id=pid,
                               local_device_ids=[int(i) for i in local.split(',')] if local else None)
  else:
    jax.distributed.initialize()
  return True


# --- agreeing across processes (checkpoint resume, the workdir lock) ----------------------------------------------
def is_process_0() -> bool:
  return jax.process_index() == 0


def on_every_process(flag: bool) -> bool:
  """Whether `flag` holds on every process (the same answer on all of them)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


def from_process_0(values: tuple[int, ...]) -> tuple[int, ...]:
  """Process 0's `values` (ints), on every process."""
  if jax.process_count() == 1:
    return values
  from jax.experimental import multihost_utils
  return tuple(int(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, np.int64)))
