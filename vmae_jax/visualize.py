"""Reconstruction pictures: original / masked input / reconstruction, a few frames side by side.

The model predicts each masked token's pixels normalised by that token's own mean and (unbiased) std
(spec/videomae.md §3); to show them, every prediction is de-normalised with the mean and std of the same token of
the original clip. Tokens the encoder saw are shown as they are. With V2 dual masking the decoder predicts only
its kept tokens: encoder-masked tokens it dropped stay grey in the reconstruction row.
"""
from __future__ import annotations

import einops
import numpy as np

GREY = 0.5


def _tokens(video01: np.ndarray, tubelet: int, patch: int) -> np.ndarray:
  return einops.rearrange(video01, '(t pt) (h ph) (w pw) c -> (t h w) (pt ph pw) c', pt=tubelet, ph=patch, pw=patch)


def _untokens(tokens: np.ndarray, shape, tubelet: int, patch: int) -> np.ndarray:
  t, h, w = shape[0] // tubelet, shape[1] // patch, shape[2] // patch
  return einops.rearrange(tokens, '(t h w) (pt ph pw) c -> (t pt) (h ph) (w pw) c', t=t, h=h, w=w, pt=tubelet,
                          ph=patch, pw=patch)


def reconstruction_rows(video: np.ndarray, visible_idx: np.ndarray, pred_idx: np.ndarray, pred: np.ndarray,
                        tubelet: int, patch: int, normalized: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One clip: video uint8 (T, H, W, 3), index arrays (K,), pred (len(pred_idx), tubelet·p·p·3) →
  (original, masked input, reconstruction), each float (T, H, W, 3) in [0, 1]. `normalized=False`: the model
  predicted raw pixels in [0, 1] (pretrain.norm_target=False)."""
  video01 = np.asarray(video, np.float32) / 255.0
  tokens = _tokens(video01, tubelet, patch)                       # (N, P, 3)
  visible = np.zeros(tokens.shape[0], bool)
  visible[np.asarray(visible_idx)] = True
  masked_input = np.where(visible[:, None, None], tokens, GREY)
  mean = tokens.mean(axis=1, keepdims=True)
  std = tokens.std(axis=1, ddof=1, keepdims=True)
  guess = np.asarray(pred, np.float32).reshape(len(pred_idx), -1, 3)
  if normalized:
    guess = guess * (std[pred_idx] + 1e-6) + mean[pred_idx]
  recon = masked_input.copy()
  recon[np.asarray(pred_idx)] = np.where(visible[pred_idx][:, None, None], tokens[pred_idx], guess)
  shape = video.shape
  return (video01, _untokens(masked_input, shape, tubelet, patch),
          np.clip(_untokens(recon, shape, tubelet, patch), 0.0, 1.0))


def figure(rows: tuple[np.ndarray, ...], num_frames: int = 8, gap: int = 2) -> np.ndarray:
  """Rows of clips (T, H, W, 3) in [0, 1] → one uint8 image, `num_frames` evenly spaced frames per row."""
  t, h, w, _ = rows[0].shape
  frames = np.unique(np.linspace(0, t - 1, min(num_frames, t)).round().astype(int))
  height = len(rows) * h + (len(rows) - 1) * gap
  width = len(frames) * w + (len(frames) - 1) * gap
  canvas = np.ones((height, width, 3), np.float32)
  for r, clip in enumerate(rows):
    for k, f in enumerate(frames):
      canvas[r * (h + gap):r * (h + gap) + h, k * (w + gap):k * (w + gap) + w] = clip[f]
  return (canvas * 255.0 + 0.5).astype(np.uint8)


def save_png(image: np.ndarray, path: str) -> None:
  from PIL import Image
  Image.fromarray(image).save(path)
