"""Parity (fp32, max-abs ≤ 1e-5) of converted random weights against the original code and HF transformers.

Every comparison goes through the converter: the torch model's weights are written in their released format
(official .pth, HF save_pretrained directory), converted with `vmae_jax.convert.convert`, restored with
`vmae_jax.load`, and run through the public API.
"""
import numpy as np
import pytest
import torch
import torch_refs

import vmae_jax
from vmae_jax import convert
from vmae_jax.data import masking
from vmae_jax.models.config import ModelConfig

TOL = 1e-5

# Several shapes: frame counts and resolutions other than 16 / 224, p=16 and p=14, head dims 16..88.
PRETRAIN_SHAPES = {
    't4_s32_p8': dict(img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4, mlp_ratio=4.0,
                      decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2),
    't6_s48_p16': dict(img_size=48, patch_size=16, num_frames=6, embed_dim=96, depth=2, num_heads=3, mlp_ratio=4.0,
                       decoder_embed_dim=48, decoder_depth=1, decoder_num_heads=3),
    # Shaped like ViT-g: p=14, head_dim 88, mlp_ratio 48/11 (odd decoder MLP width), decoder head_dim 64.
    'giantlike_t8_s56': dict(img_size=56, patch_size=14, num_frames=8, embed_dim=176, depth=2, num_heads=2,
                             mlp_ratio=48 / 11, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=2),
    'giantlike_t4_s112': dict(img_size=112, patch_size=14, num_frames=4, embed_dim=176, depth=1, num_heads=2,
                              mlp_ratio=48 / 11, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=2),
}
CLASSIFIER_SHAPES = {
    't4_s32_p8': dict(img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4, num_classes=7),
    't10_s48_p16': dict(img_size=48, patch_size=16, num_frames=10, embed_dim=96, depth=2, num_heads=3,
                        num_classes=5),
    'giantlike_t8_s56': dict(img_size=56, patch_size=14, num_frames=8, embed_dim=176, depth=2, num_heads=2,
                             mlp_ratio=48 / 11, num_classes=11),
}


def _video(c: ModelConfig, batch: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(
      (batch, c.num_frames, c.img_size, c.img_size, 3)).astype(np.float32)


def _masks(c: ModelConfig, batch: int, seed: int, ratio: float, decoder: bool):
  rng = np.random.default_rng(seed)
  ms = [masking.sample_masks(rng, c.token_grid(), 'tube', ratio, 'run_cell' if decoder else None)
        for _ in range(batch)]
  enc = np.stack([m['encoder_mask'] for m in ms])
  dec = np.stack([m['decoder_mask'] for m in ms]) if decoder else None
  return enc, dec


def _convert_pth(tmp_path, model, c: ModelConfig, wrap='model'):
  src = tmp_path / 'ckpt.pth'
  torch.save({wrap: model.state_dict()}, src)
  overrides = dict(num_heads=c.num_heads, img_size=c.img_size, num_frames=c.num_frames)
  if c.kind == 'pretrain':
    overrides['decoder_num_heads'] = c.decoder_num_heads
  convert.convert(str(src), str(tmp_path / 'out'), **overrides)
  return vmae_jax.load(str(tmp_path / 'out'))


def _convert_hf(tmp_path, model):
  model.save_pretrained(tmp_path / 'hf')
  convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'out'))
  return vmae_jax.load(str(tmp_path / 'out'))


