"""Orbax checkpoints of model parameters plus their ModelConfig, sealed by a checksum manifest so that faults on
disk are found before anything is restored from them.

Layout (an orbax CheckpointManager directory): `<dir>/<step>/{params, model_config}`. `params` holds the parameter
tree (`{'params': ...}`), `model_config` the ModelConfig as JSON, so a checkpoint is self-describing and restores
without any code-side config. Training workdirs keep their checkpoints under `<workdir>/checkpoints` in the same
layout, with more items beside these two: `train_state` (step, optimizer state, EMA), `data_iter` (the Grain
iterator), `config` (the training config as JSON) and, for BatchNorm models, `batch_stats`. The training items are
written and read by `TrainingCheckpoints` below, the only code that names them.

Manifest. Every step a save commits carries `<step>/vmae_manifest.json`: for each file of the step (its path
relative to the step directory) the size and the CRC-32 of its bytes (zlib's; about 2.5 GB/s on one core, and the
files are hashed in parallel threads, so a multi-GB checkpoint costs seconds). A CRC finds what faults do to files,
truncation and flipped bits; it is no defence against deliberate tampering, which is not its job. orbax writes a
step into `<step>.orbax-checkpoint-tmp` and renames it when every item is written; `SealingRename` (orbax's
atomic-rename path with one thing added) writes the manifest right after that rename, in orbax's own commit (process
0, the background thread of async saves), through a temporary file and os.replace. So the manifest is the last file
of a step, and `wait_until_finished` returns only once the step is sealed. A step without a manifest is unverified:
written before manifests existed, or stopped between orbax's rename and the manifest.

Readers. `restore` / `restore_batch_stats` (`vmae_jax.load`, and the training inits that start from a checkpoint)
check the files of the items they read against the manifest and raise CheckpointError naming the first file that
does not match; an unverified step is read as it is (checkpoints written before manifests, or by plain orbax).
Training resumes through `TrainingCheckpoints.resume`: the newest step that verifies and restores; newer steps that
are damaged or unverified are moved to `<workdir>/checkpoints_damaged/<step>` (never deleted), one line each on
stderr with the path and the reason. A workdir whose checkpoints all fail stops with CheckpointError rather than
starting fresh over them. Leftover `*.orbax-checkpoint-tmp` directories (a save cut short) are never restored and
are removed on the next start (orbax's `cleanup_tmp_directories`). A save that fails (disk full, permission) raises
CheckpointWriteError naming the step directory and the OS error; the older steps are kept as they were.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import sys
import zlib
from typing import Callable, Iterable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from vmae_jax.models.config import ModelConfig
from vmae_jax.parallel import distributed

PARAMS = 'params'
MODEL_CONFIG = 'model_config'
BATCH_STATS = 'batch_stats'   # BatchNorm running statistics, for models that have them (UniFormerV2)
TRAIN_STATE, DATA_ITER, CONFIG = 'train_state', 'data_iter', 'config'   # training workdirs only
MANIFEST = 'vmae_manifest.json'
MANIFEST_FORMAT = 1
DAMAGED_DIR = 'checkpoints_damaged'   # beside <workdir>/checkpoints: steps moved aside on resume
_CHUNK = 16 << 20


class CheckpointError(ValueError):
  """A checkpoint path holds no readable checkpoint, or one that does not fit; the message names the path."""


class CheckpointWriteError(CheckpointError):
  """A save failed (disk full, permission, ...); the message names the step directory and the error. The steps
  saved before it are intact."""


def _one_line(e: BaseException, limit: int = 400) -> str:
  text = ' '.join(str(e).split()) or type(e).__name__
  return text if len(text) <= limit else text[:limit] + ' ...'


# --- the manifest -----------------------------------------------------------------------------------------------
def _crc32(path: str) -> tuple[int, int]:
  """(size, CRC-32) of a file, read in chunks (zlib releases the GIL: files hash in parallel threads)."""
  crc, size = 0, 0
  with open(path, 'rb', buffering=0) as f:
    buf = bytearray(max(1, min(_CHUNK, os.fstat(f.fileno()).st_size)))
    view = memoryview(buf)
    while n := f.readinto(buf):
      crc = zlib.crc32(view[:n], crc)
      size += n
  return size, crc


def _hash_all(step_dir: str, rels: list[str]) -> list[tuple[int, int]]:
  with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    return list(pool.map(lambda rel: _crc32(os.path.join(step_dir, rel)), rels))


def write_manifest(step_dir: str | os.PathLike) -> str:
  """Seal a committed step: `<step>/vmae_manifest.json` lists every file of it with size and CRC-32, written
  through a temporary file and os.replace. Returns the manifest path. (Orbax's commit calls it; also the way to
  vouch for an unverified step by hand.)"""
  step_dir = os.fspath(step_dir)
  rels = []
  for dirpath, dirnames, filenames in os.walk(step_dir):
    dirnames.sort()
    for name in sorted(filenames):
      rel = os.path.relpath(os.path.join(dirpath, name), step_dir).replace(os.sep, '/')
      if not rel.startswith(MANIFEST):   # itself and its temporary file
        rels.append(rel)
  lines = [f' {json.dumps(rel)}: {{"size": {size}, "crc32": "{crc:08x}"}}'
           for rel, (size, crc) in zip(rels, _hash_all(step_dir, rels))]
  path = os.path.join(step_dir, MANIFEST)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:   # one file a line
    f.write(f'{{"format": {MANIFEST_FORMAT}, "checksum": "crc32 (zlib)", "files": {{\n' + ',\n'.join(lines) + '}}\n')
  os.replace(tmp, path)
  return path


def verify_step(step_dir: str | os.PathLike, items: Iterable[str] | None = None) -> bool:
  """Check a step against its manifest: True when every listed file has its size and CRC-32 (only the step's own
  files and those of `items`, when given), False when the step has no manifest (unverified). Anything else raises
  CheckpointError naming the file: missing, another size, another checksum, or an unreadable manifest."""
  step_dir = os.fspath(step_dir)
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.isfile(path):
    return False
  try:
    with open(path) as f:
      body = json.load(f)
    files = {rel: (int(v['size']), str(v['crc32'])) for rel, v in body['files'].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f'{path}: unreadable manifest ({_one_line(e)})') from e
  if items is not None:
    items = set(items)
    files = {rel: v for rel, v in files.items() if '/' not in rel or rel.split('/', 1)[0] in items}
  for rel, (size, _) in sorted(files.items()):   # sizes first: cheap, and they find truncation and missing files
    try:
      actual = os.path.getsize(os.path.join(step_dir, rel))
    except OSError:
      raise CheckpointError(f'{step_dir}/{rel}: missing (listed in {MANIFEST})') from None
    if actual != size:
      raise CheckpointError(f'{step_dir}/{rel}: {actual} bytes, {MANIFEST} says {size}')
  rels = sorted(files)
  for rel, (_, crc) in zip(rels, _hash_all(step_dir, rels)):
    if f'{crc:08x}' != files[rel][1]:
      raise CheckpointError(f'{step_dir}/{rel}: checksum mismatch (crc32 {crc:08x}, {MANIFEST} says '
                            f'{files[rel][1]})')
  return True


class SealingRename(ocp.path.atomicity.AtomicRenameTemporaryPath):
  """Orbax's atomic-rename commit (write into `<final>.orbax-checkpoint-tmp`, rename when complete) that also seals
  a step directory with its manifest right after the rename. Orbax finalizes on process 0 only, after every
  process has written its part; item directories (not digit-named) are left alone."""

  async def finalize(self, *args, **kwargs):
    await super().finalize(*args, **kwargs)
    final = os.fspath(self.get_final())
    if os.path.basename(final).isdigit():
      await asyncio.to_thread(write_manifest, final)


# --- converted checkpoints (and the params of training workdirs) -------------------------------------------------
def checkpoint_root(path: str | os.PathLike) -> str:
  """The CheckpointManager directory for a converted checkpoint or a training workdir."""
  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise CheckpointError(f'{path}: no such checkpoint directory')
  nested = os.path.join(path, 'checkpoints')
  return nested if os.path.isdir(nested) else path


def save(directory: str | os.PathLike, params, config: ModelConfig, step: int = 0, batch_stats=None) -> str:
  """Write params + config (+ BatchNorm statistics) as step `step`, sealed with its manifest; returns the step
  directory. Blocks until the write is committed."""
  directory = os.path.abspath(os.fspath(directory))
  params = jax.tree_util.tree_map(np.asarray, params)
  extra = {} if batch_stats is None else {
      BATCH_STATS: ocp.args.StandardSave(jax.tree_util.tree_map(np.asarray, batch_stats))}
  options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False,
                                         temporary_path_class=SealingRename)
  try:
    with ocp.CheckpointManager(directory, item_names=(PARAMS, MODEL_CONFIG, BATCH_STATS), options=options) as mngr:
      mngr.save(step, args=ocp.args.Composite(**extra, **{PARAMS: ocp.args.StandardSave({'params': params}),
                                                 MODEL_CONFIG: ocp.args.JsonSave(config.to_dict())}), force=True)
      mngr.wait_until_finished()
  except (OSError, ValueError) as e:
    raise CheckpointWriteError(f'{directory}/{step}: saving failed ({_one_line(e)})') from e
  return os.path.join(directory, str(step))


def _manager(root: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(root, options=ocp.CheckpointManagerOptions(create=False),
                               item_names=(PARAMS, MODEL_CONFIG, BATCH_STATS))


def _read(mngr: ocp.CheckpointManager, root: str, step: int, **args):
  """mngr.restore of some items, any failure of the files as a CheckpointError naming the step directory."""
  try:
    return mngr.restore(step, args=ocp.args.Composite(**args))
  except (MemoryError, jax.errors.JaxRuntimeError):
    raise   # no room on the device: nothing wrong with the files
  except Exception as e:
    raise CheckpointError(f'{root}/{step}: cannot be read ({_one_line(e)})') from e


def restore_batch_stats(path, abstract, step: int | None = None):
  """The BatchNorm statistics saved beside the parameters (latest or given step), or None if none were saved."""
  root = checkpoint_root(path)
  with _manager(root) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None or not os.path.isdir(os.path.join(root, str(step), BATCH_STATS)):
      return None
    verify_step(os.path.join(root, str(step)), (BATCH_STATS,))
    return _read(mngr, root, step, **{BATCH_STATS: ocp.args.StandardRestore(abstract)})[BATCH_STATS]


def restore(path, abstract_params_for, step: int | None = None):
  """(config, params) of the latest (or given) step, through one manager, checked against the step's manifest.

  `abstract_params_for(config)` gives the parameter tree of ShapeDtypeStructs (with shardings) to restore onto;
  only the parameters are read, never optimizer state (nor checked: a workdir without `train_state` loads).
  """
  root = checkpoint_root(path)
  with _manager(root) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{root}: no committed checkpoint step found')
    if step not in mngr.all_steps():
      raise CheckpointError(f'{root}: no step {step}; it has {sorted(mngr.all_steps())}')
    verify_step(os.path.join(root, str(step)), (PARAMS, MODEL_CONFIG, BATCH_STATS))
    d = _read(mngr, root, step, **{MODEL_CONFIG: ocp.args.JsonRestore()})[MODEL_CONFIG]
    config = ModelConfig.from_dict(dict(d))
    abstract = abstract_params_for(config)
    restored = _read(mngr, root, step, **{PARAMS: ocp.args.StandardRestore({'params': abstract})})
  return config, restored[PARAMS]['params']


# --- training workdirs ------------------------------------------------------------------------------------------
def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _step_dirs(root: str) -> list[int]:
  """Every committed-looking step directory (digit-named), newest first; orbax's temporary directories are not."""
  if not os.path.isdir(root):
    return []
  return sorted((int(n) for n in os.listdir(root) if n.isdigit() and os.path.isdir(os.path.join(root, n))),
                reverse=True)


