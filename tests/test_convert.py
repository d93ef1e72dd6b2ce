"""Converter: the released key formats, config inference, strict key checks, and refusal of unsafe pickles."""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch_refs
from safetensors.numpy import save_file

import vmae_jax
from vmae_jax import convert
from vmae_jax.models import get_config
from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import official_layout, videomae_import
from vmae_jax.weights.official_layout import LayoutError

TINY_PT = dict(kind='pretrain', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
               decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
TINY_FT = dict(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
               num_classes=6)
HEADS_PT = dict(num_heads=4, decoder_num_heads=2, img_size=32, num_frames=4)
HEADS_FT = dict(num_heads=4, img_size=32, num_frames=4)


def _sd(model):
  return {k: v.clone() for k, v in model.state_dict().items()}


def _video(seed=0):
  return np.random.default_rng(seed).standard_normal((2, 4, 32, 32, 3)).astype(np.float32)


def _abstract_sd(config: ModelConfig):
  """An official state dict of zero-stride views: real shapes, no memory (for full-size models)."""
  return {e.key: np.broadcast_to(np.float32(0), e.shape) for e in official_layout.official_layout(config)}


@pytest.fixture(scope='module')
def pretrain_ref():
  return torch_refs.original_pretrain(ModelConfig(**TINY_PT), seed=0)


@pytest.fixture(scope='module')
def finetune_ref():
  return torch_refs.original_classifier(ModelConfig(**TINY_FT), seed=0)


def test_pretrain_pth_infers_architecture(tmp_path, pretrain_ref):
  torch.save({'model': pretrain_ref.state_dict()}, tmp_path / 'pt.pth')
  c = convert.convert(str(tmp_path / 'pt.pth'), str(tmp_path / 'out'), **HEADS_PT)
  assert (c.kind, c.embed_dim, c.depth, c.patch_size, c.tubelet_size, c.decoder_embed_dim, c.decoder_depth) == (
      'pretrain', 64, 2, 8, 2, 32, 1)
  assert c.num_heads == 4 and c.decoder_num_heads == 2 and c.qkv_bias
  m = vmae_jax.load(str(tmp_path / 'out'))
  assert m.config == c
  assert m.encode(_video()).shape == (2, 32, 64)


@pytest.mark.parametrize('fmt', ['module_dict', 'module_prefix', 'orig_mod', 'backbone', 'encoder', 'raw'])
def test_finetune_key_formats(tmp_path, finetune_ref, fmt):
  sd = _sd(finetune_ref)
  video = _video(1)
  with torch.no_grad():
    expected = finetune_ref(torch_refs.to_torch_video(video)).numpy()
  if fmt == 'module_dict':  # DeepSpeed mp_rank_00_model_states.pt, with the extras training writes
    obj = {'module': sd, 'epoch': 3, 'args': argparse.Namespace(lr=1e-3, model='vit_base'), 'global_steps': 10}
  elif fmt == 'module_prefix':  # DistributedDataParallel state dict
    obj = {'model': {'module.' + k: v for k, v in sd.items()}}
  elif fmt == 'orig_mod':  # torch.compile
    obj = {'model': {'_orig_mod.' + k: v for k, v in sd.items()}}
  elif fmt == 'backbone':
    obj = {'model': {'backbone.' + k: v for k, v in sd.items()}}
  elif fmt == 'encoder':
    obj = {'model': {'encoder.' + k: v for k, v in sd.items()}}
  else:
    obj = sd
  torch.save(obj, tmp_path / 'ft.pth')
  c = convert.convert(str(tmp_path / 'ft.pth'), str(tmp_path / 'out'), **HEADS_FT)
  assert c.kind == 'classifier' and c.num_classes == 6 and c.use_mean_pooling
  np.testing.assert_allclose(vmae_jax.load(str(tmp_path / 'out')).classify(video), expected, atol=1e-5)


@pytest.mark.parametrize('cls', ['VideoMAEForPreTraining', 'VideoMAEForVideoClassification', 'VideoMAEModel'])
@pytest.mark.parametrize('legacy_bias_names', [False, True])
def test_hf_directory_and_bare_safetensors(tmp_path, cls, legacy_bias_names):
  import transformers
  kind = 'pretrain' if cls == 'VideoMAEForPreTraining' else 'classifier'
  c = ModelConfig(**(TINY_PT if kind == 'pretrain' else TINY_FT))
  cfg = torch_refs.hf_config(c, num_labels=None if kind == 'pretrain' else 6)
  torch.manual_seed(0)
  hf = torch_refs.randomize_(getattr(transformers, cls)._from_config(cfg, attn_implementation='eager'), 0)
  hf.save_pretrained(tmp_path / 'hf')
  if legacy_bias_names:  # transformers 4.x / hub spelling
    from safetensors.numpy import load_file
    w = load_file(tmp_path / 'hf' / 'model.safetensors')
    w = {k.replace('attention.attention.query.bias', 'attention.attention.q_bias')
          .replace('attention.attention.value.bias', 'attention.attention.v_bias'): v for k, v in w.items()}
    assert any(k.endswith('q_bias') for k in w)
    save_file(w, tmp_path / 'hf' / 'model.safetensors')
  got = convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'out'))
  assert got.kind == kind and got.num_heads == 4
  if cls == 'VideoMAEModel':
    assert got.num_classes == 0  # no head: features only
  video = _video(2)
  m = vmae_jax.load(str(tmp_path / 'out'))
  with torch.no_grad():
    base = hf if cls == 'VideoMAEModel' else hf.videomae
    feats = base(torch_refs.to_hf_video(video)).last_hidden_state.numpy()
  np.testing.assert_allclose(m.encode(video), feats, atol=1e-5)
  # A bare safetensors file (no config.json beside it) needs the head counts from the caller.
  bare = tmp_path / 'bare'
  bare.mkdir()
  os.rename(tmp_path / 'hf' / 'model.safetensors', bare / 'weights.safetensors')
  with pytest.raises(videomae_import.ConvertError, match='num_heads cannot be read'):
    convert.convert(str(bare / 'weights.safetensors'), str(tmp_path / 'out2'))
  extra = dict(decoder_num_heads=2) if kind == 'pretrain' else {}
  convert.convert(str(bare / 'weights.safetensors'), str(tmp_path / 'out2'), num_heads=4, img_size=32, num_frames=4,
                  **extra)
  np.testing.assert_allclose(vmae_jax.load(str(tmp_path / 'out2')).encode(video), feats, atol=1e-5)