def _maxdiff(a, b) -> float:
  """Max-abs difference, printed (pytest -s) so the measured figures can be quoted."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  diff = float(np.abs(a - b).max())
  print(f'  max-abs diff {diff:.2e} over shape {a.shape}')
  return diff


# --- original code ---------------------------------------------------------------------------------------------

# Running-cell decoder masks tile 2x2 cells, so dual masking runs on the shapes with an even H'xW' grid.
ORIGINAL_PRETRAIN_CASES = [(s, False) for s in sorted(PRETRAIN_SHAPES)] + [
    (s, True) for s in sorted(PRETRAIN_SHAPES) if ModelConfig(kind='pretrain', **PRETRAIN_SHAPES[s]).token_grid()[1] % 2 == 0]


@pytest.mark.parametrize('shape,dual', ORIGINAL_PRETRAIN_CASES,
                         ids=[f'{s}-{"v2_dual" if d else "v1"}' for s, d in ORIGINAL_PRETRAIN_CASES])
def test_pretrain_matches_original(tmp_path, shape, dual):
  c = ModelConfig(kind='pretrain', **PRETRAIN_SHAPES[shape])
  ref = torch_refs.original_pretrain(c, seed=1)
  m = _convert_pth(tmp_path, ref, c)
  video = _video(c, 2, seed=2)
  enc, dec = _masks(c, 2, seed=3, ratio=0.75, decoder=dual)
  ours = m.reconstruct(video, enc, dec)
  x = torch_refs.to_torch_video(video)
  with torch.no_grad():
    mask_t = torch.from_numpy(enc)
    dec_t = None if dec is None else torch.from_numpy(dec)
    out = ref(x, mask_t, dec_t)
    loss = torch_refs.original_loss(out, torch_refs.original_target(x, c.tubelet_size, c.patch_size), mask_t, dec_t)
  assert ours['pred'].shape == tuple(out.shape)
  assert _maxdiff(ours['pred'], out.numpy()) <= TOL
  assert _maxdiff(ours['loss'], float(loss)) <= TOL
  # Encoder features over all tokens (no mask) vs the original encoder with an all-visible mask.
  with torch.no_grad():
    feats = ref.encoder(x, torch.zeros(enc.shape, dtype=torch.bool)).numpy()
  assert _maxdiff(m.encode(video), feats) <= TOL


def test_pretrain_dual_masking_token_counts(tmp_path):
  """Dual masking on a giant-shaped model at the giant's token grid layout (T'=8): static counts as in
  docs/fidelity.md, "Masks"."""
  c = ModelConfig(kind='pretrain', **PRETRAIN_SHAPES['giantlike_t8_s56'])
  ms = masking.sample_masks(np.random.default_rng(0), (8, 16, 16), 'tube', 0.9, 'run_cell', 0.5)
  assert len(ms['visible_idx']) == 208 and len(ms['pred_idx']) == 1024 and ms['loss_weight'].sum() == 920
  ref = torch_refs.original_pretrain(c, seed=4)
  m = _convert_pth(tmp_path, ref, c)
  enc, dec = _masks(c, 3, seed=5, ratio=0.9, decoder=True)
  out = m.reconstruct(_video(c, 3, seed=6), enc, dec)
  assert out['pred'].shape == (3, c.num_tokens // 2, c.decoder_num_classes)


@pytest.mark.parametrize('shape', sorted(CLASSIFIER_SHAPES))
@pytest.mark.parametrize('wrap', ['model', 'module'])
def test_classifier_matches_original(tmp_path, shape, wrap):
  c = ModelConfig(kind='classifier', **CLASSIFIER_SHAPES[shape])
  ref = torch_refs.original_classifier(c, seed=7)
  m = _convert_pth(tmp_path, ref, c, wrap=wrap)
  video = _video(c, 2, seed=8)
  with torch.no_grad():
    logits = ref(torch_refs.to_torch_video(video)).numpy()
  assert _maxdiff(m.classify(video), logits) <= TOL


def test_classifier_without_mean_pooling_matches_original(tmp_path):
  c = ModelConfig(kind='classifier', use_mean_pooling=False, **CLASSIFIER_SHAPES['t4_s32_p8'])
  ref = torch_refs.original_classifier(c, seed=9)
  m = _convert_pth(tmp_path, ref, c)
  assert m.config.use_mean_pooling is False
  video = _video(c, 2, seed=10)
  with torch.no_grad():
    logits = ref(torch_refs.to_torch_video(video)).numpy()
  assert _maxdiff(m.classify(video), logits) <= TOL


# --- HF transformers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('shape', ['t4_s32_p8', 't6_s48_p16', 'giantlike_t4_s112'])
def test_pretrain_matches_hf(tmp_path, shape):
  c = ModelConfig(kind='pretrain', **PRETRAIN_SHAPES[shape])
  ref = torch_refs.hf_pretrain(c, seed=11)
  m = _convert_hf(tmp_path, ref)
  video = _video(c, 2, seed=12)
  enc, _ = _masks(c, 2, seed=13, ratio=0.75, decoder=False)
  ours = m.reconstruct(video, enc)
  with torch.no_grad():
    out = ref(torch_refs.to_hf_video(video), bool_masked_pos=torch.from_numpy(enc))
    feats = ref.videomae(torch_refs.to_hf_video(video)).last_hidden_state.numpy()
  assert _maxdiff(ours['pred'], out.logits.numpy()) <= TOL
  assert _maxdiff(ours['loss'], float(out.loss)) <= TOL
  assert _maxdiff(m.encode(video), feats) <= TOL


@pytest.mark.parametrize('shape', sorted(CLASSIFIER_SHAPES))
def test_classifier_matches_hf(tmp_path, shape):
  c = ModelConfig(kind='classifier', **CLASSIFIER_SHAPES[shape])
  ref = torch_refs.hf_classifier(c, seed=14)
  m = _convert_hf(tmp_path, ref)
  video = _video(c, 2, seed=15)
  with torch.no_grad():
    logits = ref(torch_refs.to_hf_video(video)).logits.numpy()
    feats = ref.videomae(torch_refs.to_hf_video(video)).last_hidden_state.numpy()
  assert _maxdiff(m.classify(video), logits) <= TOL
  assert _maxdiff(m.encode(video), feats) <= TOL


def test_v2_loss_equals_v1_when_decoder_keeps_every_masked_token(tmp_path):
  """V2 with decoder_mask = ~encoder_mask is V1 (docs/fidelity.md, "Pixel target and loss"), through the same
  public API."""
  c = ModelConfig(kind='pretrain', **PRETRAIN_SHAPES['t4_s32_p8'])
  m = _convert_pth(tmp_path, torch_refs.original_pretrain(c, seed=16), c)
  video = _video(c, 2, seed=17)
  enc, _ = _masks(c, 2, seed=18, ratio=0.75, decoder=False)
  v1 = m.reconstruct(video, enc)
  v2 = m.reconstruct(video, enc, ~enc)
  assert _maxdiff(v1['pred'], v2['pred']) <= TOL
  assert abs(float(v1['loss']) - float(v2['loss'])) <= 1e-6
