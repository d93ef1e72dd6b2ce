"""Evaluation shared by the tasks: multi-view classification (softmax per view, then the mean, as the official
`merge`), features for kNN, and the fixed-shape batching that keeps one compiled program for every batch.

Every process reads its own share of the split; the last batches are padded with `valid=False` rows so all
processes run the same number of steps (a multi-host requirement), and the counts are summed on device.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vmae_jax.data import pipeline
from vmae_jax.data.sources import make_source
from vmae_jax.parallel import device_batch


def _pad(batch: dict, size: int) -> dict:
  n = len(batch['label'])
  if n == size:
    return batch
  out = {}
  for key, value in batch.items():
    pad = np.zeros((size - n,) + value.shape[1:], value.dtype)
    out[key] = np.concatenate([value, pad])
  return out


def subset(total: int, max_videos: int = 0) -> list[int]:
  """All indices, or `max_videos` evenly spread over the list (lists are often sorted by class, so the first N
  would be a few classes only)."""
  if not max_videos or max_videos >= total:
    return list(range(total))
  return sorted({int(i) for i in np.linspace(0, total - 1, max_videos).round()})


def split_indices(data_cfg, split: str, num_classes: int | None, max_videos: int = 0) -> list[int]:
  """The videos an evaluation reads (see `subset`)."""
  return subset(len(make_source(data_cfg, split, num_classes)), max_videos)


def batches(data_cfg, split: str, global_batch_size: int, indices: list[int], *, multi_view: bool,
            num_classes: int | None, error_dir: str | None = None):
  """Yields per-process eval batches of a fixed shape over `indices`; every process yields the same number of
  batches."""
  pc, pi = jax.process_count(), jax.process_index()
  local = global_batch_size // pc
  total = len(indices)
  per_process = math.ceil(total / pc)
  steps = math.ceil(per_process / local)
  mine = len(range(pi, total, pc))
  ds = pipeline.eval_dataset(data_cfg, local, num_classes=num_classes, error_dir=error_dir, split=split,
                             multi_view=multi_view, indices=indices)
  it = iter(ds)
  seen = 0
  for _ in range(steps):
    batch = next(it, None) if seen < mine else None
    if batch is None:
      views = (data_cfg.test_num_segment * data_cfg.test_num_crop) if multi_view else 1
      batch = {'video': np.zeros((0, views, data_cfg.num_frames, data_cfg.input_size, data_cfg.input_size, 3),
                                 np.uint8),
               'label': np.zeros((0,), np.int32), 'valid': np.zeros((0,), bool), 'index': np.zeros((0,), np.int64)}
    seen += len(batch['label'])
    yield _pad(batch, local)


def classification_counts(logits_fn, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
  """A jittable (params, batch) → {'top1', 'top5', 'count', 'loss_sum'} summed over valid videos.
  `logits_fn(params, video)` maps clips normalised with `mean`/`std` (N, T, H, W, 3) to logits (N, C)."""
  def counts(params, batch):
    video = batch['video']                                   # (B, V, T, H, W, 3) uint8
    b, v = video.shape[:2]
    flat = device_batch.normalize_on_device(video.reshape((b * v,) + video.shape[2:]), mean, std)
    logits = logits_fn(params, flat).astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1).reshape(b, v, -1).mean(axis=1)   # softmax per view, then the mean
    label = batch['label']
    valid = batch['valid'].astype(jnp.float32)
    k = min(5, probs.shape[-1])
    topk = jax.lax.top_k(probs, k)[1]
    hit1 = (topk[:, 0] == label).astype(jnp.float32)
    hit5 = jnp.any(topk == label[:, None], axis=-1).astype(jnp.float32)
    nll = -jnp.log(jnp.take_along_axis(probs, label[:, None], axis=-1)[:, 0] + 1e-12)
    return {'top1': (hit1 * valid).sum(), 'top5': (hit5 * valid).sum(), 'count': valid.sum(),
            'loss_sum': (nll * valid).sum()}
  return counts


def classify_split(counts_fn, params, data_cfg, split: str, global_batch_size: int, mesh, *, multi_view: bool,
                   num_classes: int, max_videos: int = 0, error_dir: str | None = None) -> dict[str, float]:
  """Top-1 / top-5 (percent) over a split; `failed` counts videos that could not be read (left out).
  `counts_fn`: the jitted `classification_counts` program (built once per run, so evaluations do not recompile)."""
  indices = split_indices(data_cfg, split, num_classes, max_videos)
  totals = {'top1': 0.0, 'top5': 0.0, 'count': 0.0, 'loss_sum': 0.0}
  for batch in batches(data_cfg, split, global_batch_size, indices, multi_view=multi_view, num_classes=num_classes,
                       error_dir=error_dir):
    out = counts_fn(params, device_batch.global_batch({k: batch[k] for k in ('video', 'label', 'valid')}, mesh))
    for key in totals:
      totals[key] += float(out[key])
  n = max(totals['count'], 1.0)
  expected = len(indices)
  return {'top1': 100.0 * totals['top1'] / n, 'top5': 100.0 * totals['top5'] / n,
          'loss': totals['loss_sum'] / n, 'videos': int(totals['count']),
          'failed': int(expected - totals['count'])}


def normalized_features(feature_fn):
  """A jittable (params, batch) → L2-normalised features of each video's single (centre) view."""
  def fn(params, batch):
    video = device_batch.normalize_on_device(batch['video'][:, 0])
    f = feature_fn(params, video).astype(jnp.float32)
    return f / (jnp.linalg.norm(f, axis=-1, keepdims=True) + 1e-12)
  return fn


