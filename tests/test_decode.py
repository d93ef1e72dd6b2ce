"""Decoding: the frames asked for are exactly those of a frame-by-frame reference decode, for several containers,
codecs and sizes; metadata fallbacks; broken inputs raise (the pipeline turns that into a counted skip)."""
import io
import os

import av
import numpy as np
import pytest
from PIL import Image

from vmae_jax.data import decode
from vmae_jax.data.videogen import write_video

FORMATS = {
    'mp4_h264': dict(name='v.mp4', codec='libx264'),
    'mp4_h264_gop8': dict(name='g.mp4', codec='libx264', gop=8),
    'mp4_h264_intra': dict(name='i.mp4', codec='libx264', gop=1),
    'webm_vp9': dict(name='v.webm', codec='libvpx-vp9'),
    'avi_mpeg4': dict(name='v.avi', codec='mpeg4'),
    'mkv_h264_gray': dict(name='gray.mkv', codec='libx264', pix_fmt='gray'),
    'avi_mjpeg_odd_size': dict(name='odd.avi', codec='mjpeg', pix_fmt='yuvj444p', width=171, height=97),
}


def _reference(path):
  with av.open(path) as c:
    return [f.to_ndarray(format='rgb24') for f in c.decode(video=0)]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  d = tmp_path_factory.mktemp('videos')
  out = {}
  for key, spec in FORMATS.items():
    spec = dict(spec)
    name = spec.pop('name')
    kw = dict(num_frames=75, width=spec.pop('width', 96), height=spec.pop('height', 64), **spec)
    out[key] = write_video(str(d / name), **kw)
  return out


@pytest.mark.parametrize('fmt', sorted(FORMATS))
def test_frames_equal_reference_decode(videos, fmt):
  path = videos[fmt]
  ref = _reference(path)
  assert len(ref) == 75
  rec = {'file': path, 'path': os.path.basename(path)}
  assert decode.num_frames(rec) == 75
  for idx in ([0, 1, 2], [5, 40, 41, 74, 74], [60, 3, 33], list(range(10, 74, 4)), [74]):
    got = decode.decode_frames(rec, idx)
    assert got.dtype == np.uint8 and got.shape == (len(idx),) + ref[0].shape
    for k, i in enumerate(idx):
      np.testing.assert_array_equal(got[k], ref[i], err_msg=f'{fmt} frame {i}')


def test_seek_path_is_used_for_late_frames(videos, monkeypatch):
  """A late window on a short-GOP file is served by seeking, not by decoding from the start."""
  def fail(*a, **k):
    raise AssertionError('sequential fallback used')
  monkeypatch.setattr(decode, '_decode_sequential', fail)
  ref = _reference(videos['mp4_h264_gop8'])
  got = decode.decode_frames({'file': videos['mp4_h264_gop8']}, [50, 54, 58])
  for k, i in enumerate([50, 54, 58]):
    np.testing.assert_array_equal(got[k], ref[i])


@pytest.mark.parametrize('fmt', ['mp4_h264_intra', 'avi_mjpeg_odd_size'])
def test_all_keyframe_streams_decode_only_wanted_packets(videos, fmt, monkeypatch):
  def fail(*a, **k):
    raise AssertionError('general path used for an all-keyframe stream')
  monkeypatch.setattr(decode, '_decode_seeking', fail)
  monkeypatch.setattr(decode, '_decode_sequential', fail)
  ref = _reference(videos[fmt])
  idx = [70, 2, 33, 34, 74]
  got = decode.decode_frames({'file': videos[fmt]}, idx)
  for k, i in enumerate(idx):
    np.testing.assert_array_equal(got[k], ref[i])


