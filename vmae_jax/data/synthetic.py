"""The synthetic motion classes: one clip's ground truth drawn from a seed, and rendered as a uint8 array, whose
class can only be told from motion over time.

Why the classes need time: a video model that is only checked on data where one frame gives the answer proves
nothing about its temporal modelling. Each clip shows ONE randomly textured ellipse on a random smooth background;
the class is what the ellipse does: move left/right/up/down (or diagonally), rotate clockwise/counter-clockwise,
grow or shrink. Every per-frame property has the SAME distribution in every class, at every frame:

- position is uniform over the frame, on a torus: an object moving off one edge re-enters at the opposite one
  (it is drawn wrapped), so the position marginal stays uniform at every frame;
- orientation is uniform in [0, 2π);
- log-size is uniform over a fixed range; for grow/shrink it advances on a circle over that range, so the size
  marginal stays uniform too. The price: in about a third of grow/shrink clips the object jumps once from the
  largest to the smallest size (or back), like a new object appearing;
- the textures, aspect ratio and background are drawn the same way for every class.

So a single frame (or a time-averaged frame) carries no class information; two frames do. Motion amounts are set
per clip (not per frame), so they are the same for any `num_frames`. Each clip's parameters come from
`np.random.default_rng((seed, class, clip))`, so drawing is deterministic.

Only arrays here: writing the clips as mp4 files with the official annotation lists, once, under a cache folder,
is synthetic_cache.py (docs/data.md, "Synthetic data").
"""
from __future__ import annotations

import dataclasses

import numpy as np

# The classes in label order. The first 8 are the default; the diagonals are extra (cheap, and harder to separate
# from the cardinal moves with a single displacement threshold).
CLASS_NAMES: tuple[str, ...] = (
    'move_left', 'move_right', 'move_up', 'move_down',
    'rotate_clockwise', 'rotate_counterclockwise', 'grow', 'shrink',
    'move_up_left', 'move_up_right', 'move_down_left', 'move_down_right',
)

# Unit (dx, dy) in image coordinates (y points down) for the moving classes.
_DIRECTIONS = {
    'move_left': (-1.0, 0.0), 'move_right': (1.0, 0.0), 'move_up': (0.0, -1.0), 'move_down': (0.0, 1.0),
    'move_up_left': (-0.7071067811865476, -0.7071067811865476),
    'move_up_right': (0.7071067811865476, -0.7071067811865476),
    'move_down_left': (-0.7071067811865476, 0.7071067811865476),
    'move_down_right': (0.7071067811865476, 0.7071067811865476),
}

# Ranges, as fractions of the frame size or per whole clip (so they do not depend on num_frames).
_RADIUS_RANGE = (0.08, 0.32)          # semi-major axis / frame size; log-uniform
_ASPECT_RANGE = (0.45, 0.75)          # semi-minor / semi-major
_TRAVEL_RANGE = (0.25, 0.5)           # translation over the clip / frame size
_TURN_RANGE = (0.5 * np.pi, np.pi)    # rotation over the clip (radians)
_ZOOM_RANGE = (0.35, 0.55)            # |log-size change| over the clip
_OBJECT_CELLS = (3, 6)                # object texture: k×k random colour cells, k in [3, 6]
_BACKGROUND_CELLS = (3, 7)            # background: k×k random colours, bilinear-smoothed
_BACKGROUND_CONTRAST = 0.6            # background colours pulled towards grey so the object stands out

# The dataset's parameters and their defaults (the config's `data.synthetic` block; synthetic_cache validates them).
DEFAULTS = dict(num_classes=8, clips_per_class=160, num_frames=40, size=96, fps=25, seed=0,
                val_fraction=0.1, test_fraction=0.1,
                # how hard the motion is to see (the demo uses an easier setting; see configs/demo.py)
                background_contrast=_BACKGROUND_CONTRAST, radius_range=_RADIUS_RANGE, travel_range=_TRAVEL_RANGE)


def class_names(num_classes: int = DEFAULTS['num_classes']) -> list[str]:
  """The first `num_classes` class names, in label order."""
  if not 1 <= num_classes <= len(CLASS_NAMES):
    raise ValueError(f'synthetic num_classes={num_classes}: must be in [1, {len(CLASS_NAMES)}]')
  return list(CLASS_NAMES[:num_classes])


# ---------------------------------------------------------------------------------------------------------------
# One clip: parameters (the ground truth) and rendering


@dataclasses.dataclass(frozen=True)
class ClipParams:
  """Everything that defines one clip. Per-frame arrays have shape (num_frames,); positions are in pixels with
  (0, 0) the top-left corner of the frame, y pointing down; angle in radians, increasing = clockwise on screen."""
  class_name: str
  size: int
  cx: np.ndarray             # wrapped into [0, size)
  cy: np.ndarray
  cx_unwrapped: np.ndarray   # continuous trajectory (what the motion is)
  cy_unwrapped: np.ndarray
  angle: np.ndarray
  radius: np.ndarray         # semi-major axis in pixels
  aspect: float              # semi-minor / semi-major
  object_texture: np.ndarray       # (k, k, 3) float colours in [0, 255]
  background: np.ndarray           # (size, size, 3) float in [0, 255]

  @property
  def num_frames(self) -> int:
    return int(self.cx.shape[0])


