"""Host augmentation: the official crop / RandAugment / erasing / Mixup semantics, determinism, torch parity."""
import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from vmae_jax import constants
from vmae_jax.data import augment, geometry, mixing, randaugment


def _clip(seed=0, shape=(4, 48, 64, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth_clip(seed=0, shape=(4, 48, 64, 3)):
  """Low-frequency content (so interpolation and histogram ops are not fed pure noise)."""
  t, h, w, _ = shape
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  frames = []
  for k in range(t):
    phase = rng.uniform(0, 2 * np.pi, 3)
    chans = [127 + 100 * np.sin(xx / (5 + c) + yy / (7 + 2 * c) + phase[c] + k) for c in range(3)]
    frames.append(np.stack(chans, -1))
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# GroupMultiScaleCrop

def test_fixed_crop_offsets_official_order():
  # 340x256 frame, 224x224 crop: steps (340-224)//4 = 29, (256-224)//4 = 8.
  assert geometry.fixed_crop_offsets(340, 256, 224, 224, more_fix_crop=True) == [
      (0, 0), (116, 0), (0, 32), (116, 32), (58, 16),                  # corners, centre
      (0, 16), (116, 16), (58, 32), (58, 0),                           # middle-left/right, bottom/top-middle
      (29, 8), (87, 8), (29, 24), (87, 24)]                            # quarter points
  assert geometry.fixed_crop_offsets(340, 256, 224, 224, more_fix_crop=False) == [
      (0, 0), (116, 0), (0, 32), (116, 32), (58, 16)]


def test_multi_scale_crop_sizes_snap_and_distortion():
  # base 256: int(256·[1, .875, .75, .66]) = [256, 224, 192, 168]; pairs with |i−j| <= 1, height index outer.
  assert geometry.multi_scale_crop_sizes(340, 256, 224) == [
      (256, 256), (224, 256), (256, 224), (224, 224), (192, 224), (224, 192), (192, 192), (168, 192),
      (192, 168), (168, 168)]
  # base 255: int(255·.875) = 223 is within 3 px of 224 → snapped; 191 and 168 stay.
  sizes = {s for pair in geometry.multi_scale_crop_sizes(300, 255, 224) for s in pair}
  assert sizes == {255, 224, 191, 168}
  assert len(geometry.multi_scale_crop_sizes(300, 255, 224, max_distort=0)) == 4
  # base 253: int(253·.875) = 221 is 3 px away → kept as is.
  assert {s for pair in geometry.multi_scale_crop_sizes(300, 253, 224) for s in pair} == {253, 221, 189, 166}


def test_multi_scale_crop_box_draws_from_the_official_candidates():
  width, height = 340, 256
  pairs = geometry.multi_scale_crop_sizes(width, height, 224)
  rng = np.random.default_rng(0)
  seen_pairs, seen_offsets = set(), set()
  for _ in range(3000):
    x, y, w, h = geometry.multi_scale_crop_box(rng, width, height, 224)
    assert (w, h) in pairs
    grid = geometry.fixed_crop_offsets(width, height, w, h)
    assert (x, y) in grid
    assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
    seen_pairs.add((w, h))
    seen_offsets.add(grid.index((x, y)))
  assert seen_pairs == set(pairs)          # every pair reachable
  assert seen_offsets == set(range(13))    # every grid point reachable


def test_multi_scale_crop_box_without_fixed_grid_is_uniform_within_bounds():
  rng = np.random.default_rng(1)
  boxes = [geometry.multi_scale_crop_box(rng, 340, 256, 224, fix_crop=False) for _ in range(500)]
  off_grid = 0
  for x, y, w, h in boxes:
    assert 0 <= x <= 340 - w and 0 <= y <= 256 - h
    off_grid += (x, y) not in geometry.fixed_crop_offsets(340, 256, w, h)
  assert off_grid > 400


def test_crop_resize_uses_one_box_for_every_frame():
  clip = _clip(2, (5, 60, 80, 3))
  box = (7, 3, 50, 41)
  out = geometry.crop_resize(clip, box, 32)
  assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
  for t in range(5):
    ref = Image.fromarray(clip[t]).crop((7, 3, 57, 44)).resize((32, 32), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out[t], np.asarray(ref))
  # A box sticking out of the frame is zero-padded exactly like PIL's crop.
  out = geometry.crop_resize(clip, (70, 50, 20, 20), 20)
  ref = Image.fromarray(clip[0]).crop((70, 50, 90, 70)).resize((20, 20), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(out[0], np.asarray(ref))


def test_pretrain_transform_matches_pil_crop_of_the_sampled_box():
  clip = _clip(3, (4, 64, 80, 3))
  out = augment.pretrain_transform(np.random.default_rng(5), clip, 32)
  x, y, w, h = geometry.multi_scale_crop_box(np.random.default_rng(5), 80, 64, 32)
  for t in range(4):
    ref = Image.fromarray(clip[t]).crop((x, y, x + w, y + h)).resize((32, 32), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(out[t], np.asarray(ref))


# ---------------------------------------------------------------------------------------------------------------
# Random resized crop and the torch-exact bilinear resize

def test_random_resized_crop_box_bounds_area_and_ratio():
  rng = np.random.default_rng(0)
  height, width = 256, 340
  areas, ratios = [], []
  for _ in range(2000):
    x, y, w, h = geometry.random_resized_crop_box(rng, height, width, (0.08, 1.0), (3 / 4, 4 / 3))
    assert 0 <= x and x + w <= width and 0 <= y and y + h <= height and w > 0 and h > 0
    areas.append(w * h / (height * width))
    ratios.append(w / h)
  # Rounding w and h to integers moves area and ratio a little past the sampled ranges.
  assert 0.08 * 0.9 < min(areas) and max(areas) <= 1.0
  assert 0.75 * 0.97 < min(ratios) and max(ratios) < 4 / 3 * 1.03
  assert min(areas) < 0.1 and max(areas) > 0.9     # the range is actually covered
  assert min(ratios) < 0.8 and max(ratios) > 1.25


def test_random_resized_crop_box_fallback_clamps_the_ratio():
  rng = np.random.default_rng(0)
  # An area scale above 1 never fits, so the centred fallback is taken.
  assert geometry.random_resized_crop_box(rng, 100, 400, (2.0, 3.0), (0.75, 4 / 3)) == ((400 - 133) // 2, 0, 133, 100)
  assert geometry.random_resized_crop_box(rng, 400, 100, (2.0, 3.0), (0.75, 4 / 3)) == (0, (400 - 133) // 2, 100, 133)
  assert geometry.random_resized_crop_box(rng, 100, 120, (2.0, 3.0), (0.75, 4 / 3)) == (0, 0, 120, 100)


def test_random_resized_crop_box_accepts_full_width_and_reaches_every_offset():
  # area 0.5·100², ratio 2 → w = 100 = width (accepted, as 0 < w <= W), h = 50, top uniform in [0, 50];
  # the fallback would always give top = 25.
  rng = np.random.default_rng(0)
  tops = {geometry.random_resized_crop_box(rng, 100, 100, (0.5, 0.5), (2.0, 2.0))[1] for _ in range(400)}
  assert len(tops) > 30 and min(tops) == 0 and max(tops) == 50
  # 9x9 boxes in a 10x12 frame: every offset, both ends included.
  boxes = {geometry.random_resized_crop_box(rng, 10, 12, (0.64, 0.64), (1.0, 1.0)) for _ in range(300)}
  assert {b[2:] for b in boxes} == {(9, 9)}
  assert {b[0] for b in boxes} == {0, 1, 2, 3} and {b[1] for b in boxes} == {0, 1}


@pytest.mark.parametrize('out_hw', [(24, 24), (64, 90), (37, 20), (100, 31), (48, 53)])
def test_resize_bilinear_matches_torch_interpolate(out_hw):
  torch = pytest.importorskip('torch')
  import torch.nn.functional as F

  def ref(x):
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    return F.interpolate(t, size=out_hw, mode='bilinear', align_corners=False).permute(0, 2, 3, 1).numpy()

  rng = np.random.default_rng(0)
  # Normalised-scale data (what the official crop interpolates): within 1e-4.
  x = rng.standard_normal((3, 37, 53, 3)).astype(np.float32)
  np.testing.assert_allclose(geometry.resize_bilinear(x, out_hw), ref(x), atol=1e-4, rtol=0)
  # Raw 0..255 values: the same up to float32 summation order (about 2e-6 relative).
  u = rng.integers(0, 256, (3, 37, 53, 3), dtype=np.uint8)
  np.testing.assert_allclose(geometry.resize_bilinear(u, out_hw), ref(u.astype(np.float32)), atol=2e-3, rtol=0)
  # uint8 in and out: torch rounds its own fixed-point result, ±1.
  out = geometry.crop_resize(u, (0, 0, 53, 37), out_hw, 'torch_bilinear')
  assert np.abs(out.astype(int) - ref(u).astype(int)).max() <= 1


def test_resize_bilinear_is_not_pil_antialiased():
  # Shrinking 4x: PIL's bilinear averages a wide window, torch's samples 2 taps. Make sure we are the latter.
  x = _clip(1, (1, 64, 64, 3))
  ours = np.rint(geometry.resize_bilinear(x, 16)).astype(np.uint8)
  pil = np.asarray(Image.fromarray(x[0]).resize((16, 16), Image.Resampling.BILINEAR))
  assert np.abs(ours[0].astype(int) - pil).max() > 20
  # Output pixel (i, j) with scale 4 samples source 4i+1.5: the mean of pixels 4i+1 and 4i+2.
  expected = x[0, 1::4][:, 1::4].astype(np.float32) * 0.25 + x[0, 1::4][:, 2::4] * 0.25 \
      + x[0, 2::4][:, 1::4] * 0.25 + x[0, 2::4][:, 2::4] * 0.25
  np.testing.assert_allclose(geometry.resize_bilinear(x, 16)[0], expected, atol=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Flip, normalisation

def test_horizontal_flip_all_frames_or_none():
  clip = _clip(4)
  flips = 0
  for seed in range(40):
    out = geometry.horizontal_flip(np.random.default_rng(seed), clip)
    if np.array_equal(out, clip[:, :, ::-1]):
      flips += 1
    else:
      np.testing.assert_array_equal(out, clip)
    assert out is not clip
  assert 8 < flips < 32
  assert np.array_equal(geometry.horizontal_flip(np.random.default_rng(0), clip, prob=1.0), clip[:, :, ::-1])
  assert np.array_equal(geometry.horizontal_flip(np.random.default_rng(0), clip, prob=0.0), clip)


def test_normalize_values():
  clip = np.zeros((1, 1, 3, 3), np.uint8)
  clip[0, 0, 1] = 255
  clip[0, 0, 2] = (124, 116, 104)
  out = augment.normalize(clip)
  mean, std = np.array(constants.IMAGENET_MEAN), np.array(constants.IMAGENET_STD)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0, 0], -mean / std, rtol=1e-6)
  np.testing.assert_allclose(out[0, 0, 1], (1 - mean) / std, rtol=1e-6)
  np.testing.assert_allclose(out[0, 0, 2], (np.array([124, 116, 104]) / 255 - mean) / std, atol=1e-6)
  np.testing.assert_allclose(out[0, 0, 1], [2.2489083, 2.4285715, 2.64], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# RandAugment

def test_parse_rand_augment_official_string():
  assert randaugment.parse_rand_augment('rand-m7-n4-mstd0.5-inc1') == {
      'magnitude': 7.0, 'num_layers': 4, 'magnitude_std': 0.5, 'increasing': True, 'prob': 0.5}
  assert randaugment.parse_rand_augment('rand-m9-mstd101') == {
      'magnitude': 9.0, 'num_layers': 2, 'magnitude_std': math.inf, 'increasing': False, 'prob': 0.5}
  with pytest.raises(ValueError):
    randaugment.parse_rand_augment('augmix-m5')


def test_rand_augment_op_sets():
  assert len(randaugment.RAND_INCREASING_OPS) == len(randaugment.RAND_OPS) == 15
  assert 'PosterizeIncreasing' in randaugment.RAND_INCREASING_OPS and 'Posterize' not in randaugment.RAND_INCREASING_OPS
  assert {'TranslateXRel', 'TranslateYRel'} <= set(randaugment.RAND_INCREASING_OPS)
  assert not {'TranslateX', 'TranslateY', 'Cutout'} & set(randaugment.RAND_INCREASING_OPS)


def test_rand_augment_params_distribution():
  rng = np.random.default_rng(0)
  layers = [randaugment.rand_augment_params(rng) for _ in range(3000)]
  assert all(len(p) == 4 for p in layers)
  flat = [op for p in layers for op in p]
  assert {op.name for op in flat} == set(randaugment.RAND_INCREASING_OPS)
  applied = [op for op in flat if op.applied]
  assert 0.47 < len(applied) / len(flat) < 0.53                      # each layer fires with p 0.5
  assert all(op.magnitude is None and op.arg is None for op in flat if not op.applied)
  mags = np.array([op.magnitude for op in applied])
  assert abs(mags.mean() - 7) < 0.03 and abs(mags.std() - 0.5) < 0.03  # N(7, 0.5)
  assert any(len({op.name for op in p}) < 4 for p in layers)          # chosen with replacement
  for op in applied:                                                 # arg = level map of the magnitude (± sign)
    level = op.magnitude / 10
    if op.name == 'Rotate':
      assert abs(abs(op.arg) - 30 * level) < 1e-9
    elif op.name in ('ShearX', 'ShearY'):
      assert abs(abs(op.arg) - 0.3 * level) < 1e-9
    elif op.name.startswith('Translate'):
      assert abs(abs(op.arg) - 0.45 * level) < 1e-9
    elif op.name.endswith('Increasing') and not op.name.startswith(('Posterize', 'Solarize')):
      assert abs(abs(op.arg - 1) - 0.9 * level) < 1e-9
    elif op.name == 'PosterizeIncreasing':
      assert op.arg == 4 - int(4 * level)
    elif op.name == 'SolarizeIncreasing':
      assert op.arg == 256 - int(256 * level)
    elif op.name == 'SolarizeAdd':
      assert op.arg == int(110 * level)
  rot = [op.arg for op in applied if op.name == 'Rotate']
  assert min(rot) < 0 < max(rot)                                     # random sign


def test_rand_augment_magnitude_is_clipped_to_0_10():
  rng = np.random.default_rng(1)
  high = [op.magnitude for _ in range(300) for op in randaugment.rand_augment_params(rng, 10, 4, 2.0) if op.applied]
  low = [op.magnitude for _ in range(300) for op in randaugment.rand_augment_params(rng, 0, 4, 2.0) if op.applied]
  assert max(high) == 10.0 and min(high) < 10 and sum(m == 10.0 for m in high) > len(high) / 3
  assert min(low) == 0.0 and max(low) > 0
  fixed = [op.magnitude for op in randaugment.rand_augment_params(rng, 7, 50, 0.0, prob=1.0)]
  assert fixed == [7.0] * 50                                          # std 0: no noise; prob 1: always applied


def test_known_arguments_at_magnitude_7():
  rng = np.random.default_rng(0)
  args = {}
  for _ in range(200):
    for op in randaugment.rand_augment_params(rng, 7, 4, 0.0, prob=1.0):
      args.setdefault(op.name, set()).add(op.arg)
  assert args['PosterizeIncreasing'] == {2}
  assert args['SolarizeIncreasing'] == {77}
  assert args['SolarizeAdd'] == {77}
  assert args['Rotate'] == {21.0, -21.0}
  assert {round(a, 6) for a in args['ColorIncreasing']} == {1.63, 0.37}
  assert {round(a, 6) for a in args['TranslateXRel']} == {0.315, -0.315}
  plain = {op.name: op.arg for _ in range(200) for op in randaugment.rand_augment_params(rng, 7, 4, 0.0, False, 1.0)}
  assert plain['Posterize'] == 2 and plain['Solarize'] == 179 and abs(plain['Contrast'] - 1.36) < 1e-9


def test_rand_augment_same_parameters_for_every_frame():
  frame = _smooth_clip(3, (1, 40, 56, 3))[0]
  clip = np.repeat(frame[None], 6, axis=0)
  changed = 0
  for seed in range(30):
    out = randaugment.rand_augment(np.random.default_rng(seed), clip)
    assert out.shape == clip.shape and out.dtype == np.uint8
    for t in range(1, 6):
      np.testing.assert_array_equal(out[t], out[0])
    changed += not np.array_equal(out, clip)
  assert changed > 20
  # Parameters are drawn once: the clip result equals applying the same parameters to each frame alone.
  varied = _smooth_clip(4, (3, 40, 56, 3))
  params = randaugment.rand_augment_params(np.random.default_rng(11), prob=1.0)
  out = randaugment.apply_rand_augment(varied, params)
  for t in range(3):
    np.testing.assert_array_equal(out[t], randaugment.apply_rand_augment(varied[t:t + 1], params)[0])
  np.testing.assert_array_equal(randaugment.rand_augment(np.random.default_rng(11), varied, prob=1.0), out)


def _pil_reference(im, name, arg):
  """The official per-frame PIL call of each op (bicubic, grey fill (128, 128, 128))."""
  geo = dict(resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
  if name == 'Rotate':
    return im.rotate(arg, **geo)
  if name == 'ShearX':
    return im.transform(im.size, Image.Transform.AFFINE, (1, arg, 0, 0, 1, 0), **geo)
  if name == 'ShearY':
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, arg, 1, 0), **geo)
  if name == 'TranslateXRel':
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, arg * im.size[0], 0, 1, 0), **geo)
  if name == 'TranslateYRel':
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, arg * im.size[1]), **geo)
  if name == 'AutoContrast':
    return ImageOps.autocontrast(im)
  if name == 'Equalize':
    return ImageOps.equalize(im)
  if name == 'Invert':
    return ImageOps.invert(im)
  if name == 'PosterizeIncreasing':
    return ImageOps.posterize(im, arg)
  if name == 'SolarizeIncreasing':
    return ImageOps.solarize(im, arg)
  if name == 'SolarizeAdd':
    a = np.asarray(im).astype(int)
    return Image.fromarray(np.where(a < 128, np.minimum(a + arg, 255), a).astype(np.uint8))
  enhancer = {'ColorIncreasing': ImageEnhance.Color, 'ContrastIncreasing': ImageEnhance.Contrast,
              'BrightnessIncreasing': ImageEnhance.Brightness, 'SharpnessIncreasing': ImageEnhance.Sharpness}[name]
  return enhancer(im).enhance(arg)


@pytest.mark.parametrize('name', randaugment.RAND_INCREASING_OPS)
def test_each_op_matches_the_official_pil_call(name):
  clip = _smooth_clip(5, (2, 36, 52, 3))
  rng = np.random.default_rng(0)
  op = randaugment.RandAugOp(name, True, 7.0, randaugment._level_to_arg(name, 7.0, rng))
  out = randaugment.apply_rand_augment(clip, [op])
  for t in range(2):
    np.testing.assert_array_equal(out[t], np.asarray(_pil_reference(Image.fromarray(clip[t]), name, op.arg)))
  if name not in ('Equalize', 'AutoContrast'):   # those can be no-ops on a full-range frame
    assert not np.array_equal(out, clip)


def test_geometric_ops_fill_with_grey():
  clip = np.full((1, 40, 40, 3), 255, np.uint8)
  out = randaugment.apply_rand_augment(clip, [randaugment.RandAugOp('Rotate', True, 10.0, 30.0)])
  np.testing.assert_array_equal(out[0, 0, 0], [128, 128, 128])
  out = randaugment.apply_rand_augment(clip, [randaugment.RandAugOp('TranslateXRel', True, 10.0, 0.45)])
  np.testing.assert_array_equal(out[0, 20, -1], [128, 128, 128])   # shifted left: right edge uncovered
  np.testing.assert_array_equal(out[0, 20, 0], [255, 255, 255])


def test_skipped_layers_leave_the_clip_unchanged():
  clip = _clip(6)
  params = [randaugment.RandAugOp('Invert', False), randaugment.RandAugOp('Rotate', False)]
  out = randaugment.apply_rand_augment(clip, params)
  np.testing.assert_array_equal(out, clip)
  assert out is not clip


# ---------------------------------------------------------------------------------------------------------------
# Random erasing

def test_random_erasing_prob_zero_is_identity():
  video = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
  out = augment.random_erasing(np.random.default_rng(0), video, prob=0.0)
  np.testing.assert_array_equal(out, video)
  assert out is not video


def test_random_erasing_one_box_for_every_frame_fresh_noise():
  video = np.full((5, 40, 48, 3), 7.0, np.float32)   # 7 is never drawn from N(0, 1) in practice
  areas = []
  for seed in range(50):
    out = augment.random_erasing(np.random.default_rng(seed), video, prob=1.0)
    np.testing.assert_array_equal(video, 7.0)           # input untouched
    mask = (out != 7.0).any(-1)
    for t in range(1, 5):
      np.testing.assert_array_equal(mask[t], mask[0])   # same box in every frame
    ys, xs = np.nonzero(mask[0])
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert mask[0].sum() == h * w                       # a rectangle
    box = out[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    assert not np.array_equal(box[0], box[1])           # fresh noise per frame
    assert abs(box.mean()) < 0.5 and 0.7 < box.std() < 1.3
    areas.append(h * w / (40 * 48))
    assert 0.3 * 0.8 < h / w < 1 / 0.3 * 1.25 or min(h, w) <= 3
  assert 0.015 < min(areas) and max(areas) < 0.36


def test_random_erasing_box_must_be_smaller_than_the_frame():
  # Every draw gives a 4x4 box on a 4x4 frame: rejected (h < H and w < W is required), so nothing is erased.
  video = np.zeros((2, 4, 4, 3), np.float32)
  out = augment.random_erasing(np.random.default_rng(0), video, prob=1.0, min_area=0.95, max_area=1.0, min_aspect=1.0)
  np.testing.assert_array_equal(out, video)
  out = augment.random_erasing(np.random.default_rng(0), np.zeros((2, 5, 5, 3), np.float32), prob=1.0, min_area=0.6,
                               max_area=0.65, min_aspect=1.0)
  assert (out != 0).any(-1)[0].sum() == 16                      # 4x4 fits in 5x5


def test_random_erasing_attempts_100_with_cube_10_without():
  # Area 85-90% of a 10x10 frame fits only for an aspect within about ±3.5% of 1: ~3% of draws. 100 attempts
  # (VideoMAE's cube variant) almost always find one; 10 attempts (timm's per-image variant) rarely do.
  def rate(**kw):
    video = np.zeros((1, 10, 10, 3), np.float32)
    return np.mean([augment.random_erasing(np.random.default_rng(s), video, prob=1.0, min_area=0.85, max_area=0.9,
                                           **kw).any() for s in range(300)])
  assert rate(cube=True) > 0.85
  assert rate(cube=False) < 0.45
  assert rate(cube=True, attempts=10) < 0.45


def test_random_erasing_probability():
  video = np.zeros((2, 24, 24, 3), np.float32)
  erased = sum(augment.random_erasing(np.random.default_rng(s), video, prob=0.25).any() for s in range(800))
  assert 0.2 < erased / 800 < 0.3


def test_random_erasing_without_cube_draws_per_frame():
  video = np.full((6, 40, 48, 3), 7.0, np.float32)
  out = augment.random_erasing(np.random.default_rng(3), video, prob=1.0, cube=False)
  masks = (out != 7.0).any(-1)
  assert all(m.any() for m in masks)
  assert any(not np.array_equal(masks[0], m) for m in masks[1:])


# ---------------------------------------------------------------------------------------------------------------
# The fine-tuning transform

def test_finetune_transform_matches_the_official_order_in_torch():
  """Without RandAugment / flip / erasing: normalise the full frames, then torch-interpolate the sampled box."""
  torch = pytest.importorskip('torch')
  import torch.nn.functional as F
  clip = _clip(7, (4, 60, 80, 3))
  out = augment.finetune_transform(np.random.default_rng(9), clip, 32, flip=False, rand_aug=False, erase_prob=0.0)
  x, y, w, h = geometry.random_resized_crop_box(np.random.default_rng(9), 60, 80, (0.08, 1.0), (0.75, 1.3333))
  mean, std = torch.tensor(constants.IMAGENET_MEAN), torch.tensor(constants.IMAGENET_STD)
  frames = (torch.from_numpy(clip).float() / 255.0 - mean) / std               # (T, H, W, C)
  crop = frames.permute(3, 0, 1, 2)[:, :, y:y + h, x:x + w]                    # (C, T, h, w) as the official
  ref = F.interpolate(crop, size=(32, 32), mode='bilinear', align_corners=False).permute(1, 2, 3, 0).numpy()
  assert out.shape == (4, 32, 32, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_finetune_flip_is_folded_into_the_resize():
  clip = _clip(8, (3, 50, 70, 3))
  flipped = 0
  for seed in range(20):
    a = augment.finetune_transform(np.random.default_rng(seed), clip, 24, flip=True, rand_aug=False, erase_prob=0.0)
    b = augment.finetune_transform(np.random.default_rng(seed), clip, 24, flip=False, rand_aug=False, erase_prob=0.0)
    if np.array_equal(a, b[:, :, ::-1]) and not np.array_equal(a, b):
      flipped += 1
    else:
      np.testing.assert_array_equal(a, b)
  assert 3 < flipped < 17


def test_transforms_are_deterministic_per_seed():
  clip = _smooth_clip(9, (4, 64, 80, 3))
  for fn in (lambda r: augment.finetune_transform(r, clip, 32), lambda r: augment.pretrain_transform(r, clip, 32)):
    a, b, c = fn(np.random.default_rng(1)), fn(np.random.default_rng(1)), fn(np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
  np.testing.assert_array_equal(clip, _smooth_clip(9, (4, 64, 80, 3)))   # input untouched


# ---------------------------------------------------------------------------------------------------------------
# Evaluation views

def _coordinate_clip(height, width, frames=2):
  """Pixel (y, x) holds (x % 256, x // 256, y): the crop offsets can be read back from the values."""
  yy, xx = np.mgrid[0:height, 0:width]
  frame = np.stack([xx % 256, xx // 256, yy % 256], -1).astype(np.uint8)
  return np.repeat(frame[None], frames, axis=0)


def test_eval_views_offsets_along_the_long_side():
  views = geometry.eval_views(_coordinate_clip(224, 398), 224, 224, 3)   # already short side 224: no resize
  starts = [int(v[0, 0, 0, 0]) + 256 * int(v[0, 0, 0, 1]) for v in views]
  assert starts == [0, 87, 174]
  assert all(v.shape == (2, 224, 224, 3) for v in views)
  tall = geometry.eval_views(_coordinate_clip(398, 224), 224, 224, 3)
  assert [int(v[0, 0, 0, 2]) for v in tall] == [0, 87, 174]      # vertical crops when H >= W
  assert all(int(v[0, 0, 0, 0]) == 0 for v in tall)


def test_eval_views_offsets_truncate():
  views = geometry.eval_views(_coordinate_clip(224, 402), 224, 224, 4)  # step 178/3: int(118.67) = 118
  assert [int(v[0, 0, 0, 0]) for v in views] == [0, 59, 118, 178]
  assert geometry.short_side_size(256, 340, 224) == (224, 297)         # int(297.5), not round
  assert geometry.short_side_size(340, 256, 224) == (297, 224)


def test_eval_views_resize_then_crop():
  clip = _smooth_clip(10, (2, 256, 340, 3))
  resized = geometry.resize_short_side(clip, 224)
  assert resized.shape == (2, 224, 297, 3)                          # int(224·340/256) = 297
  views = geometry.eval_views(clip, 224, 224, 3)
  for view, x in zip(views, (0, 36, 73)):                            # int(j·73/2)
    np.testing.assert_array_equal(view, resized[:, :, x:x + 224])
  centre = geometry.center_crop_view(clip, 224, 224)                        # round(73/2) = 36 (half to even)
  np.testing.assert_array_equal(centre, resized[:, :, 36:260])
  np.testing.assert_array_equal(geometry.eval_views(clip, 224, 224, 1)[0], centre)


def test_resize_short_side_matches_torch_bilinear():
  torch = pytest.importorskip('torch')
  import torch.nn.functional as F
  clip = _clip(11, (2, 90, 120, 3))
  out = geometry.resize_short_side(clip, 64)
  assert out.shape == (2, 64, 85, 3)
  ref = F.interpolate(torch.from_numpy(clip).permute(0, 3, 1, 2).float(), size=(64, 85), mode='bilinear',
                      align_corners=False).permute(0, 2, 3, 1).numpy()
  assert np.abs(out.astype(np.float32) - ref).max() <= 0.5 + 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Mixup / CutMix

def _batch(b=4, t=3, h=20, w=24):
  videos = np.empty((b, t, h, w, 3), np.float32)
  for i in range(b):
    videos[i] = i + 10 * np.arange(t)[:, None, None, None]   # distinct per sample and per frame
  return videos


def test_mixup_targets_and_videos():
  videos, labels = _batch(), np.array([0, 1, 2, 3])
  out, targets = mixing.mixup_cutmix(np.random.default_rng(0), videos, labels, 5, mixup_alpha=0.8, cutmix_alpha=0.0)
  lam = mixing.mixup_cutmix_params(np.random.default_rng(0), 20, 24, 0.8, 0.0).lam
  assert 0 < lam < 1
  np.testing.assert_allclose(out, lam * videos + (1 - lam) * videos[::-1], rtol=1e-6)
  off, on = 0.1 / 5, 1 - 0.1 + 0.1 / 5
  y = np.full((4, 5), off)
  y[np.arange(4), labels] = on
  np.testing.assert_allclose(targets, lam * y + (1 - lam) * y[::-1], rtol=1e-6)
  np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
  assert targets.dtype == np.float32 and out.dtype == np.float32


def test_cutmix_box_is_shared_by_every_frame_and_corrects_lambda():
  videos, labels = _batch(), np.array([3, 1, 4, 0])
  for seed in range(20):
    out, targets = mixing.mixup_cutmix(np.random.default_rng(seed), videos, labels, 6, mixup_alpha=0.0,
                                       cutmix_alpha=1.0)
    params = mixing.mixup_cutmix_params(np.random.default_rng(seed), 20, 24, 0.0, 1.0)
    changed = (out != videos).any(-1)                            # (B, T, H, W)
    for i in range(4):
      for t in range(3):
        np.testing.assert_array_equal(changed[i, t], changed[0, 0])
    np.testing.assert_array_equal(out[changed], videos[::-1][changed])
    area = changed[0, 0].sum()
    if params.box is not None:
      top, bottom, left, right = params.box
      assert area == (bottom - top) * (right - left)
    assert abs(params.lam - (1 - area / (20 * 24))) < 1e-9
    np.testing.assert_allclose(targets.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(targets[0, 3], params.lam * 0.9 + 0.1 / 6, rtol=1e-5)  # own label, smoothed


def test_mixup_switch_and_prob():
  videos, labels = _batch(), np.arange(4)
  kinds = [mixing.mixup_cutmix_params(np.random.default_rng(s), 20, 24).box is not None for s in range(400)]
  assert 0.4 < np.mean(kinds) < 0.6                               # switch_prob 0.5
  out, targets = mixing.mixup_cutmix(np.random.default_rng(0), videos, labels, 4, prob=0.0)
  np.testing.assert_array_equal(out, videos)                      # no mixing: smoothed one-hot only
  np.testing.assert_allclose(targets, np.eye(4) * 0.9 + 0.1 / 4, rtol=1e-6)
  with pytest.raises(ValueError):
    mixing.mixup_cutmix(np.random.default_rng(0), videos[:3], labels[:3], 4)