class TrainingCheckpoints:
  """The checkpoints of a training workdir, `<workdir>/checkpoints`: an async orbax manager that keeps the latest
  `keep` steps, plus the best by `best_metric` (higher is better) when given; every step sealed by its manifest.

  `resume` gives the newest step that verifies and restores (or None on a fresh workdir), `save` starts an async
  save, `wait` blocks until it is committed and sealed, `poll` (each step boundary) raises the failure of a save
  that has finished.

  Retention is by step count (and best metric) only, never by content: it is safe because the trainer checks that
  the state is finite before every save (vmae_jax/train/trainer.py), so every step saved here holds finite
  parameters and deleting an older one never leaves only non-finite steps. Callers of `save` must keep that promise.

  Failures come out as CheckpointError and its subclasses, never as raw orbax / OSError tracebacks. `report`
  prints the one-line notes (default: stderr)."""

  def __init__(self, workdir: str, keep: int, best_metric: str | None = None,
               report: Callable[[str], None] | None = None):
    from orbax.checkpoint import checkpoint_managers as cm
    self.workdir = os.path.abspath(workdir)
    self.root = os.path.join(self.workdir, 'checkpoints')
    self.report = report or _stderr
    self._saving: int | None = None   # the step of the last save started
    self._pending = False             # a save started whose outcome `wait` has not yet seen
    if distributed.is_process_0() and os.path.isdir(self.root):
      for name in sorted(os.listdir(self.root)):
        if name.endswith(ocp.path.atomicity.TMP_DIR_SUFFIX):
          self.report(f'{self.root}/{name}: an unfinished save, removed (never restored)')
    policies = [cm.LatestN(keep)]
    if best_metric:
      policies.append(cm.BestN(get_metric_fn=lambda m: m[best_metric], n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=True, cleanup_tmp_directories=True,
                                           temporary_path_class=SealingRename,
                                           preservation_policy=cm.AnyPreservationPolicy(policies))
    try:
      self._mngr = ocp.CheckpointManager(
          self.root, options=options,
          item_names=(PARAMS, TRAIN_STATE, DATA_ITER, MODEL_CONFIG, CONFIG, BATCH_STATS),
          item_handlers={DATA_ITER: grain.checkpoint.CheckpointHandler()})
    except OSError as e:
      raise CheckpointWriteError(f'{self.root}: cannot open the checkpoint directory ({_one_line(e)})') from e

  def all_steps(self) -> list[int]:
    return sorted(self._mngr.all_steps())

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  # --- resume -------------------------------------------------------------------------------------------------
  def _move_aside(self, step: int, reason: str) -> None:
    src = os.path.join(self.root, str(step))
    where = os.path.join(self.workdir, DAMAGED_DIR)
    dst, n = os.path.join(where, str(step)), 0
    while os.path.exists(dst):
      n += 1
      dst = os.path.join(where, f'{step}.{n}')
    try:
      os.makedirs(where, exist_ok=True)
      os.rename(src, dst)
    except OSError as e:
      raise CheckpointError(f'{src}: {reason}; moving it aside to {dst} failed ({_one_line(e)})') from e
    self.report(f'checkpoint step {step} {reason}; moved to {dst}')

  def _newest_verified(self, skip: set[int]) -> tuple[int | None, bool]:
    """(the newest step not in `skip` that verifies, whether any step was there); process 0 checks and moves the
    damaged and unverified newer steps aside, every process gets its answer."""
    chosen, held = -1, False
    if distributed.is_process_0():
      for step in _step_dirs(self.root):
        held = True
        if step in skip:
          continue
        step_dir = os.path.join(self.root, str(step))
        try:
          if verify_step(step_dir):
            chosen = step
            break
          reason = (f'is unverified: {step_dir} has no {MANIFEST} (written before manifests, or stopped before it '
                    'was sealed)')
        except CheckpointError as e:
          reason = f'is damaged: {e}'
        self._move_aside(step, reason)
    chosen, held = distributed.from_process_0((chosen, int(held)))
    self._mngr.reload()
    return (None if chosen < 0 else chosen), bool(held)

  def resume(self, abstract_state: dict, data_iter) -> dict | None:
    """The train state of the newest step that verifies and restores, placed as `abstract_state` says (any mesh);
    the Grain iterator is set in place. None when the workdir holds no step. Newer damaged or unverified steps are
    moved aside (reported); a verified step whose restore raises is moved aside once an older step restores, and
    left in place when none does (then the likely cause is a config that differs from the run that wrote them)."""
    failed: list[tuple[int, str]] = []
    held = False
    while True:
      step, any_held = self._newest_verified({s for s, _ in failed})
      held = held or any_held
      if step is None:
        break
      state, reason = None, 'restore failed on another process'
      try:
        state = self._restore(step, abstract_state, data_iter)
      except (MemoryError, jax.errors.JaxRuntimeError):
        raise   # no room on the device: nothing wrong with the files
      except Exception as e:
        reason = f'does not restore ({type(e).__name__}: {_one_line(e, 240)})'
      if distributed.on_every_process(state is not None):
        if distributed.is_process_0():
          for s, r in failed:
            self._move_aside(s, r)
        distributed.from_process_0((0,))   # the others wait for the moves
        self._mngr.reload()
        return state
      failed.append((step, reason))
    if failed:
      s, r = failed[0]
      raise CheckpointError(f'{self.root}: no checkpoint step restores with this config; the newest, step {s}, {r}. '
                            f'The verified steps {sorted(x for x, _ in failed)} are left in place: run with the '
                            'config that wrote them, or use another workdir')
    damaged = os.path.join(self.workdir, DAMAGED_DIR)
    if held or (os.path.isdir(damaged) and os.listdir(damaged)):
      raise CheckpointError(f'{self.root}: no checkpoint step verifies; the damaged ones are in {damaged} (the '
                            'reasons are above, or in the log of the run that moved them). Refusing to start afresh '
                            f'over them: remove {damaged} to do that, or use another workdir. To resume from an '
                            'unverified step you trust (one written before manifests existed), move it back and seal '
                            'it with vmae_jax.weights.checkpoint.write_manifest(STEP_DIR)')
    return None

  def saved_config(self, step: int) -> dict:
    """The training config a step was saved with (its `config` item, JSON), to compare a resumed run's with."""
    try:
      return dict(self._mngr.restore(step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()}))[CONFIG])
    except Exception as e:
      raise CheckpointError(f'{self.root}/{step}/{CONFIG}: cannot be read ({_one_line(e)})') from e

  def _restore(self, step: int, abstract_state: dict, data_iter) -> dict:
    rest = {k: v for k, v in abstract_state.items() if k not in ('params', 'batch_stats')}
    extra = ({BATCH_STATS: ocp.args.StandardRestore(abstract_state['batch_stats'])}
             if 'batch_stats' in abstract_state else {})
    restored = self._mngr.restore(step, args=ocp.args.Composite(**extra, **{
        PARAMS: ocp.args.StandardRestore({'params': abstract_state['params']}),
        TRAIN_STATE: ocp.args.StandardRestore(rest),
        DATA_ITER: grain.checkpoint.CheckpointRestore(data_iter)}))
    state = {'params': restored[PARAMS]['params'], **restored[TRAIN_STATE]}
    if extra:
      state['batch_stats'] = restored[BATCH_STATS]
    return state

  # --- save -----------------------------------------------------------------------------------------------------
  def _write_error(self, e: BaseException) -> CheckpointWriteError:
    step = self._saving
    older = [s for s in _step_dirs(self.root) if s != step]
    where = f'{self.root}/{step}' if step is not None else self.root
    if isinstance(e, OSError) and e.strerror:
      cause = f'{e.strerror}' + (f': {e.filename}' if e.filename else '')
    else:
      cause = _one_line(e)
    return CheckpointWriteError(f'saving checkpoint {where} failed ({cause}); the steps saved before it '
                                f'{sorted(older)} are intact: free the space or fix the permission and run the same '
                                'command again to continue from the latest')

  def _remove_unfinished(self) -> None:
    """After a failed save: its `<step>.orbax-checkpoint-tmp` directory goes now (process 0), not at the next
    start, so a full disk gets its space back and nothing half-written lies beside the committed steps."""
    if not distributed.is_process_0() or not os.path.isdir(self.root):
      return
    for name in sorted(os.listdir(self.root)):
      if name.endswith(ocp.path.atomicity.TMP_DIR_SUFFIX):
        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
        self.report(f'{self.root}/{name}: an unfinished save, removed (never restored)')

  def wait(self) -> None:
    """Block until the last save is committed and sealed; a failure raises CheckpointWriteError (and removes the
    unfinished save's temporary directory)."""
    try:
      self._mngr.wait_until_finished()
    except Exception as e:
      self._remove_unfinished()
      raise self._write_error(e) from e
    finally:
      self._pending = False

  def poll(self) -> None:
    """At a step boundary: if the last asynchronous save has finished, raise its failure now
    (CheckpointWriteError) rather than at the next save, a checkpoint interval later. Never blocks on a save in
    progress. With several processes they agree on whether it has finished (one all-gather, only while a save is
    pending), so every process calls `wait` at the same boundary."""
    if not self._pending:
      return
    if distributed.on_every_process(not self._mngr.is_saving_in_progress()):
      self.wait()

  def save(self, state: dict, data_iter, model_config: ModelConfig, config_json: dict,
           metrics: dict | None = None) -> None:
    """Start writing the train state at its step (a no-op if that step exists), once the previous save is sealed.
    Parameters go to their own item, so `vmae_jax.load(workdir)` reads them without the optimizer state."""
    step = int(state['step'])
    self.wait()
    if step in self._mngr.all_steps():
      return
    rest = {k: v for k, v in state.items() if k not in ('params', 'batch_stats')}
    extra = {BATCH_STATS: ocp.args.StandardSave(state['batch_stats'])} if 'batch_stats' in state else {}
    self._saving = step
    try:
      self._pending = True
      self._mngr.save(step, args=ocp.args.Composite(**extra, **{
          PARAMS: ocp.args.StandardSave({'params': state['params']}),
          TRAIN_STATE: ocp.args.StandardSave(rest),
          DATA_ITER: grain.checkpoint.CheckpointSave(data_iter),
          MODEL_CONFIG: ocp.args.JsonSave(model_config.to_dict()),
          CONFIG: ocp.args.JsonSave(config_json)}), metrics=metrics, force=True)
    except (MemoryError, jax.errors.JaxRuntimeError):
      raise
    except Exception as e:
      raise self._write_error(e) from e

  def close(self, quiet: bool = False) -> None:
    """Wait for the last save and close the manager. `quiet`: the run is already ending with an error, so a failed
    save is not raised over it."""
    try:
      self._mngr.close()
    except Exception as e:
      self._remove_unfinished()
      if not quiet:
        raise self._write_error(e) from e
