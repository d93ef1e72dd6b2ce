"""Decode just the frames a clip needs, with PyAV (any container/codec FFmpeg reads), as uint8 (T, H, W, 3).

A record (from any source) names its bytes one of three ways: `file` (a path), `video_bytes` (an encoded
container in memory, e.g. from the TFDS shards) or `jpeg_frames` (a list of JPEG images); `path` is the name used in
error messages. Video decoding seeks to the keyframe before the first needed frame, decodes forward, converts to
RGB only the frames that are kept and stops after the last one. Streams made only of keyframes (videos packed
with keyframe interval 1, MJPEG) decode just the wanted packets. Frame numbers come from timestamps
(index = round((pts − start)·time_base·fps)); where they do not behave (variable frame rate, missing pts, a seek
that lands late) it falls back to counting frames from the start, which is always exact.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
from fractions import Fraction

import av
import numpy as np
from PIL import Image


class DecodeError(RuntimeError):
  """Opening or decoding a video failed; the message names the file."""


def _open(record: dict):
  if 'video_bytes' in record:
    return av.open(io.BytesIO(record['video_bytes']))
  path = record['file']
  if os.path.isdir(path):
    raise DecodeError(f'{path}: is a directory, not a video')
  if os.path.getsize(path) == 0:
    raise DecodeError(f'{path}: zero-byte file')
  return av.open(path)


def _stream(container, record):
  if not container.streams.video:
    raise DecodeError(f'{record.get("path", record.get("file"))}: no video stream')
  return container.streams.video[0]


def frame_rate(stream) -> Fraction | None:
  """The stream's frame rate: measured average, else what FFmpeg guesses; None when unknown."""
  for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
    if rate:
      return Fraction(rate)
  return None


def _count_frames(container, stream) -> int:
  """Exact frame count by demuxing packets (no decoding)."""
  container.seek(0, stream=stream)
  return sum(1 for packet in container.demux(stream) if packet.size)


def _frame_count(container, stream) -> int:
  """Container metadata, else duration × rate, else a counting pass (webm often says 0 frames)."""
  if stream.frames:
    return int(stream.frames)
  rate = frame_rate(stream)
  if stream.duration and stream.time_base and rate:
    return max(int(round(float(stream.duration * stream.time_base * rate))), 1)
  if container.duration and rate:
    return max(int(round(container.duration / av.time_base * float(rate))), 1)
  return _count_frames(container, stream)


def num_frames(record: dict) -> int:
  """Frame count of a record (known counts from the source are trusted)."""
  if 'jpeg_frames' in record:
    return len(record['jpeg_frames'])
  if record.get('num_frames'):
    return int(record['num_frames'])
  with _open(record) as container:
    return _frame_count(container, _stream(container, record))


def _decode_sequential(container, stream, wanted: set[int], last: int) -> dict[int, np.ndarray]:
  stream.codec_context.skip_frame = 'DEFAULT'
  container.seek(0, stream=stream)
  out = {}
  for i, frame in enumerate(container.decode(stream)):
    if i in wanted:
      out[i] = _rgb(frame)
    if i >= last:
      break
  return out


def _seek_to(container, stream, first: int):
  """Seek to the keyframe at or before frame `first`; returns pts → frame index, or None without timestamps."""
  rate = frame_rate(stream)
  start = stream.start_time if stream.start_time is not None else 0
  tb = stream.time_base
  if rate is None or tb is None:
    return None
  # Always seek, also to frame 0: it rewinds the demuxer and flushes the decoder, so a second attempt on the same
  # open container starts clean.
  container.seek(start + int(first / rate / tb), stream=stream, backward=True, any_frame=False)
  return lambda pts: int(round(float((pts - start) * tb * rate)))


def _decode_seeking(container, stream, wanted: set[int], first: int, last: int) -> dict[int, np.ndarray] | None:
  """Seek + pts-derived indices; None when the timestamps cannot be trusted (caller falls back).

  Packets of frames that are not wanted are decoded with skip_frame=NONREF: a non-reference frame (most B-frames)
  is then dropped by the decoder, and since no other frame is predicted from it the wanted frames come out
  bit-identical while fewer frames are decoded.
  """
  index = _seek_to(container, stream, first)
  if index is None:
    return None
  codec = stream.codec_context
  out: dict[int, np.ndarray] = {}
  packet_indices: list[int] = []
  prev = None
  done = False
  try:
    for packet in container.demux(stream):
      if packet.size:
        if packet.pts is None:
          return None
        i = index(packet.pts)
        packet_indices.append(i)
        codec.skip_frame = 'DEFAULT' if i in wanted else 'NONREF'
      for frame in codec.decode(packet if packet.size else None):
        if frame.pts is None:
          return None
        i = index(frame.pts)
        if prev is None and i > first:
          return None  # the seek landed after the first needed frame
        if prev is not None and i <= prev:
          return None  # output must come in display order
        prev = i
        if i in wanted:
          out[i] = _rgb(frame)
        if i >= last:
          done = True
          break
      if done:
        break
  finally:
    codec.skip_frame = 'DEFAULT'
  # Constant frame rate check over every packet seen (skipped ones included): one packet per index and no gaps up
  # to the last wanted frame (packets read past it, in decode order, may still leave holes).
  if len(set(packet_indices)) != len(packet_indices):
    return None
  seen = sorted(i for i in packet_indices if i <= last)
  if seen and seen[-1] - seen[0] + 1 != len(seen):
    return None
  return out


