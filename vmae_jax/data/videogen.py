"""Write test and benchmark videos with PyAV: moving, textured content in any codec/container FFmpeg encodes.

Frame i carries its own index in the top-left 16×16 block (brightness 8·i mod 256 stays readable after lossy
coding), so a decoded frame can be checked against the index that was asked for.
"""
from __future__ import annotations

import av
import numpy as np


def frame_content(i: int, width: int, texture: np.ndarray) -> np.ndarray:
  shift = (3 * i) % width
  img = np.roll(texture, shift, axis=1).copy()
  img[:16, :16] = (8 * i) % 256
  return img


def write_video(path: str, num_frames: int = 90, width: int = 340, height: int = 256, fps: int = 30,
                codec: str = 'libx264', pix_fmt: str = 'yuv420p', gop: int | None = None, seed: int = 0,
                options: dict | None = None, container_format: str | None = None) -> str:
  rng = np.random.default_rng(seed)
  # Low-frequency texture: realistic compressed size (pure noise would be unrealistically expensive to code).
  small = rng.integers(0, 256, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
  texture = np.kron(small, np.ones((8, 8, 1), np.uint8))[:height, :width]
  texture = np.pad(texture, ((0, height - texture.shape[0]), (0, width - texture.shape[1]), (0, 0)), mode='edge')
  with av.open(path, 'w', format=container_format) as container:
    stream = container.add_stream(codec, rate=fps, options=options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if gop:
      stream.codec_context.gop_size = gop
    for i in range(num_frames):
      img = frame_content(i, width, texture)
      frame = av.VideoFrame.from_ndarray(img, format='rgb24')
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path
