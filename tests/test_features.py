"""Feature extraction: window counts and shapes, values equal to a direct per-window computation, sharding over
2 (simulated) devices through the CLI, resume skips finished videos, broken videos reported and skipped."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import vmae_jax
from vmae_jax import features, models
from vmae_jax.data import augment, decode, geometry, videogen
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import checkpoint

FT = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                 num_classes=3)
FRAMES = {'long': 20, 'mid': 9, 'short': 3}   # stride 2, window 4 → 9, 3, 1 (padded) windows


def test_window_starts():
  np.testing.assert_array_equal(features.window_starts(20, 4, 2), np.arange(0, 17, 2))
  np.testing.assert_array_equal(features.window_starts(9, 4, 2), [0, 2, 4])
  np.testing.assert_array_equal(features.window_starts(3, 4, 2), [0])
  np.testing.assert_array_equal(features.window_starts(16, 16, 4), [0])            # V2: range(0, n - 15, 4)
  np.testing.assert_array_equal(features.window_starts(100, 16, 4), np.arange(0, 85, 4))
  np.testing.assert_array_equal(features.window_starts(20, 4, 3, frame_step=2), [0, 3, 6, 9, 12])  # span 7


def test_preprocessing_matches_v2_tad_transform():
  """V2's extract_tad_feature.py: uint8 THWC → float CTHW / 255 → F.interpolate(bilinear, align_corners=False) to
  the model size (aspect not kept), no mean/std."""
  import torch
  frames = np.random.default_rng(0).integers(0, 256, (4, 40, 58, 3), dtype=np.uint8)
  ours = features._prepare(frames, 32, features.Settings())
  x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
  ref = torch.nn.functional.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False)
  np.testing.assert_allclose(ours, ref.permute(1, 2, 3, 0).numpy(), atol=1e-6)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  base = tmp_path_factory.mktemp('feat')
  ckpt = str(base / 'ckpt')
  checkpoint.save(ckpt, models.init_params(FT, jax.random.key(0)), FT)
  videos = base / 'videos'
  (videos / 'sub').mkdir(parents=True)
  for i, (name, n) in enumerate(FRAMES.items()):
    folder = videos / 'sub' if name == 'mid' else videos
    videogen.write_video(str(folder / f'{name}.mp4'), num_frames=n, width=48, height=40, seed=i)
  (videos / 'broken.mp4').write_bytes(b'\x00not a video' * 50)
  (videos / 'empty.avi').write_bytes(b'')
  return ckpt, str(videos), base


def _cli(args, devices=2):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'vmae_jax.features', *args], env=env, capture_output=True, text=True,
                        timeout=300)


def _expected(ckpt, file, stride):
  """Each window on its own, straight from the decoded frames (V2 preprocessing: squash resize, /255)."""
  m = vmae_jax.load(ckpt)
  record = {'file': file, 'path': file}
  n = decode.num_frames(record)
  frames = geometry.resize_bilinear(decode.decode_frames(record, np.arange(n)), 32) / np.float32(255)
  out = []
  for s in features.window_starts(n, 4, stride):
    idx = np.minimum(np.arange(s, s + 4), n - 1)
    out.append(m.module.apply(m.variables, frames[idx][None], method='features')[0])
  return np.stack(out)


def test_cli_sharded_resume_and_broken_videos(setup, tmp_path):
  ckpt, videos, _ = setup
  out = tmp_path / 'out'
  args = [f'--checkpoint={ckpt}', f'--data.path={videos}', f'--out={out}', '--stride=2', '--batch_size=4']
  r = _cli(args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert '3 written, 0 already done, 2 failed' in r.stdout
  assert 'broken.mp4' in r.stdout and 'empty.avi' in r.stdout and 'zero-byte' in r.stdout
  failed = (out / 'failed.txt').read_text().splitlines()
  assert sorted(os.path.basename(line.split('\t')[0]) for line in failed) == ['broken.mp4', 'empty.avi']
  shapes = {name: np.load(out / ('sub' if name == 'mid' else '') / f'{name}.npy').shape for name in FRAMES}
  assert shapes == {'long': (9, 64), 'mid': (3, 64), 'short': (1, 64)}
  assert not list(out.rglob('*.tmp*'))
  # Values: batched (chunks of 4, padded last batch) on 2 devices = each window alone on one device.
  for name in ('long', 'short'):
    got = np.load(out / f'{name}.npy')
    np.testing.assert_allclose(got, _expected(ckpt, os.path.join(videos, f'{name}.mp4'), 2), atol=1e-5)
  # Resume (in this process, one device): finished videos are skipped (files untouched); a deleted output is made
  # again; broken ones are retried and listed again.
  stamp = os.stat(out / 'long.npy').st_mtime_ns
  os.remove(out / 'sub' / 'mid.npy')
  settings = features.Settings(stride=2)
  result = features.extract(ckpt, features.list_videos(videos), str(out), settings, batch_size=4, progress=False)
  assert (result['written'], result['skipped'], len(result['failed'])) == (1, 2, 2)
  assert os.stat(out / 'long.npy').st_mtime_ns == stamp and np.load(out / 'sub' / 'mid.npy').shape == (3, 64)
  # Other settings into the same folder are refused, naming the setting.
  with pytest.raises(ValueError, match='stride=2, not 3'):
    features.extract(ckpt, features.list_videos(videos), str(out), features.Settings(stride=3), progress=False)


def test_list_file_pretrain_checkpoint_and_imagenet_normalisation(setup, tmp_path):
  _, videos, base = setup
  pt = ModelConfig(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=1, num_heads=4,
                   decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
  ckpt = str(tmp_path / 'pt')
  checkpoint.save(ckpt, models.init_params(pt, jax.random.key(1)), pt)
  lst = tmp_path / 'list.csv'
  lst.write_text('long.mp4 0\nsub/mid.mp4 1\n\n')
  vids = features.list_videos(str(lst), root=videos)
  assert [v.id for v in vids] == ['long', 'sub/mid']
  settings = features.Settings(stride=8, resize='crop', normalize='imagenet')
  result = features.extract(ckpt, vids, str(tmp_path / 'out'), settings, batch_size=2, progress=False)
  assert result == {'written': 2, 'skipped': 0, 'failed': []}
  got = np.load(tmp_path / 'out' / 'long.npy')
  assert got.shape == (3, 64)   # starts 0, 8, 16
  # The pretraining encoder's mean token of the first window, with the evaluation view and mean/std.
  m = vmae_jax.load(ckpt)
  record = {'file': os.path.join(videos, 'long.mp4'), 'path': 'long'}
  clip = augment.normalize(geometry.center_crop_view(decode.decode_frames(record, np.arange(4)), 32, 32))
  np.testing.assert_allclose(got[0], np.asarray(m.encode(clip[None]).mean(axis=1))[0], atol=1e-5)
  with pytest.raises(features.SourceError, match=r'list2.csv:2: video id .long. already given on line 1'):
    (tmp_path / 'list2.csv').write_text('long.mp4\nlong.avi\n')
    features.list_videos(str(tmp_path / 'list2.csv'))
  with pytest.raises(features.SourceError, match='no video files'):
    features.list_videos(str(tmp_path / 'out'))
