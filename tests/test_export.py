"""Export: ours → HF transformers (from_pretrained, outputs within the eps-limited tolerance), ours → official
`.pth` → the original modelling code (≤ 1e-5), official → ours → official key for key, and the CLI.

Parameters are random with every bias, norm and the mask token non-zero and a head large enough for the logits to
carry the difference, on shapes like ViT-B (p=16) and like ViT-g (p=14, head dim 88, MLP ratio 48/11).
"""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
import torch_refs

import vmae_jax
from vmae_jax import convert, models
from vmae_jax.data import masking
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import checkpoint, export, official_layout

os.environ.setdefault('HF_HUB_OFFLINE', '1')
TOL = 1e-5
# HF's fixed eps 1e-5 in fc_norm / decoder.norm (ours 1e-6) changes those norms' outputs by a relative amount, so the
# bound is relative to the output's scale: max-abs ≤ 1e-4 · max(1, max |output|). Measured figures are printed.
HF_TOL = 1e-4

PT = dict(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
          decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2)
PT_GIANTLIKE = dict(kind='pretrain', img_size=56, patch_size=14, num_frames=4, embed_dim=176, depth=2, num_heads=2,
                    mlp_ratio=48 / 11, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=2)
FT = dict(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
          num_classes=7)
FT_GIANTLIKE = dict(kind='classifier', img_size=56, patch_size=14, num_frames=4, embed_dim=176, depth=2,
                    num_heads=2, mlp_ratio=48 / 11, num_classes=5)


def _random_params(c: ModelConfig, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(np.asarray, models.init_params(c, jax.random.key(seed)))

  def perturb(path, x):
    name = jax.tree_util.keystr(path)
    if 'head_kernel' in name and c.kind == 'classifier':
      return rng.standard_normal(x.shape).astype(np.float32) * 0.2
    if x.ndim == 1 or 'bias' in name or 'scale' in name or 'mask_token' in name:
      return (x + rng.standard_normal(x.shape) * 0.1).astype(np.float32)
    return x
  return jax.tree_util.tree_map_with_path(perturb, params)


def _checkpoint(tmp_path, c: ModelConfig, seed: int = 0) -> str:
  d = str(tmp_path / 'ours')
  checkpoint.save(d, _random_params(c, seed), c)
  return d


def _video(c: ModelConfig, batch=2, seed=1) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal(
      (batch, c.num_frames, c.img_size, c.img_size, 3)).astype(np.float32)


def _hf_bound(reference) -> float:
  return HF_TOL * max(1.0, float(np.abs(np.asarray(reference)).max()))


def _maxdiff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  diff = float(np.abs(a - b).max())
  print(f'  max-abs diff {diff:.2e} over shape {a.shape} (max |output| {np.abs(b).max():.2f})')
  return diff


# --- HF --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('shape', ['giant_like'])  # vitb_like passes too; one shape keeps the suite short
def test_classifier_to_hf(tmp_path, shape):
  from transformers import VideoMAEForVideoClassification, VideoMAEModel
  c = ModelConfig(**(FT if shape == 'vitb_like' else FT_GIANTLIKE))
  src = _checkpoint(tmp_path, c)
  names = [f'class {i}' for i in range(c.num_classes)]
  got, notes = export.export(src, str(tmp_path / 'hf'), 'hf', class_names=names)
  assert got == c and any('eps' in n for n in notes)
  m = vmae_jax.load(src)
  video = _video(c)
  hf = VideoMAEForVideoClassification.from_pretrained(tmp_path / 'hf', attn_implementation='eager').eval()
  assert hf.config.id2label[3] == 'class 3' and hf.config.intermediate_size == c.mlp_hidden_dim
  with torch.no_grad():
    logits = hf(torch_refs.to_hf_video(video)).logits.numpy()
  print('classifier logits, HF as loaded (fc_norm eps 1e-5):')
  assert _maxdiff(m.classify(video), logits) <= _hf_bound(logits)
  hf.fc_norm.eps = c.norm_eps  # the only difference left
  with torch.no_grad():
    logits = hf(torch_refs.to_hf_video(video)).logits.numpy()
  print('classifier logits, HF fc_norm eps set to 1e-6:')
  assert _maxdiff(m.classify(video), logits) <= TOL
  base = VideoMAEModel.from_pretrained(tmp_path / 'hf', attn_implementation='eager').eval()
  with torch.no_grad():
    feats = base(torch_refs.to_hf_video(video)).last_hidden_state.numpy()
  assert _maxdiff(m.encode(video), feats) <= TOL
  # HF → ours again gives back the same parameters, bit for bit.
  convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'back'))
  back = vmae_jax.load(str(tmp_path / 'back'))
  assert back.config.replace(name='') == c.replace(name='')
  jax.tree_util.tree_map(np.testing.assert_array_equal, back.variables, m.variables)


