"""Re-encode videos for fast host decoding: H.264 mp4 at a smaller short side and a short keyframe interval.

Why: decoding dominates the input pipeline (docs/data.md, "Decoding"). A clip sampler seeks to the keyframe before the
first needed frame and decodes forward, so a short GOP (e.g. 16 frames) bounds the wasted decode work, and a short
side near the training resolution (VideoMAE uses 320p copies of Kinetics/SSv2) shrinks every decoded frame. The
official recipe did this with MMAction2's `resize_videos.py` (ffmpeg); here it is PyAV only, so no ffmpeg binary is
needed.

Everything takes a path or the encoded bytes (`src`). Output is always yuv420p with even dimensions (4:2:0 chroma
needs them), the frame rate of the source (or `fps`), no audio. Frames are re-timed at a constant rate: a variable
frame rate source becomes constant-rate with the same frames in order.
"""
from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction
from typing import Iterable, Iterator

import av
import numpy as np
from PIL import Image

from vmae_jax.data.decode import frame_rate


class ReencodeError(RuntimeError):
  """Opening, decoding or encoding a video failed; the message names the source."""


def _name(src) -> str:
  """How a source is called in messages: its path, or '<N bytes>' for in-memory data."""
  if isinstance(src, (bytes, bytearray, memoryview)):
    return f'<{len(src)} bytes>'
  return os.fspath(src)


def _open(src):
  try:
    if isinstance(src, (bytes, bytearray, memoryview)):
      return av.open(io.BytesIO(bytes(src)))
    return av.open(os.fspath(src))
  except (av.FFmpegError, OSError) as e:
    raise ReencodeError(f'{_name(src)}: cannot open as a video ({e})') from e


def _video_stream(container, src):
  if not container.streams.video:
    raise ReencodeError(f'{_name(src)}: no video stream')
  stream = container.streams.video[0]
  stream.thread_type = 'AUTO'
  return stream


def target_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
  """(width, height) with the short side scaled to `short_side`, never upscaled, both rounded to even numbers.

  Even sizes are required by 4:2:0 chroma; rounding goes down for a kept size (never enlarge) and to the nearest
  even number for the scaled long side (keeps the aspect ratio closest).
  """
  if width < 2 or height < 2:
    raise ValueError(f'video size {width}x{height} is too small to encode as yuv420p')
  short = min(width, height)
  if short_side is None or short_side <= 0 or short <= short_side:
    return width - width % 2, height - height % 2
  scale = short_side / short
  def even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)
  if width <= height:
    return even(short_side), even(height * scale)
  return even(width * scale), even(short_side)


def _atomic_write(dst: str | os.PathLike, data: bytes) -> str:
  """Write through a temporary sibling and os.replace: a reader (or a killed run) never sees a partial file."""
  dst = os.fspath(dst)
  folder = os.path.dirname(os.path.abspath(dst))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(dst) + '.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, dst)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise
  return dst


def _x264_options(crf: int, gop: int | None, preset: str, threads: int, extra: str | None) -> dict[str, str]:
  options = {'crf': str(crf), 'preset': preset}
  params = []
  if gop:
    # keyint = min-keyint and no scene-cut keyframes: a keyframe every `gop` frames, so the decoder's worst-case
    # seek-and-skip distance is known. (Measured: on pure-noise frames x264 still inserts an extra IDR where intra
    # is cheaper; the gap never exceeds `gop`.)
    params.append(f'keyint={gop}:min-keyint={gop}:scenecut=0')
  if threads:
    params.append(f'threads={threads}')
  if extra:
    params.append(extra)
  if params:
    options['x264-params'] = ':'.join(params)
  return options


def encode_frames(frames: Iterable[np.ndarray | av.VideoFrame], fps: float | Fraction, width: int | None = None,
                  height: int | None = None, gop: int | None = None, crf: int = 23, codec: str = 'libx264',
                  preset: str = 'medium', threads: int = 1, x264_params: str | None = None) -> bytes:
  """Encode frames (uint8 RGB (H, W, 3) arrays or PyAV frames) into an mp4 (yuv420p) and return its bytes.

  Frames are converted (and scaled) to `width`×`height` (default: the first frame's size, rounded down to even).
  Timestamps are 0, 1, 2, … in units of 1/fps, i.e. constant frame rate. `threads=1` (default) encodes on one
  thread (for process pools); 0 lets x264 pick. The thread count does not change x264's output. `x264_params`
  is appended to the x264 options ("key=value:key=value").

  Reproducibility (measured): with x264's macroblock tree (`mbtree`, on by default) one 32×32 test clip came out
  in two different byte versions in 8 of 500 encodes within one process; with `x264_params='no-mbtree=1'` all
  500 were identical (and every thread setting gave the same bytes). Pass it where bytes must repeat.
  """
  rate = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
  if rate <= 0:
    raise ValueError(f'fps must be positive, got {fps}')
  buf = io.BytesIO()
  count = 0
  with av.open(buf, 'w', format='mp4') as out:
    stream = None
    for item in frames:
      frame = item if isinstance(item, av.VideoFrame) else av.VideoFrame.from_ndarray(
          np.ascontiguousarray(item, dtype=np.uint8), format='rgb24')
      if stream is None:
        if width is None or height is None:
          width, height = target_size(frame.width, frame.height, None)
        if width % 2 or height % 2:
          raise ValueError(f'yuv420p needs even dimensions, got {width}x{height}')
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
        # Frames are stamped in 1/fps; the muxer later changes stream.time_base (mp4: 1/15360), so keep our own.
        frame_time_base = 1 / rate
        stream.codec_context.time_base = frame_time_base
        if threads:
          stream.thread_count = threads
        if gop:
          stream.codec_context.gop_size = gop
        if codec == 'libx264':
          stream.options = _x264_options(crf, gop, preset, threads, x264_params)
      frame = frame.reformat(width=width, height=height, format='yuv420p', interpolation='BILINEAR')
      frame.pts, frame.time_base = count, frame_time_base
      for packet in stream.encode(frame):
        out.mux(packet)
      count += 1
    if stream is None:
      raise ValueError('encode_frames: no frames to encode')
    for packet in stream.encode():
      out.mux(packet)
  return buf.getvalue()