def test_bytes_and_jpeg_records(videos):
  path = videos['mp4_h264']
  ref = _reference(path)
  with open(path, 'rb') as f:
    data = f.read()
  got = decode.decode_frames({'video_bytes': data, 'path': 'mem'}, [7, 70])
  np.testing.assert_array_equal(got[0], ref[7])
  np.testing.assert_array_equal(got[1], ref[70])
  jpegs = []
  for frame in ref[:10]:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format='JPEG', quality=95)
    jpegs.append(buf.getvalue())
  rec = {'jpeg_frames': jpegs, 'path': 'jpg'}
  assert decode.num_frames(rec) == 10
  got = decode.decode_frames(rec, [9, 0, 9])
  assert got.shape == (3, 64, 96, 3)
  np.testing.assert_array_equal(got[1], np.asarray(Image.open(io.BytesIO(jpegs[0])).convert('RGB')))
  np.testing.assert_array_equal(got[0], got[2])


def test_frame_count_fallbacks(videos, monkeypatch):
  """webm says 0 frames: the container duration × rate gives the count; with no rate either, a counting pass."""
  path = videos['webm_vp9']
  with av.open(path) as c:
    assert c.streams.video[0].frames == 0  # the metadata gap this fallback exists for
  assert decode.num_frames({'file': path}) == 75
  monkeypatch.setattr(decode, 'frame_rate', lambda stream: None)
  assert decode.num_frames({'file': path}) == 75
  assert decode.num_frames({'file': path, 'num_frames': 12}) == 12  # a record that already knows wins


def test_large_video(tmp_path):
  """A 1280×720 H.264 file: odd-but-valid inputs include large ones."""
  path = write_video(str(tmp_path / 'large.mp4'), num_frames=20, width=1280, height=720)
  ref = _reference(path)
  got = decode.decode_frames({'file': path}, [0, 19, 10])
  assert got.shape == (3, 720, 1280, 3)
  for k, i in enumerate([0, 19, 10]):
    np.testing.assert_array_equal(got[k], ref[i])


def test_indices_past_the_end_repeat_the_last_frame(videos):
  ref = _reference(videos['avi_mpeg4'])
  got = decode.decode_frames({'file': videos['avi_mpeg4']}, [73, 74, 80, 90])
  for k, i in enumerate([73, 74, 74, 74]):
    np.testing.assert_array_equal(got[k], ref[i])


@pytest.mark.parametrize('kind', ['zero_byte', 'truncated', 'garbage', 'text', 'directory', 'missing'])
def test_broken_inputs_raise(tmp_path, videos, kind):
  path = tmp_path / f'{kind}.mp4'
  if kind == 'zero_byte':
    path.write_bytes(b'')
  elif kind == 'truncated':
    data = open(videos['mp4_h264'], 'rb').read()
    path.write_bytes(data[:len(data) // 10])
  elif kind == 'garbage':
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
  elif kind == 'text':
    path.write_text('not a video\n' * 50)
  elif kind == 'directory':
    path.mkdir()
  with pytest.raises(Exception):
    rec = {'file': str(path), 'path': path.name}
    decode.decode_frames(rec, np.arange(0, 64, 4) % max(decode.num_frames(rec), 1))


def test_variable_frame_rate_falls_back_to_exact_counting(tmp_path):
  """Irregular timestamps: frame i is still the i-th decoded frame (the pts-derived shortcut is refused)."""
  from fractions import Fraction
  path = str(tmp_path / 'vfr.mkv')
  rng = np.random.default_rng(0)
  with av.open(path, 'w') as c:
    s = c.add_stream('libx264', rate=30)
    s.width, s.height, s.pix_fmt = 64, 48, 'yuv420p'
    s.codec_context.time_base = Fraction(1, 1000)
    pts = 0
    for i in range(60):
      img = np.full((48, 64, 3), (8 * i) % 256, np.uint8)
      frame = av.VideoFrame.from_ndarray(img, format='rgb24')
      frame.pts, frame.time_base = pts, Fraction(1, 1000)
      pts += int(rng.choice([20, 33, 60]))
      for p in s.encode(frame):
        c.mux(p)
    for p in s.encode():
      c.mux(p)
  ref = _reference(path)
  assert len(ref) == 60
  idx = [45, 50, 55, 59]
  got = decode.decode_frames({'file': path}, idx)
  for k, i in enumerate(idx):
    np.testing.assert_array_equal(got[k], ref[i])
