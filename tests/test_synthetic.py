"""The synthetic motion dataset: determinism, real H.264 files, atomic generation, and classes that need time."""
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from vmae_jax.data import synthetic, synthetic_cache

TINY = dict(clips_per_class=3, num_frames=16, size=32)


def _decode(path):
  with av.open(path) as container:
    stream = container.streams.video[0]
    info = (stream.codec_context.name, stream.codec_context.pix_fmt, stream.frames)
    frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(stream)])
  return info, frames


def _lines(folder, split):
  with open(os.path.join(folder, f'{split}.csv')) as f:
    return f.read().splitlines()


def test_deterministic_real_h264_and_balanced(tmp_path):
  a = synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path / 'a'), num_workers=1, **TINY)
  b = synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path / 'b'), num_workers=1, **TINY)
  assert os.path.basename(a) == os.path.basename(b)
  names = open(os.path.join(a, 'classes.txt')).read().split()
  assert len(names) >= 8 and names == synthetic.class_names()
  all_lines = []
  for split in ('train', 'val', 'test'):
    lines = _lines(a, split)
    assert lines == _lines(b, split)
    labels = [int(line.split()[-1]) for line in lines]
    # balanced: every class the same number of times in every split (3 clips → 1/1/1)
    assert sorted(labels) == sorted(list(range(8)) * (len(lines) // 8)) and len(lines) == 8
    all_lines += lines
  assert len(set(all_lines)) == 8 * 3
  for line in all_lines[::5]:
    rel = line.rsplit(' ', 1)[0]
    (codec, pix_fmt, count), frames_a = _decode(os.path.join(a, rel))
    _, frames_b = _decode(os.path.join(b, rel))
    assert (codec, pix_fmt, count) == ('h264', 'yuv420p', 16)
    assert frames_a.shape == (16, 32, 32, 3)
    assert open(os.path.join(a, rel), "rb").read() == open(os.path.join(b, rel), "rb").read(), rel
    np.testing.assert_array_equal(frames_a, frames_b, err_msg=rel)
  meta = synthetic_cache.read_meta(a)
  assert meta['complete'] and meta['counts'] == {'train': 8, 'val': 8, 'test': 8}


def test_second_call_reuses_and_workers_do_not_change_bytes(tmp_path, monkeypatch):
  one = synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path / 'one'), num_workers=1, **TINY)
  monkeypatch.setattr(synthetic_cache, '_generate', lambda *a, **k: pytest.fail('regenerated a complete dataset'))
  assert synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path / 'one'), **TINY) == one
  monkeypatch.undo()
  two = synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path / 'two'), num_workers=2, **TINY)
  rel = 'videos/rotate_clockwise/rotate_clockwise_0002.mp4'
  assert open(os.path.join(one, rel), 'rb').read() == open(os.path.join(two, rel), 'rb').read()


def test_cache_location_follows_env(tmp_path, monkeypatch):
  monkeypatch.setenv('VMAE_JAX_CACHE', str(tmp_path / 'env'))
  assert synthetic_cache.dataset_dir(**TINY).startswith(str(tmp_path / 'env' / 'synthetic') + os.sep)
  monkeypatch.delenv('VMAE_JAX_CACHE')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert synthetic_cache.dataset_dir(**TINY).startswith(str(tmp_path / 'xdg' / 'vmae_jax' / 'synthetic') + os.sep)
  # every generation parameter is in the folder name's hash
  assert synthetic_cache.dataset_dir(seed=1, **TINY) != synthetic_cache.dataset_dir(**TINY)
  assert synthetic_cache.dataset_dir(fps=30, **TINY) != synthetic_cache.dataset_dir(**TINY)


def test_failure_midway_leaves_no_final_folder(tmp_path, monkeypatch):
  real_write = synthetic_cache._write_clip
  calls = []
  def failing_write(path, frames, fps):
    calls.append(path)
    if len(calls) == 5:
      raise RuntimeError('disk full (simulated)')
    real_write(path, frames, fps)
  monkeypatch.setattr(synthetic_cache, '_write_clip', failing_write)
  final = synthetic_cache.dataset_dir(cache_dir=str(tmp_path), **TINY)
  with pytest.raises(RuntimeError, match='simulated'):
    synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_workers=1, **TINY)
  assert not os.path.exists(final)
  assert os.listdir(os.path.dirname(final)) == []       # the temporary folder went too
  monkeypatch.undo()
  assert synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_workers=1, **TINY) == final
  assert synthetic_cache.is_complete(final)