def _rgb(frame) -> np.ndarray:
  return frame.to_ndarray(format='rgb24')


@contextlib.contextmanager
def _video(record: dict, threads: int):
  with _open(record) as container:
    stream = _stream(container, record)
    stream.thread_type = 'AUTO'
    if threads:
      stream.codec_context.thread_count = threads
    yield container, stream


def _decode_intra(container, stream, wanted: set[int], first: int, last: int) -> dict[int, np.ndarray] | None:
  """All-keyframe streams (packed with keyframe interval 1, MJPEG, ...): decode only the wanted packets.

  Returns None at the first packet that is not a keyframe (the stream needs the general path).
  """
  index = _seek_to(container, stream, first)
  if index is None:
    return None
  codec = stream.codec_context
  out: dict[int, np.ndarray] = {}

  def keep(frames) -> bool:
    for frame in frames:
      if frame.pts is None:
        return False
      i = index(frame.pts)
      if i in wanted:
        out[i] = _rgb(frame)
    return True

  packets = (p for p in container.demux(stream) if p.size)
  # Probe two packets before decoding anything: a normal (inter-coded) stream is turned away untouched.
  probe = [p for _, p in zip(range(2), packets)]
  if not probe or any(not p.is_keyframe or p.pts is None for p in probe) or index(probe[0].pts) > first:
    return None
  for packet in itertools.chain(probe, packets):
    if not packet.is_keyframe or packet.pts is None:
      return None
    i = index(packet.pts)
    if i in wanted and not keep(codec.decode(packet)):
      return None
    if i >= last:
      break
  if not keep(codec.decode(None)):  # drain: threaded decoders hand frames back late
    return None
  return out


def _decode(container, stream, indices: np.ndarray) -> dict[int, np.ndarray]:
  wanted = set(int(i) for i in np.unique(indices))
  first, last = min(wanted), max(wanted)
  got = _decode_intra(container, stream, wanted, first, last)
  if got is None or len(got) < len(wanted):
    got = _decode_seeking(container, stream, wanted, first, last)
    if got is None or (len(got) < len(wanted) and max(got, default=-1) < last and first > 0):
      got = _decode_sequential(container, stream, wanted, last)
  return got


def _check_indices(indices, name: str) -> np.ndarray:
  indices = np.asarray(indices, dtype=np.int64)
  if indices.ndim != 1 or indices.size == 0 or indices.min() < 0:
    raise ValueError(f'{name}: invalid frame indices {indices.tolist()}')
  return indices


def _jpeg(record: dict, indices: np.ndarray) -> np.ndarray:
  frames = record['jpeg_frames']
  cache = {int(i): np.asarray(Image.open(io.BytesIO(frames[min(int(i), len(frames) - 1)])).convert('RGB'))
           for i in np.unique(indices)}
  return np.stack([cache[int(i)] for i in indices])


@contextlib.contextmanager
def _reading(record: dict):
  """Any FFmpeg/PyAV/OS error becomes a DecodeError naming the file; the caller decides what it costs (a counted
  skip in training, an unevaluated video in evaluation)."""
  name = record.get('path', record.get('file', '<bytes>'))
  try:
    yield
  except (DecodeError, ValueError):
    raise
  except Exception as e:
    raise DecodeError(f'{name}: {type(e).__name__}: {e}') from e


def _assemble(got: dict[int, np.ndarray], indices: np.ndarray, record: dict) -> np.ndarray:
  if not got:
    raise DecodeError(f'{record.get("path", record.get("file", "<bytes>"))}: no frames could be decoded')
  available = sorted(got)
  out = []
  for i in indices:
    i = int(i)
    if i not in got:  # past the real end (metadata over-counts): repeat the last decoded frame, as the official
      i = max(k for k in available if k <= i) if available[0] <= i else available[0]  # loaders do
    out.append(got[i])
  return np.stack(out)


def read_clip(record: dict, choose, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Open the video once, count its frames n, decode `indices = choose(n)`; returns (uint8 (T, H, W, 3), indices).

  `choose` is a sampler closed over its random generator, so the pipeline pays one open per clip. `threads` = 0
  lets FFmpeg choose; 1 decodes in the calling thread (best inside many worker processes).
  """
  name = record.get('path', record.get('file', '<bytes>'))
  if 'jpeg_frames' in record:
    indices = _check_indices(choose(len(record['jpeg_frames'])), name)
    return _jpeg(record, indices), indices
  with _reading(record), _video(record, threads) as (container, stream):
    n = int(record['num_frames']) if record.get('num_frames') else _frame_count(container, stream)
    indices = _check_indices(choose(n), name)
    got = _decode(container, stream, indices)
  return _assemble(got, indices, record), indices


def decode_frames(record: dict, indices, threads: int = 0) -> np.ndarray:
  """uint8 (len(indices), H, W, 3) for known frame indices (any order, repeats allowed); no frame count needed."""
  indices = _check_indices(indices, record.get('path', record.get('file', '<bytes>')))
  if 'jpeg_frames' in record:
    return _jpeg(record, indices)
  with _reading(record), _video(record, threads) as (container, stream):
    got = _decode(container, stream, indices)
  return _assemble(got, indices, record)