def reencode(src, dst: str | os.PathLike | None = None, short_side: int | None = 320, gop: int | None = None,
             crf: int = 23, codec: str = 'libx264', fps: float | None = None, preset: str = 'medium',
             threads: int = 1, x264_params: str | None = None) -> bytes | str:
  """Decode any video FFmpeg reads and write it as H.264 mp4 (yuv420p, even size), short side → `short_side`.

  Never upscales: a video whose short side is already ≤ `short_side` keeps its size (rounded down to even).
  `gop` sets the keyframe interval in frames (a keyframe at least every `gop` frames); `fps` overrides the source
  frame rate (frames are not dropped or duplicated, only re-timed). `threads`, `x264_params`: see encode_frames.
  Returns the mp4 bytes when `dst` is None, else writes `dst` atomically and returns it. Raises ReencodeError
  naming the source when it cannot be read or holds no frames. Audio is dropped.
  """
  container = _open(src)
  try:
    stream = _video_stream(container, src)
    rate = Fraction(fps) if fps else frame_rate(stream)
    if rate is None:
      raise ReencodeError(f'{_name(src)}: no frame rate in the stream metadata; pass fps=')
    size: list[int] = []
    def frames() -> Iterator[av.VideoFrame]:
      for frame in container.decode(stream):
        if not size:
          size.extend(target_size(frame.width, frame.height, short_side))
        yield frame.reformat(width=size[0], height=size[1], format='yuv420p', interpolation='BILINEAR')
    try:
      data = encode_frames(frames(), rate, gop=gop, crf=crf, codec=codec, preset=preset, threads=threads,
                           x264_params=x264_params)
    except ValueError as e:
      raise ReencodeError(f'{_name(src)}: {e}') from e
    except av.FFmpegError as e:
      raise ReencodeError(f'{_name(src)}: decoding or encoding failed ({e})') from e
  finally:
    container.close()
  if dst is None:
    return data
  return _atomic_write(dst, data)


def encode_jpeg_frames(src, short_side: int | None = None, quality: int = 90) -> list[bytes]:
  """Every frame of a video as a JPEG (RGB), optionally with the short side scaled down to `short_side`.

  Never upscales; JPEG has no even-size constraint, so a kept size is exact and a scaled size is rounded to the
  nearest pixel.
  """
  container = _open(src)
  out: list[bytes] = []
  try:
    stream = _video_stream(container, src)
    for frame in container.decode(stream):
      w, h = frame.width, frame.height
      short = min(w, h)
      if short_side and short > short_side:
        scale = short_side / short
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
      img = frame.to_ndarray(format='rgb24', width=w, height=h, interpolation='BILINEAR') \
          if (w, h) != (frame.width, frame.height) else frame.to_ndarray(format='rgb24')
      buf = io.BytesIO()
      Image.fromarray(img).save(buf, format='JPEG', quality=quality)
      out.append(buf.getvalue())
  except av.FFmpegError as e:
    raise ReencodeError(f'{_name(src)}: decoding failed after {len(out)} frames ({e})') from e
  finally:
    container.close()
  if not out:
    raise ReencodeError(f'{_name(src)}: no decodable frames')
  return out


def count_frames(src) -> int:
  """Exact number of decodable frames (a full decoding pass)."""
  container = _open(src)
  try:
    stream = _video_stream(container, src)
    return sum(1 for _ in container.decode(stream))
  except av.FFmpegError as e:
    raise ReencodeError(f'{_name(src)}: decoding failed ({e})') from e
  finally:
    container.close()


def probe(src) -> dict:
  """`{num_frames, fps, width, height, codec}` from the stream metadata.

  The frame count is the container's (mp4 stores it); when that is 0 (webm/mkv usually) a decoding pass counts
  the frames. The first frame is always decoded, so a file whose stream cannot be decoded at all fails here
  (ReencodeError) rather than in training.
  """
  container = _open(src)
  try:
    stream = _video_stream(container, src)
    rate = frame_rate(stream)
    num_frames = int(stream.frames or 0)
    width, height = stream.codec_context.width, stream.codec_context.height
    codec = stream.codec_context.name
    try:
      first = next(iter(container.decode(stream)), None)
    except av.FFmpegError as e:
      raise ReencodeError(f'{_name(src)}: the first frame does not decode ({e})') from e
    if first is None:
      raise ReencodeError(f'{_name(src)}: no decodable frames')
    width, height = width or first.width, height or first.height
  finally:
    container.close()
  if num_frames <= 0:
    num_frames = count_frames(src)
  return {'num_frames': num_frames, 'fps': float(rate) if rate else 0.0, 'width': int(width),
          'height': int(height), 'codec': codec}