def features(step, params, data_cfg, split: str, global_batch_size: int, mesh, *, num_classes: int | None,
             max_videos: int = 0, error_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Features of a split through `step` (the jitted `normalized_features` program): (features (N, D), labels
  (N,)), valid videos only, gathered on every process."""
  from jax.experimental import multihost_utils
  source = make_source(data_cfg, split, num_classes)
  if hasattr(source, 'require_labels'):   # the kNN probe votes with the labels
    source.require_labels('the kNN probe (pretrain.knn_every_steps > 0; set it to 0)')
  feats, labels = [], []
  indices = split_indices(data_cfg, split, num_classes, max_videos)
  for batch in batches(data_cfg, split, global_batch_size, indices, multi_view=False, num_classes=num_classes,
                       error_dir=error_dir):
    g = device_batch.global_batch({k: batch[k] for k in ('video', 'label', 'valid')}, mesh)
    f = step(params, g)
    if jax.process_count() > 1:
      f, lab, ok = (np.asarray(multihost_utils.process_allgather(x, tiled=True))
                    for x in (f, g['label'], g['valid']))
    else:
      f, lab, ok = np.asarray(f), batch['label'], batch['valid']
    feats.append(f[ok])
    labels.append(lab[ok])
  return np.concatenate(feats), np.concatenate(labels)


def knn_top1(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
             k: int = 20, temperature: float = 0.07) -> float:
  """Weighted kNN (cosine similarity, weights exp(sim/T), the common self-supervised probe), percent top-1."""
  num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
  sim = query @ bank.T
  k = min(k, bank.shape[0])
  idx = np.argsort(-sim, axis=1)[:, :k]
  weights = np.exp(np.take_along_axis(sim, idx, axis=1) / temperature)
  votes = np.zeros((query.shape[0], num_classes))
  np.add.at(votes, (np.arange(query.shape[0])[:, None], bank_labels[idx]), weights)
  return float(100.0 * np.mean(votes.argmax(axis=1) == query_labels))


def print_table(title: str, rows: dict[str, dict[str, float]]) -> str:
  """A short fixed-width table for the end of an evaluation."""
  lines = [title, f'{"":<24}{"top-1":>8}{"top-5":>8}{"videos":>8}{"failed":>8}']
  for name, r in rows.items():
    lines.append(f'{name:<24}{r["top1"]:>8.2f}{r["top5"]:>8.2f}{r["videos"]:>8d}{r["failed"]:>8d}')
  text = '\n'.join(lines)
  print(text, flush=True)
  return text