def test_killed_run_leaves_nothing_that_looks_complete(tmp_path):
  """SIGKILL a generating process (no cleanup runs): no final folder; the next call cleans up and regenerates."""
  params = dict(clips_per_class=25, num_frames=16, size=32)
  final = synthetic_cache.dataset_dir(cache_dir=str(tmp_path), **params)
  code = (f'from vmae_jax.data import synthetic_cache\n'
          f'synthetic_cache.ensure_synthetic(cache_dir={str(tmp_path)!r}, num_workers=1, **{params!r})\n')
  proc = subprocess.Popen([sys.executable, '-c', code], cwd=os.path.dirname(os.path.dirname(__file__)))
  parent = os.path.dirname(final)
  deadline = time.time() + 60
  started = False
  while time.time() < deadline and proc.poll() is None:
    tmp = [d for d in (os.listdir(parent) if os.path.isdir(parent) else []) if d.startswith('.tmp-')]
    if tmp and any(files for _, _, files in os.walk(os.path.join(parent, tmp[0]))):
      started = True
      break
    time.sleep(0.02)
  assert started and proc.poll() is None, 'the generator finished before it could be killed; raise clips_per_class'
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(final)
  leftovers = [d for d in os.listdir(parent) if d.startswith('.tmp-')]
  assert leftovers, 'a killed run leaves its temporary folder behind'
  assert synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_workers=1, **params) == final
  assert synthetic_cache.is_complete(final)
  assert not [d for d in os.listdir(parent) if d.startswith('.tmp-')], 'the dead run\'s folder was not removed'
  # A foreign, incomplete folder at the final name is not trusted either.
  os.remove(os.path.join(final, 'meta.json'))
  assert not synthetic_cache.is_complete(final)
  assert synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_workers=1, **params) == final
  assert synthetic_cache.is_complete(final)


# ---------------------------------------------------------------------------------------------------------------
# The class needs time: one frame carries nothing, consecutive frames carry everything.


def _nearest_centroid_accuracy(features, labels):
  """Fit class centroids on even clips, score odd clips (features standardised)."""
  features = (features - features.mean(0)) / (features.std(0) + 1e-9)
  fit, test = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
  classes = np.unique(labels)
  centroids = np.stack([features[fit & (labels == c)].mean(0) for c in classes])
  dist = ((features[test][:, None] - centroids[None]) ** 2).sum(-1)
  return float((classes[dist.argmin(1)] == labels[test]).mean())


def _circular_centroid(alpha, axis):
  s = alpha.shape[-1]
  phase = np.exp(2j * np.pi * (np.arange(s) + 0.5) / s)
  weights = alpha.sum(axis=axis)   # (T, S) marginal along the other axis
  return np.mod(np.angle(weights @ phase) * s / (2 * np.pi), s)


def test_single_frame_does_not_reveal_the_class():
  num_classes, clips, num_frames, size = 8, 120, 16, 32
  rng = np.random.default_rng(0)
  static, motion, labels = [], [], []
  for c in range(num_classes):
    for i in range(clips):
      p = synthetic.sample_clip(c, i, seed=0, num_frames=num_frames, size=size)
      frames, alpha = synthetic.render_clip(p)
      t = int(rng.integers(num_frames - 1))
      pooled = frames[t].reshape(4, 8, 4, 8, 3).mean((1, 3)).ravel()   # what the image looks like, coarsely
      static.append(np.concatenate([[p.cx[t], p.cy[t], np.log(p.radius[t]), np.cos(2 * p.angle[t]),
                                     np.sin(2 * p.angle[t]), alpha[t].sum(), p.aspect], pooled]))
      motion.append([p.cx_unwrapped[t + 1] - p.cx_unwrapped[t], p.cy_unwrapped[t + 1] - p.cy_unwrapped[t],
                     p.angle[t + 1] - p.angle[t],
                     np.sign(np.log(p.radius[t + 1] / p.radius[t])) * min(abs(np.log(p.radius[t + 1] / p.radius[t])),
                                                                           0.1)])
      labels.append(c)
  labels = np.array(labels)
  static_acc = _nearest_centroid_accuracy(np.array(static), labels)
  motion_acc = _nearest_centroid_accuracy(np.array(motion), labels)
  print(f'nearest-centroid accuracy: one frame {static_acc:.3f} (chance {1 / num_classes:.3f}), '
        f'two frames {motion_acc:.3f}')
  assert static_acc < 1 / num_classes + 0.08
  assert motion_acc > 0.9
  # The per-frame marginals match: position, size and orientation means per class agree with the pooled ones.
  static = np.array(static)
  for column, name in [(0, 'cx'), (1, 'cy'), (2, 'log radius'), (5, 'area')]:
    pooled_std = static[:, column].std()
    for c in range(num_classes):
      mean_c = static[labels == c, column].mean()
      assert abs(mean_c - static[:, column].mean()) < 4.5 * pooled_std / np.sqrt(clips), (name, c)


