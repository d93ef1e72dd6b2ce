"""What a user sees of a run: `WORKDIR/metrics.jsonl`, TensorBoard event files (tensorboardX) and a progress bar,
all on the chief process only.

On resume, lines of metrics.jsonl from steps after the restored checkpoint (written before a kill) are dropped, so
the file reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np


def _plain(value) -> Any:
  value = np.asarray(value)
  if value.ndim == 0:
    v = value.item()
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)
  return value.tolist()


class MetricWriter:
  def __init__(self, workdir: str, chief: bool = True, resume_step: int = 0):
    self.chief = chief
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if not chief:
      return
    if os.path.exists(self.path):
      self._truncate_after(resume_step)
    from tensorboardX import SummaryWriter  # a maintained pure-Python writer (no TensorFlow)
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'), flush_secs=30)

  def _truncate_after(self, step: int) -> None:
    keep = []
    with open(self.path) as f:
      for line in f:
        try:
          if json.loads(line).get('step', 0) <= step:
            keep.append(line)
        except json.JSONDecodeError:
          pass  # a line cut by a kill
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(keep)
    os.replace(tmp, self.path)

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    if not self.chief:
      return
    record = {'step': int(step), 'time': time.time(), **{k: _plain(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for key, value in record.items():
      if key not in ('step', 'time') and isinstance(value, (int, float)):
        self._tb.add_scalar(key, value, step)

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """image: (H, W, 3) uint8."""
    if self.chief:
      self._tb.add_image(name, np.asarray(image), step, dataformats='HWC')

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """tqdm bar on the chief: step, clips/s, loss, lr; ETA from tqdm's own rate."""

  def __init__(self, total: int, initial: int, chief: bool, desc: str):
    self.bar = None
    if chief:
      from tqdm import tqdm
      self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=sys.stderr,
                      mininterval=1.0, disable=None)   # None: shown on a terminal only

  def update(self, n: int, **postfix) -> None:
    if self.bar is not None:
      if postfix:
        self.bar.set_postfix({k: (f'{v:.4g}' if isinstance(v, float) else v) for k, v in postfix.items()},
                             refresh=False)
      self.bar.update(n)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