@pytest.mark.parametrize('shape', ['giant_like'])  # vitb_like passes too; one shape keeps the suite short
def test_pretrain_to_hf(tmp_path, shape):
  from transformers import VideoMAEForPreTraining
  c = ModelConfig(**(PT if shape == 'vitb_like' else PT_GIANTLIKE))
  src = _checkpoint(tmp_path, c, seed=2)
  _, notes = export.export(src, str(tmp_path / 'hf'), 'hf')
  assert any('dual masking' in n for n in notes)
  m = vmae_jax.load(src)
  video = _video(c, seed=3)
  mask = np.stack([masking.tube_mask(np.random.default_rng(i), c.token_grid(), 0.75) for i in range(2)])
  ours = m.reconstruct(video, mask)
  hf = VideoMAEForPreTraining.from_pretrained(tmp_path / 'hf', attn_implementation='eager').eval()
  assert hf.config.patch_size == c.patch_size and hf.config.decoder_intermediate_size == c.decoder_mlp_hidden_dim
  x = torch_refs.to_hf_video(video)
  with torch.no_grad():
    out = hf(x, bool_masked_pos=torch.from_numpy(mask))
    feats = hf.videomae(x).last_hidden_state.numpy()
  print('pretraining predictions, HF as loaded (decoder.norm eps 1e-5):')
  assert _maxdiff(ours['pred'], out.logits.numpy()) <= _hf_bound(out.logits)
  assert _maxdiff(m.encode(video), feats) <= TOL   # the encoder has no fixed-eps norm
  hf.decoder.norm.eps = c.norm_eps
  with torch.no_grad():
    out = hf(x, bool_masked_pos=torch.from_numpy(mask))
  print('pretraining predictions and loss, HF decoder.norm eps set to 1e-6:')
  assert _maxdiff(ours['pred'], out.logits.numpy()) <= TOL
  assert _maxdiff(ours['loss'], float(out.loss)) <= TOL


@pytest.mark.parametrize('case', ['giant_pretrain', 'first_token_classifier'])
def test_hf_layout_matches_transformers_key_for_key(case):
  """Every exported key and shape is what transformers builds from the exported config (on the meta device: no
  memory), for the full-size ViT-g pretraining model and a classifier without mean pooling (HF's `layernorm`)."""
  import transformers
  c = {'giant_pretrain': lambda: models.get_config('pretrain_videomae_giant_patch14_224'),
       'first_token_classifier': lambda: ModelConfig(**dict(FT, use_mean_pooling=False))}[case]()
  official = {e.key: np.broadcast_to(np.float32(0), e.shape) for e in official_layout.official_layout(c)}
  weights, _ = export.hf_state_dict(official, c)
  fields = export.hf_config(c)
  model_class = getattr(transformers, fields.pop('architectures')[0])
  del fields['model_type']
  with torch.device('meta'):
    hf = model_class(transformers.VideoMAEConfig(**fields))
  assert {k: tuple(v.shape) for k, v in hf.state_dict().items()} == {k: v.shape for k, v in weights.items()}
  if case == 'giant_pretrain':
    assert fields['intermediate_size'] == 6144 and fields['decoder_intermediate_size'] == 2234


def test_headless_classifier_to_hf_model(tmp_path, caplog):
  from transformers import VideoMAEModel
  c = ModelConfig(**dict(FT, num_classes=0))
  src = _checkpoint(tmp_path, c, seed=4)
  _, notes = export.export(src, str(tmp_path / 'hf'), 'hf')
  assert any('fc_norm left out' in n for n in notes) and 'fc_norm left out' in caplog.text
  hf = VideoMAEModel.from_pretrained(tmp_path / 'hf', attn_implementation='eager').eval()
  video = _video(c, seed=5)
  with torch.no_grad():
    feats = hf(torch_refs.to_hf_video(video)).last_hidden_state.numpy()
  assert _maxdiff(vmae_jax.load(src).encode(video), feats) <= TOL


# --- official --------------------------------------------------------------------------------------------------

def _strict_load(model: torch.nn.Module, path) -> torch.nn.Module:
  sd = torch.load(path, map_location='cpu', weights_only=True)['model']
  model.load_state_dict(sd, strict=True)
  return model.eval()


