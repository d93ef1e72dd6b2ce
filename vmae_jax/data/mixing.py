"""Batch-level Mixup / CutMix with label smoothing: timm `Mixup` in mode 'batch', on the assembled host batch.

What the official fine-tuning does after collation (timm's `Mixup` in MCG-NJU/VideoMAE `mixup.py` and
OpenGVLab/VideoMAEv2 `run_class_finetuning.py`; docs/fidelity.md, "Augmentation"), with the draws taken from an
explicit `np.random.Generator` in timm's order.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class MixParams:
  """One batch's mixing: `lam` = weight of each sample's own label; `box` = (top, bottom, left, right) of the CutMix
  region taken from the flipped batch, None for Mixup or no mixing (lam = 1)."""
  lam: float
  box: tuple[int, int, int, int] | None = None


def mixup_cutmix_params(rng: np.random.Generator, height: int, width: int, mixup_alpha: float = 0.8,
                        cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                        correct_lam: bool = True) -> MixParams:
  """timm `Mixup._params_per_batch` + `cutmix_bbox_and_lam`, in timm's draw order.

  With probability `prob`: CutMix (prob `switch_prob` when both alphas are > 0) with lam ~ Beta(cutmix_alpha), else
  Mixup with lam ~ Beta(mixup_alpha). The CutMix box has sides int(H·√(1−lam)), int(W·√(1−lam)) around a uniform
  centre, clipped to the frame; lam is then corrected to 1 − (box area)/(H·W).
  """
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    raise ValueError('mixup_cutmix needs mixup_alpha > 0 or cutmix_alpha > 0')
  if not rng.random() < prob:
    return MixParams(1.0)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = bool(rng.random() < switch_prob)
  else:
    use_cutmix = cutmix_alpha > 0
  lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
  if lam == 1.0 or not use_cutmix:
    return MixParams(lam)
  cut = math.sqrt(1.0 - lam)
  cut_h, cut_w = int(height * cut), int(width * cut)
  cy = int(rng.integers(0, height))
  cx = int(rng.integers(0, width))
  top, bottom = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
  left, right = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
  if correct_lam:
    lam = 1.0 - (bottom - top) * (right - left) / float(height * width)
  return MixParams(lam, (top, bottom, left, right))


def smoothed_one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.1) -> np.ndarray:
  """timm's smoothed one-hot: off = smoothing/K, on = 1 − smoothing + off → float32 (B, K), rows sum to 1."""
  labels = np.asarray(labels).astype(np.int64).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f'labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]')
  off = smoothing / num_classes
  out = np.full((labels.size, num_classes), off, np.float32)
  out[np.arange(labels.size), labels] = 1.0 - smoothing + off
  return out


def apply_mixup_cutmix(videos: np.ndarray, labels: np.ndarray, params: MixParams, num_classes: int,
                       label_smoothing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """Mix a (B, T, H, W, C) batch with its reverse (x[::-1]) → (new float32 videos, float32 (B, K) soft targets)."""
  videos = np.asarray(videos)
  if videos.ndim != 5:
    raise ValueError(f'videos must be (B, T, H, W, C), got shape {videos.shape}')
  lam = params.lam
  if params.box is None and lam != 1.0:  # Mixup: 3 passes over the batch, no extra temporaries
    out = np.multiply(videos, np.float32(lam), dtype=np.float32)
    out += np.multiply(videos[::-1], np.float32(1.0 - lam), dtype=np.float32)
  else:
    out = videos.astype(np.float32, copy=True)
  if params.box is not None:
    top, bottom, left, right = params.box
    out[:, :, top:bottom, left:right] = videos[::-1, :, top:bottom, left:right]  # one box, every frame
  y = smoothed_one_hot(labels, num_classes, label_smoothing)
  targets = (y * np.float32(lam) + y[::-1] * np.float32(1.0 - lam)).astype(np.float32)
  return out, targets


def mixup_cutmix(rng: np.random.Generator, videos: np.ndarray, labels: np.ndarray, num_classes: int,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                 label_smoothing: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
  """timm Mixup in 'batch' mode on a normalised float batch (B, T, H, W, C) → (videos, soft targets (B, K)).

  One lam for the whole batch; each sample is mixed with the batch in reverse order (timm's `x.flip(0)`); a CutMix
  box is shared by every frame (VideoMAE V1 cuts `x[..., yl:yh, xl:xh]`, V2 folds T into channels: the same thing);
  targets are the smoothed one-hots mixed the same way. Runs on the host on the assembled per-process batch, before
  device transfer, so with several processes (or several devices per process) the mixing partners come from the
  local batch, as each official GPU mixes its own; the batch size must be even, as timm asserts.
  """
  videos = np.asarray(videos)
  if videos.ndim != 5:
    raise ValueError(f'videos must be (B, T, H, W, C), got shape {videos.shape}')
  if len(videos) % 2:
    raise ValueError(f'mixup_cutmix needs an even batch size (timm asserts it), got {len(videos)}')
  params = mixup_cutmix_params(rng, videos.shape[2], videos.shape[3], mixup_alpha, cutmix_alpha, prob, switch_prob)
  return apply_mixup_cutmix(videos, labels, params, num_classes, label_smoothing)