@pytest.mark.parametrize('class_name', synthetic.class_names(len(synthetic.CLASS_NAMES)))
def test_frames_move_the_way_the_class_says(class_name):
  size, num_frames = 64, 16
  c = synthetic.CLASS_NAMES.index(class_name)
  p = synthetic.sample_clip(c, 7, seed=3, num_frames=num_frames, size=size)
  frames, alpha = synthetic.render_clip(p)
  assert frames.shape == (num_frames, size, size, 3) and frames.dtype == np.uint8
  # Measured from the rendered coverage, not from the parameters.
  cx, cy = _circular_centroid(alpha, 1), _circular_centroid(alpha, 2)
  wrap = lambda d, period: (d + period / 2) % period - period / 2
  step_x, step_y = wrap(np.diff(cx), size), wrap(np.diff(cy), size)
  area = alpha.sum((1, 2))
  dy_grid = wrap(np.arange(size)[None, :, None] + 0.5 - cy[:, None, None], size)
  dx_grid = wrap(np.arange(size)[None, None, :] + 0.5 - cx[:, None, None], size)
  mxx, myy, mxy = ((alpha * d).sum((1, 2)) for d in (dx_grid ** 2, dy_grid ** 2, dx_grid * dy_grid))
  orientation = 0.5 * np.arctan2(2 * mxy, mxx - myy)
  turn = wrap(np.diff(orientation), np.pi)
  still = lambda steps: np.all(np.abs(steps) < 0.35)
  if class_name.startswith('move_'):
    want_x = -1 if 'left' in class_name else 1 if 'right' in class_name else 0
    want_y = -1 if 'up' in class_name else 1 if 'down' in class_name else 0
    for steps, want in ((step_x, want_x), (step_y, want_y)):
      assert (np.all(np.sign(steps) == want) and np.all(np.abs(steps) > 0.3)) if want else still(steps)
    assert np.allclose(area, area[0], rtol=0.05)
  elif class_name.startswith('rotate_'):
    assert still(step_x) and still(step_y)
    want = 1 if class_name == 'rotate_clockwise' else -1   # y points down: increasing angle turns clockwise
    assert np.all(np.sign(turn) == want)
  else:
    assert still(step_x) and still(step_y)
    ratio = area[1:] / area[:-1]
    want = 1 if class_name == 'grow' else -1
    # the log-size wraps at most once per clip (a jump the other way)
    assert np.sum(np.sign(np.log(ratio)) == want) >= len(ratio) - 1


def test_files_hold_the_rendered_frames(tmp_path):
  folder = synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_workers=1, **TINY)
  psnr = lambda a, b: 10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))
  rendered = [synthetic.render_clip(synthetic.sample_clip(c, 1, seed=0, num_frames=16, size=32))[0]
              for c in range(4)]
  for c, name in enumerate(synthetic.class_names()[:4]):
    _, decoded = _decode(os.path.join(folder, f'videos/{name}/{name}_0001.mp4'))
    own = psnr(decoded, rendered[c])
    # 32 px of 1-pixel-sharp colour texture loses most in 4:2:0 chroma; ~23-32 dB measured at crf 20.
    assert own > 20, f'{name}: decoded video does not match its rendering ({own:.1f} dB)'
    assert all(own > psnr(decoded, other) + 6 for i, other in enumerate(rendered) if i != c), name


def test_bad_parameters_name_the_field(tmp_path):
  with pytest.raises(ValueError, match='num_classes'):
    synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), num_classes=13)
  with pytest.raises(ValueError, match='size'):
    synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), size=33)
  with pytest.raises(ValueError, match='val_fraction'):
    synthetic_cache.ensure_synthetic(cache_dir=str(tmp_path), val_fraction=0.6, test_fraction=0.5)


def test_look_parameters_change_the_clips_and_the_folder_only_when_set():
  default = synthetic_cache.dataset_dir(**TINY)
  assert synthetic_cache.dataset_dir(background_contrast=synthetic.DEFAULTS['background_contrast'], **TINY) == default
  easy = dict(background_contrast=0.15, radius_range=(0.15, 0.3), travel_range=(0.5, 0.8))
  assert synthetic_cache.dataset_dir(**easy, **TINY) != default
  hard = synthetic.sample_clip(0, 0, num_frames=16, size=32)
  soft = synthetic.sample_clip(0, 0, num_frames=16, size=32, **easy)
  assert np.ptp(soft.background) < np.ptp(hard.background)
  travel = lambda p: abs(p.cx_unwrapped[-1] - p.cx_unwrapped[0]) / 32
  assert 0.5 <= travel(soft) <= 0.8 and 0.25 <= travel(hard) <= 0.5
  with pytest.raises(ValueError, match='radius_range'):
    synthetic_cache.dataset_dir(radius_range=(0.3, 0.1), **TINY)