@pytest.mark.parametrize('shape', ['giant_like'])  # vitb_like passes too; one shape keeps the suite short
def test_pretrain_to_official_runs_in_original_code(tmp_path, shape):
  c = ModelConfig(**(PT if shape == 'vitb_like' else PT_GIANTLIKE))
  src = _checkpoint(tmp_path, c, seed=6)
  convert.convert(src, str(tmp_path / 'pt.pth'), to='official')
  ref = _strict_load(torch_refs.original_pretrain(c, seed=99), tmp_path / 'pt.pth')
  m = vmae_jax.load(src)
  video = _video(c, seed=7)
  rng = np.random.default_rng(8)
  ms = [masking.sample_masks(rng, c.token_grid(), 'tube', 0.75, 'run_cell') for _ in range(2)]
  enc = np.stack([x['encoder_mask'] for x in ms])
  dec = np.stack([x['decoder_mask'] for x in ms])
  x = torch_refs.to_torch_video(video)
  print(f'{shape}: V1 and V2 dual-masking predictions vs the original code:')
  for decoder_mask in (None, dec):
    with torch.no_grad():
      out = ref(x, torch.from_numpy(enc), None if decoder_mask is None else torch.from_numpy(decoder_mask))
    assert _maxdiff(m.reconstruct(video, enc, decoder_mask)['pred'], out.numpy()) <= TOL


def test_classifier_to_official_runs_in_original_code(tmp_path):
  c = ModelConfig(**FT_GIANTLIKE)
  src = _checkpoint(tmp_path, c, seed=9)
  convert.convert(src, str(tmp_path / 'ft.pth'), to='official')
  ref = _strict_load(torch_refs.original_classifier(c, seed=98), tmp_path / 'ft.pth')
  video = _video(c, seed=10)
  with torch.no_grad():
    logits = ref(torch_refs.to_torch_video(video)).numpy()
  assert _maxdiff(vmae_jax.load(src).classify(video), logits) <= TOL


@pytest.mark.parametrize('kind', ['pretrain', 'classifier'])
def test_official_round_trip_is_key_for_key_identical(tmp_path, kind):
  c = ModelConfig(**(PT_GIANTLIKE if kind == 'pretrain' else FT))
  ref = torch_refs.original_pretrain(c, 11) if kind == 'pretrain' else torch_refs.original_classifier(c, 11)
  original = ref.state_dict()
  original = {k: v for k, v in original.items() if k != 'pos_embed'}  # a fixed table attribute, not a weight
  torch.save({'model': original}, tmp_path / 'in.pth')
  heads = dict(num_heads=c.num_heads, img_size=c.img_size, num_frames=c.num_frames)
  if kind == 'pretrain':
    heads['decoder_num_heads'] = c.decoder_num_heads
  convert.convert(str(tmp_path / 'in.pth'), str(tmp_path / 'ours'), **heads)
  convert.convert(str(tmp_path / 'ours'), str(tmp_path / 'out.pth'), to='official')
  back = torch.load(tmp_path / 'out.pth', map_location='cpu', weights_only=True)['model']
  assert list(back) == list(original)   # same keys, same order
  for k, v in original.items():
    assert back[k].shape == v.shape and back[k].dtype == v.dtype and torch.equal(back[k], v), k


# --- entry points and errors -----------------------------------------------------------------------------------

def test_official_source_straight_to_hf(tmp_path):
  """A foreign source exports in one step (official .pth → HF), with the head counts given as for convert."""
  c = ModelConfig(**FT)
  ref = torch_refs.original_classifier(c, 12)
  torch.save({'model': ref.state_dict()}, tmp_path / 'ft.pth')
  convert.convert(str(tmp_path / 'ft.pth'), str(tmp_path / 'hf'), to='hf', num_heads=4, img_size=32, num_frames=4)
  assert sorted(os.listdir(tmp_path / 'hf')) == ['config.json', 'model.safetensors']


def test_cli_and_errors(tmp_path):
  c = ModelConfig(**FT)
  src = _checkpoint(tmp_path, c)
  cmd = [sys.executable, '-m', 'vmae_jax.convert', f'--src={src}', f'--dst={tmp_path / "hf"}', '--to=hf']
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert 'wrote' in r.stdout and 'eps' in r.stderr   # the format's limit is said
  (tmp_path / 'file').write_text('x')
  bad = subprocess.run(cmd[:4] + [f'--dst={tmp_path / "file"}', '--to=hf'], capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode == 2 and 'is a file' in bad.stderr
  with pytest.raises(export.ExportError, match="unknown export format 'onnx'"):
    export.export(src, str(tmp_path / 'x'), 'onnx')
  with pytest.raises(export.ExportError, match='carries its own config'):
    convert.convert(src, str(tmp_path / 'z'), to='hf', num_heads=2)
  with pytest.raises(export.ExportError, match='3 class names for a head of 7'):
    export.export(src, str(tmp_path / 'y'), 'hf', class_names=['a', 'b', 'c'])