def test_opengvlab_hub_encoder_safetensors(tmp_path, finetune_ref):
  """OpenGVLab's VideoMAEv2-* hub layout: `model.` + official names, fc_norm, no head, config.json `model_config`."""
  # (The original class cannot be built with num_classes=0: it scales an Identity head. Drop the head instead.)
  ref = torch_refs.original_classifier(ModelConfig(**TINY_FT), seed=3)
  (tmp_path / 'hub').mkdir()
  save_file({'model.' + k: v.numpy() for k, v in ref.state_dict().items() if not k.startswith('head.')},
            tmp_path / 'hub' / 'model.safetensors')
  model_config = dict(img_size=32, patch_size=8, in_chans=3, num_classes=0, embed_dim=64, depth=2, num_heads=4,
                      mlp_ratio=4, qkv_bias=True, norm_layer='nn.LayerNorm', layer_norm_eps=1e-6, tubelet_size=2,
                      use_mean_pooling=True, num_frames=4)
  (tmp_path / 'hub' / 'config.json').write_text(json.dumps(
      {'model_type': 'VideoMAEv2_Base', 'architectures': ['VideoMAEv2_Base'], 'model_config': model_config}))
  got = convert.convert(str(tmp_path / 'hub'), str(tmp_path / 'out'))
  assert (got.kind, got.num_classes, got.num_heads, got.use_mean_pooling) == ('classifier', 0, 4, True)
  video = _video(4)
  m = vmae_jax.load(str(tmp_path / 'out'))
  with torch.no_grad():
    feats = ref.forward_features(torch_refs.to_torch_video(video)).numpy()  # fc_norm(mean): the hub model's output
  np.testing.assert_allclose(m.module.apply(m.variables, video, method='features'), feats, atol=1e-5)


def _save(tmp_path, sd, name='bad.pth'):
  torch.save({'model': sd}, tmp_path / name)
  return str(tmp_path / name)


def test_missing_key_is_named(tmp_path, pretrain_ref):
  sd = _sd(pretrain_ref)
  del sd['encoder.blocks.1.attn.v_bias']
  with pytest.raises(LayoutError, match=r"missing key 'encoder\.blocks\.1\.attn\.v_bias'"):
    convert.convert(_save(tmp_path, sd), str(tmp_path / 'out'), **HEADS_PT)


def test_misshaped_key_is_named(tmp_path, pretrain_ref):
  sd = _sd(pretrain_ref)
  sd['decoder.blocks.0.mlp.fc2.bias'] = sd['decoder.blocks.0.mlp.fc2.bias'][:-1]
  with pytest.raises(LayoutError, match=r"'decoder\.blocks\.0\.mlp\.fc2\.bias' has shape \(31,\), expected \(32,\)"):
    convert.convert(_save(tmp_path, sd), str(tmp_path / 'out'), **HEADS_PT)


def test_unexpected_key_is_named(tmp_path, finetune_ref):
  sd = _sd(finetune_ref)
  sd['blocks.0.gamma_1'] = torch.ones(64)  # layer scale: not in any released model
  with pytest.raises(LayoutError, match=r"unexpected key 'blocks\.0\.gamma_1'"):
    convert.convert(_save(tmp_path, sd), str(tmp_path / 'out'), **HEADS_FT)


