"""Reconstruction pictures: original / masked input / reconstruction, a few frames side by side.

    python -m vmae_jax.visualize --checkpoint=CKPT_OR_WORKDIR --video=FILE.mp4 --out=recon.png   (or .gif)

The model predicts each masked token's pixels normalised by that token's own mean and (unbiased) std
(docs/fidelity.md, "Pixel target and loss"); to show them, every prediction is de-normalised with the mean and
std of the same token of the original clip. Tokens the encoder saw are shown as they are. With V2 dual masking the
decoder predicts only its kept tokens: encoder-masked tokens it dropped stay grey in the reconstruction row.
"""
from __future__ import annotations

import os

import einops
import numpy as np

from vmae_jax.train.errors import ArgumentParser, UsageError, at_least, cli

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


def save_gif(rows: tuple[np.ndarray, ...], path: str, fps: int = 4, gap: int = 2) -> None:
  """An animation over the clip's frames; each animation frame shows the rows stacked vertically."""
  from PIL import Image
  t, h, w, _ = rows[0].shape
  images = []
  for f in range(t):
    canvas = np.ones((len(rows) * h + (len(rows) - 1) * gap, w, 3), np.float32)
    for r, clip in enumerate(rows):
      canvas[r * (h + gap):r * (h + gap) + h] = clip[f]
    images.append(Image.fromarray((canvas * 255.0 + 0.5).astype(np.uint8)))
  images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def reconstruct_file(checkpoint: str, video_path: str, *, sampling_rate: int = 4, mask_ratio: float = 0.9,
                     decoder_mask: bool = False, norm_target: bool | None = None, seed: int = 0):
  """Decode the centred clip of `video_path`, mask it (tube; optionally V2's running-cell decoder mask), run the
  checkpoint's decoder, and return the three rows (original, masked input, reconstruction)."""
  import vmae_jax
  from vmae_jax.data import augment, decode, geometry, masking, sampling
  from vmae_jax.weights import export
  if not os.path.isfile(video_path):
    raise UsageError(f'--video={video_path}: no such file')
  if sampling_rate < 1:
    raise UsageError(f'--sampling_rate={sampling_rate}: must be ≥ 1')
  m = vmae_jax.load(checkpoint)   # CheckpointError naming the path
  c = m.config
  if c.kind != 'pretrain':
    raise UsageError(f'--checkpoint={checkpoint}: a {c.kind} checkpoint has no decoder; reconstruction needs a '
                     'pretraining one')
  rng = np.random.default_rng(seed)
  try:
    masks = masking.sample_masks(rng, c.token_grid(), 'tube', mask_ratio, 'run_cell' if decoder_mask else None)
  except ValueError as e:   # the ratio leaves no masked or no visible token on this model's grid
    raise UsageError(f'--mask_ratio={mask_ratio}: {e}') from None
  if norm_target is None:
    norm_target = export.norm_target_of(checkpoint)
  try:
    clip, _ = decode.read_clip({'file': video_path, 'path': video_path},
                               lambda n: sampling.dense_val_indices(n, c.num_frames, sampling_rate))
  except Exception as e:   # whatever PyAV raises for a file it cannot read (as the data pipeline reports it)
    raise UsageError(f'--video={video_path}: not a readable video ({type(e).__name__}: '
                     f'{str(e).splitlines()[0] if str(e) else ""})') from e
  clip = geometry.center_crop_view(clip, c.img_size, c.img_size)
  decoder = masks['decoder_mask'][None] if decoder_mask else None
  pred = m.reconstruct(augment.normalize(clip)[None], masks['encoder_mask'][None], decoder)['pred']
  return reconstruction_rows(clip, masks['visible_idx'], masks['pred_idx'], np.asarray(pred)[0], c.tubelet_size,
                             c.patch_size, normalized=norm_target)


@cli('python -m vmae_jax.visualize')
def main(argv=None) -> int:
  parser = ArgumentParser(prog='python -m vmae_jax.visualize', description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkpoint', required=True, help='pretraining checkpoint or training workdir')
  parser.add_argument('--video', required=True, help='a video file')
  parser.add_argument('--out', required=True, help='.png (a few frames side by side) or .gif (animated)')
  parser.add_argument('--sampling_rate', type=at_least(1), default=4)
  parser.add_argument('--mask_ratio', type=float, default=0.9, help='tube mask ratio in (0, 1)')
  parser.add_argument('--decoder_mask', action='store_true', help="V2's running-cell decoder mask (0.5)")
  parser.add_argument('--norm_target', choices=('auto', 'true', 'false'), default='auto',
                      help="whether the model predicts per-patch normalised pixels (auto: the workdir's config, "
                           'else true, the official default)')
  parser.add_argument('--seed', type=at_least(0), default=0)
  args = parser.parse_args(argv)
  if not args.out.lower().endswith(('.png', '.gif')):
    raise UsageError(f'--out={args.out}: must end in .png (frames side by side) or .gif (animated)')
  if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
    raise UsageError(f'--out={args.out}: the folder {os.path.dirname(os.path.abspath(args.out))} does not exist')
  if not 0 < args.mask_ratio < 1:
    raise UsageError(f'--mask_ratio={args.mask_ratio}: must be in (0, 1)')
  norm = {'auto': None, 'true': True, 'false': False}[args.norm_target]
  rows = reconstruct_file(args.checkpoint, args.video, sampling_rate=args.sampling_rate, mask_ratio=args.mask_ratio,
                          decoder_mask=args.decoder_mask, norm_target=norm, seed=args.seed)
  if args.out.lower().endswith('.gif'):
    save_gif(rows, args.out)
  else:
    save_png(figure(rows), args.out)
  print(f'wrote {args.out}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