def _smooth_background(rng: np.random.Generator, size: int, contrast: float = _BACKGROUND_CONTRAST) -> np.ndarray:
  cells = int(rng.integers(_BACKGROUND_CELLS[0], _BACKGROUND_CELLS[1] + 1))
  grid = rng.uniform(0, 255, (cells, cells, 3))
  grid = 127.5 + contrast * (grid - 127.5)
  # Bilinear upsampling of the cell grid (separable): smooth, cheap to encode, no per-pixel noise.
  pos = (np.arange(size) + 0.5) / size * (cells - 1)
  lo = np.clip(np.floor(pos).astype(int), 0, max(cells - 2, 0))
  hi = np.minimum(lo + 1, cells - 1)
  w = (pos - lo)[:, None]
  rows = grid[lo] * (1 - w)[:, :, None] + grid[hi] * w[:, :, None]               # (size, cells, 3)
  return rows[:, lo] * (1 - w.T)[:, :, None] + rows[:, hi] * w.T[:, :, None]      # (size, size, 3)


def sample_clip(class_index: int, clip_index: int, seed: int = 0, num_frames: int = DEFAULTS['num_frames'],
                size: int = DEFAULTS['size'], background_contrast: float = _BACKGROUND_CONTRAST,
                radius_range: tuple[float, float] = _RADIUS_RANGE,
                travel_range: tuple[float, float] = _TRAVEL_RANGE) -> ClipParams:
  """The parameters (ground-truth trajectory and textures) of clip `clip_index` of class `class_index`.

  The random stream depends only on (seed, class_index, clip_index), so a clip does not change when the number of
  clips or classes changes. Every draw happens for every class, in the same order, so the streams line up.
  """
  if not 0 <= class_index < len(CLASS_NAMES):
    raise ValueError(f'class_index={class_index} outside [0, {len(CLASS_NAMES)})')
  if num_frames < 2:
    raise ValueError(f'num_frames={num_frames}: motion needs at least 2 frames')
  name = CLASS_NAMES[class_index]
  rng = np.random.default_rng((seed, class_index, clip_index))
  t = np.arange(num_frames) / (num_frames - 1)   # 0 → 1 over the clip

  cx0, cy0 = rng.uniform(0, size, 2)
  angle0 = rng.uniform(0, 2 * np.pi)
  log_lo, log_hi = np.log(radius_range[0] * size), np.log(radius_range[1] * size)
  log_r0 = rng.uniform(log_lo, log_hi)
  aspect = float(rng.uniform(*_ASPECT_RANGE))
  travel = rng.uniform(*travel_range) * size
  turn = rng.uniform(*_TURN_RANGE)
  zoom = rng.uniform(*_ZOOM_RANGE)
  cells = int(rng.integers(_OBJECT_CELLS[0], _OBJECT_CELLS[1] + 1))
  object_texture = rng.uniform(0, 255, (cells, cells, 3))
  background = _smooth_background(rng, size, background_contrast)

  dx, dy = _DIRECTIONS.get(name, (0.0, 0.0))
  cx_unwrapped = cx0 + dx * travel * t
  cy_unwrapped = cy0 + dy * travel * t
  spin = {'rotate_clockwise': 1.0, 'rotate_counterclockwise': -1.0}.get(name, 0.0)
  angle = angle0 + spin * turn * t
  growth = {'grow': 1.0, 'shrink': -1.0}.get(name, 0.0)
  # Log-size moves on a circle over [log_lo, log_hi): uniform at frame 0 ⇒ uniform at every frame.
  log_r = log_lo + np.mod(log_r0 - log_lo + growth * zoom * t, log_hi - log_lo)
  return ClipParams(class_name=name, size=size, cx=np.mod(cx_unwrapped, size), cy=np.mod(cy_unwrapped, size),
                    cx_unwrapped=cx_unwrapped, cy_unwrapped=cy_unwrapped, angle=angle, radius=np.exp(log_r),
                    aspect=aspect, object_texture=object_texture, background=background)


def render_clip(params: ClipParams) -> tuple[np.ndarray, np.ndarray]:
  """Frames uint8 (T, S, S, 3) and the object's coverage alpha float32 (T, S, S) in [0, 1].

  Inverse mapping per pixel: torus offset from the centre → object coordinates (rotated, scaled by the semi-axes)
  → inside test with an anti-aliased edge, texture looked up by nearest cell, so the texture moves, turns and
  scales with the object.
  """
  s = params.size
  f32 = np.float32  # float32 halves the rendering time; the result is rounded to uint8 anyway
  centers = np.arange(s, dtype=f32) + f32(0.5)
  # Torus offsets (shortest signed distance), shape (T, 1, S) for x and (T, S, 1) for y.
  ox = np.mod(centers[None, None, :] - params.cx.astype(f32)[:, None, None] + f32(s / 2), f32(s)) - f32(s / 2)
  oy = np.mod(centers[None, :, None] - params.cy.astype(f32)[:, None, None] + f32(s / 2), f32(s)) - f32(s / 2)
  cos = np.cos(params.angle).astype(f32)[:, None, None]
  sin = np.sin(params.angle).astype(f32)[:, None, None]
  r = params.radius.astype(f32)[:, None, None]
  u = (cos * ox + sin * oy) / r                            # along the major axis, in semi-major units
  v = (cos * oy - sin * ox) / (r * f32(params.aspect))     # along the minor axis
  rho = np.sqrt(u * u + v * v)
  # (1 − ρ) · minor semi-axis ≈ distance to the edge in pixels (exact on the minor axis, conservative elsewhere).
  alpha = np.clip((f32(1) - rho) * (r * f32(params.aspect)) + f32(0.5), f32(0), f32(1))
  k = params.object_texture.shape[0]
  iu = np.clip(((u + f32(1)) * f32(0.5 * k)).astype(np.int32), 0, k - 1)
  iv = np.clip(((v + f32(1)) * f32(0.5 * k)).astype(np.int32), 0, k - 1)
  colour = params.object_texture.astype(f32).reshape(k * k, 3)[iv * k + iu]   # (T, S, S, 3)
  a = alpha[..., None]
  background = params.background.astype(f32)[None]
  frames = background + (colour - background) * a
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8), alpha