def test_learned_pos_embed_refused_fixed_table_dropped(tmp_path, finetune_ref):
  sd = _sd(finetune_ref)
  sd['pos_embed'] = finetune_ref.pos_embed.clone()  # the fixed table saved by some exporters: harmless
  convert.convert(_save(tmp_path, sd), str(tmp_path / 'ok'), **HEADS_FT)
  sd['pos_embed'] = torch.randn(1, 32, 64)
  with pytest.raises(videomae_import.ConvertError, match="'pos_embed' is a learned position embedding"):
    convert.convert(_save(tmp_path, sd), str(tmp_path / 'out'), **HEADS_FT)


class _Payload:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


class _Custom:
  pass


def test_arbitrary_pickle_is_refused(tmp_path, finetune_ref):
  marker = tmp_path / 'executed'
  torch.save({'model': _sd(finetune_ref), 'extra': _Payload(marker)}, tmp_path / 'evil.pth')
  with pytest.raises(videomae_import.ConvertError, match='refused to load'):
    convert.convert(str(tmp_path / 'evil.pth'), str(tmp_path / 'out'), **HEADS_FT)
  assert not marker.exists()
  # Any other pickled class instance is refused too, harmless or not.
  torch.save({'model': _sd(finetune_ref), 'obj': _Custom()}, tmp_path / 'custom.pth')
  with pytest.raises(videomae_import.ConvertError, match='refused to load'):
    convert.convert(str(tmp_path / 'custom.pth'), str(tmp_path / 'out'), **HEADS_FT)


def test_model_name_supplies_heads_and_checks_shapes(tmp_path):
  sd = _abstract_sd(get_config('pretrain_videomae_huge_patch16_224', version='v2'))
  c = videomae_import.infer_config(sd, model='pretrain_videomae_huge_patch16_224')
  assert (c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads, c.num_heads) == (512, 4, 8, 16)  # V2 picked
  official_layout.check_state_dict(sd, c, 'huge-v2')
  c1 = videomae_import.infer_config(_abstract_sd(get_config('pretrain_videomae_huge_patch16_224')),
                            model='pretrain_videomae_huge_patch16_224')
  assert (c1.decoder_embed_dim, c1.decoder_depth) == (640, 12)
  g = videomae_import.infer_config(_abstract_sd(get_config('vit_giant_patch14_224', num_classes=710)),
                           model='vit_giant_patch14_224')
  assert (g.num_classes, g.mlp_hidden_dim, g.num_heads, g.patch_size) == (710, 6144, 16, 14)
  gp = videomae_import.infer_config(_abstract_sd(get_config('pretrain_videomae_giant_patch14_224')),
                            model='pretrain_videomae_giant_patch14_224')
  assert gp.decoder_mlp_hidden_dim == 2234
  with pytest.raises(videomae_import.ConvertError, match='embed_dim=1408 but model .vit_base_patch16_224. has embed_dim=768'):
    videomae_import.infer_config(_abstract_sd(get_config('vit_giant_patch14_224')), model='vit_base_patch16_224')
  with pytest.raises(videomae_import.ConvertError, match='pretrain checkpoint but model .vit_base'):
    videomae_import.infer_config(_abstract_sd(get_config('pretrain_videomae_base_patch16_224')), model='vit_base_patch16_224')
  with pytest.raises(videomae_import.ConvertError, match=r"num_heads cannot be read.*vit_base_patch16_224"):
    videomae_import.infer_config(_abstract_sd(get_config('vit_base_patch16_224', num_classes=400)))


def test_layout_round_trip(pretrain_ref):
  c = ModelConfig(**TINY_PT)
  sd = {k: v.numpy() for k, v in pretrain_ref.state_dict().items()}
  back = official_layout.official_from_params(official_layout.params_from_official(sd, c), c)
  assert list(back) == [e.key for e in official_layout.official_layout(c)]
  assert set(back) == set(sd)
  for k in sd:
    np.testing.assert_array_equal(back[k], sd[k])


def test_cli(tmp_path, finetune_ref):
  torch.save({'model': finetune_ref.state_dict()}, tmp_path / 'ft.pth')
  cmd = [sys.executable, '-m', 'vmae_jax.convert', f'--src={tmp_path / "ft.pth"}', f'--dst={tmp_path / "out"}',
         'num_heads=4', 'img_size=32', 'num_frames=4']
  r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  assert 'wrote' in r.stdout and vmae_jax.load(str(tmp_path / 'out')).config.num_classes == 6
  bad = subprocess.run(cmd[:4] + [f'--dst={tmp_path / "out2"}'], capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and 'num_heads cannot be read' in bad.stderr
