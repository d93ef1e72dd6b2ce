"""One run per workdir: `<workdir>/vmae_lock` names the run that holds it (host, pid, start time).

Two trainers on one workdir would interleave their checkpoints and metrics; the second is refused with
WorkdirLockedError naming the holder. The file is created with O_CREAT | O_EXCL, so two starters cannot both win.
A lock whose process is gone (this host; a crash or kill -9) is stale and taken over with a one-line note; a lock
from another host cannot be checked from here and is never taken over.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time
from typing import Callable

from vmae_jax.parallel import distributed
from vmae_jax.train import errors
from vmae_jax.weights.checkpoint import CheckpointError

LOCK_FILE = 'vmae_lock'


class WorkdirLockedError(CheckpointError):
  """Another run holds the workdir; the message names it (host, pid, start time) and the lock file."""


def _process_start(pid: int) -> float | None:
  """When process `pid` started (seconds since the epoch; Linux /proc), or None where that cannot be read."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    with open('/proc/stat') as f:
      boot = next(float(line.split()[1]) for line in f if line.startswith('btime'))
    return boot + int(fields[19]) / os.sysconf('SC_CLK_TCK')   # field 22 of stat: start time in clock ticks
  except (OSError, ValueError, IndexError, StopIteration):
    return None


def _running(pid: int, since: float) -> bool:
  """Whether the process that took a lock at `since` still runs here (not a zombie, not a new one with its pid)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    with open(f'/proc/{pid}/stat') as f:
      if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
        return False
  except (OSError, IndexError):
    pass
  started = _process_start(pid)
  return started is None or started <= since + 2


class WorkdirLock:
  """`with WorkdirLock(workdir):` one run per workdir. `<workdir>/vmae_lock` holds host, pid and start time; it is
  created with O_CREAT | O_EXCL (atomic on local and NFS-like file systems), by process 0 only in multi-process
  runs (the other processes follow its answer). A second run is refused with WorkdirLockedError naming the holder;
  a stale lock (this host, its process gone) is taken over with a one-line note. Released on exit, whatever the
  exit; a lock left by kill -9 is stale for the next run."""

  def __init__(self, workdir: str, report: Callable[[str], None] | None = None):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
    self._mine: dict | None = None

  def _holder(self) -> tuple[dict | None, str]:
    try:
      with open(self.path) as f:
        text = f.read()
      holder = json.loads(text)
      return (holder if isinstance(holder, dict) and {'host', 'pid', 'started'} <= holder.keys() else None), text
    except FileNotFoundError:
      return {}, ''
    except (OSError, ValueError):
      return None, ''

  def _acquire(self) -> None:
    host = socket.gethostname()
    for _ in range(3):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        holder, text = self._holder()
        if holder == {}:
          continue   # released meanwhile
        if holder is None:
          raise WorkdirLockedError(f'{self.workdir} is locked by {self.path}, which cannot be read; if no run uses '
                                   'this workdir, remove the file') from None
        since = datetime.datetime.fromtimestamp(float(holder['started'])).isoformat(' ', 'seconds')
        if holder['host'] != host or _running(int(holder['pid']), float(holder['started'])):
          raise WorkdirLockedError(
              f'{self.workdir} is in use by another run: pid {holder["pid"]} on {holder["host"]}, started {since} '
              f'(lock {self.path}). Stop that run first; if it is gone (a crash on another host), remove the lock '
              'file') from None
        if self._holder()[1] == text:   # still that stale lock: no other starter took it over meanwhile
          try:
            os.remove(self.path)
          except FileNotFoundError:
            pass
          self.report(f'{self.path}: taking over the stale lock of pid {holder["pid"]} on {host} (started {since}, '
                      'no longer running)')
        continue
      self._mine = {'host': host, 'pid': os.getpid(), 'started': time.time()}
      with os.fdopen(fd, 'w') as f:
        json.dump(self._mine, f)
      return
    raise WorkdirLockedError(f'{self.workdir}: could not take the lock {self.path} (other runs are starting)')

  def __enter__(self) -> WorkdirLock:
    message = ''
    if distributed.is_process_0():
      try:
        self._acquire()
      except WorkdirLockedError as e:
        message = str(e)
      except OSError as e:
        message = f'{self.path}: cannot create the lock file ({errors.one_line(e)})'
    if not distributed.on_every_process(not message):
      self.release()
      raise WorkdirLockedError(message or f'{self.workdir}: process 0 could not lock the workdir')
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def release(self) -> None:
    """Remove the lock file if this run holds it (and it was not taken over meanwhile)."""
    if self._mine is None:
      return
    holder, _ = self._holder()
    if holder and holder.get('pid') == self._mine['pid'] and holder.get('started') == self._mine['started']:
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
    self._mine = None
