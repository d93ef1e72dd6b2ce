"""CLIP image encoder: parity (fp32, max-abs ≤ 1e-5) with HF `CLIPVisionModel.last_hidden_state`, per frame,
through the converter from the HF layout (directory and bare safetensors, CLIPModel too) and the OpenAI layout
(`visual.*`, fused in_proj), plus the converter's errors; and the way back (`--to=hf`: a CLIPVisionModel directory),
with the temporal adapters refused."""
import os

import jax
import numpy as np
import pytest
import torch
import torch_refs
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel

import vmae_jax
from vmae_jax import convert, models
from vmae_jax.weights import checkpoint, clip_import, export

TOL = 1e-5
# p=8 with 4 heads of 16, and p=14 with head_dim 64 like the released models (one width OpenAI's width/64 rule fits).
SHAPES = {
    's32_p8': dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                   patch_size=8),
    's28_p14': dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2,
                    image_size=28, patch_size=14),
}


def _hf_vision(shape: dict, seed: int = 0) -> CLIPVisionModel:
  torch.manual_seed(seed)
  cfg = CLIPVisionConfig(**shape, hidden_act='quick_gelu', layer_norm_eps=1e-5, attn_implementation='eager')
  return torch_refs.randomize_(CLIPVisionModel(cfg), seed)


def _video(shape: dict, batch: int = 2, frames: int = 3, seed: int = 0) -> np.ndarray:
  s = shape['image_size']
  return np.random.default_rng(seed).standard_normal((batch, frames, s, s, 3)).astype(np.float32)


def _reference(model: CLIPVisionModel, video: np.ndarray) -> np.ndarray:
  b, t = video.shape[:2]
  frames = torch.from_numpy(video.reshape(b * t, *video.shape[2:])).permute(0, 3, 1, 2)
  with torch.no_grad():
    out = model(pixel_values=frames).last_hidden_state.numpy()
  return out.reshape(b, t, *out.shape[1:])


def _openai_state_dict(model: CLIPVisionModel) -> dict:
  """The HF weights in OpenAI's layout (the inverse of HF's convert_clip_original_pytorch_to_hf), as the full CLIP
  model holds them: under `visual.`, beside text-tower keys the converter must ignore."""
  sd = {k.removeprefix('vision_model.'): v for k, v in model.state_dict().items()}
  out = {'visual.class_embedding': sd['embeddings.class_embedding'],
         'visual.conv1.weight': sd['embeddings.patch_embedding.weight'],
         'visual.positional_embedding': sd['embeddings.position_embedding.weight'],
         'visual.ln_pre.weight': sd['pre_layrnorm.weight'], 'visual.ln_pre.bias': sd['pre_layrnorm.bias'],
         'visual.ln_post.weight': sd['post_layernorm.weight'], 'visual.ln_post.bias': sd['post_layernorm.bias'],
         'visual.proj': torch.randn(sd['pre_layrnorm.weight'].shape[0], 16),
         'positional_embedding': torch.randn(7, 32), 'token_embedding.weight': torch.randn(10, 32),
         'transformer.resblocks.0.attn.in_proj_weight': torch.randn(96, 32), 'logit_scale': torch.tensor(4.6)}
  for i in range(model.config.num_hidden_layers):
    hf, b = f'encoder.layers.{i}.', f'visual.transformer.resblocks.{i}.'
    out[b + 'attn.in_proj_weight'] = torch.cat([sd[hf + f'self_attn.{n}_proj.weight'] for n in 'qkv'])
    out[b + 'attn.in_proj_bias'] = torch.cat([sd[hf + f'self_attn.{n}_proj.bias'] for n in 'qkv'])
    for ours, theirs in (('attn.out_proj', 'self_attn.out_proj'), ('ln_1', 'layer_norm1'), ('ln_2', 'layer_norm2'),
                         ('mlp.c_fc', 'mlp.fc1'), ('mlp.c_proj', 'mlp.fc2')):
      for p in ('weight', 'bias'):
        out[f'{b}{ours}.{p}'] = sd[f'{hf}{theirs}.{p}']
  return {k: v.clone().contiguous() for k, v in out.items()}


def _maxdiff(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  diff = float(np.abs(a - b).max())
  print(f'  max-abs diff {diff:.2e} over shape {a.shape}')
  return diff


@pytest.mark.parametrize('shape', list(SHAPES))
def test_hf_directory_parity(tmp_path, shape):
  ref = _hf_vision(SHAPES[shape])
  ref.save_pretrained(tmp_path / 'hf')
  config = convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'out'))
  assert config.kind == 'clip' and config.num_heads == SHAPES[shape]['num_attention_heads']
  assert config.norm_eps == 1e-5 and config.img_size == SHAPES[shape]['image_size']
  video = _video(SHAPES[shape])
  got = vmae_jax.load(str(tmp_path / 'out')).encode(video)
  assert got.shape == (2, 3, 1 + (SHAPES[shape]['image_size'] // SHAPES[shape]['patch_size']) ** 2,
                       SHAPES[shape]['hidden_size'])
  assert _maxdiff(got, _reference(ref, video)) <= TOL


def test_openai_layout_parity(tmp_path):
  shape = SHAPES['s32_p8']
  ref = _hf_vision(shape, seed=1)
  torch.save(_openai_state_dict(ref), tmp_path / 'clip.pth')
  # the OpenAI builder's rule heads = width / 64 would say 1 head for width 64; the weights cannot tell
  config = convert.convert(str(tmp_path / 'clip.pth'), str(tmp_path / 'out'), num_heads=4)
  assert config.depth == 2 and config.patch_size == 8
  video = _video(shape, seed=1)
  assert _maxdiff(vmae_jax.load(str(tmp_path / 'out')).encode(video), _reference(ref, video)) <= TOL


def test_openai_visual_only_and_clipmodel_safetensors(tmp_path):
  """UniFormerV2's extracted `vit_*.pth` (visual keys, no prefix, no ln_post/proj) with the width/64 head rule;
  and a CLIPModel's bare safetensors (vision_model.* beside the text tower, config.json with vision_config)."""
  shape = SHAPES['s28_p14']   # width 128 → 2 heads by OpenAI's rule, which is this model's count
  ref = _hf_vision(shape, seed=2)
  sd = {k.removeprefix('visual.'): v for k, v in _openai_state_dict(ref).items()
        if k.startswith('visual.') and k not in ('visual.ln_post.weight', 'visual.ln_post.bias', 'visual.proj')}
  torch.save(sd, tmp_path / 'vit.pth')
  convert.convert(str(tmp_path / 'vit.pth'), str(tmp_path / 'a'))
  video = _video(shape, seed=2)
  expected = _reference(ref, video)
  assert _maxdiff(vmae_jax.load(str(tmp_path / 'a')).encode(video), expected) <= TOL

  full = CLIPModel(CLIPConfig(vision_config=ref.config.to_dict(), projection_dim=16, text_config=dict(
      hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)))
  missing = full.load_state_dict({f'vision_model.{k.removeprefix("vision_model.")}': v
                                  for k, v in ref.state_dict().items()}, strict=False).missing_keys
  assert all(k.startswith(('text_model.', 'text_projection', 'visual_projection', 'logit_scale')) for k in missing)
  full.save_pretrained(tmp_path / 'full')
  convert.convert(str(tmp_path / 'full' / 'model.safetensors'), str(tmp_path / 'b'))
  assert _maxdiff(vmae_jax.load(str(tmp_path / 'b')).encode(video), expected) <= TOL


def test_converter_errors_name_the_key(tmp_path):
  ref = _hf_vision(SHAPES['s32_p8'])
  sd = _openai_state_dict(ref)
  bad = dict(sd)
  del bad['visual.transformer.resblocks.1.mlp.c_fc.bias']
  torch.save(bad, tmp_path / 'missing.pth')
  with pytest.raises(clip_import.ClipLayoutError, match=r"missing key 'transformer.resblocks.1.mlp.c_fc.bias'"):
    convert.convert(str(tmp_path / 'missing.pth'), str(tmp_path / 'x'), num_heads=4)
  bad = dict(sd, **{'visual.transformer.resblocks.0.attn.extra': torch.zeros(3)})
  torch.save(bad, tmp_path / 'extra.pth')
  with pytest.raises(clip_import.ClipLayoutError, match=r"unexpected key 'transformer.resblocks.0.attn.extra'"):
    convert.convert(str(tmp_path / 'extra.pth'), str(tmp_path / 'x'), num_heads=4)
  torch.save(sd, tmp_path / 'ok.pth')
  with pytest.raises(clip_import.ClipLayoutError, match="model must be one of"):
    convert.convert(str(tmp_path / 'ok.pth'), str(tmp_path / 'x'), model='vit_base_patch16_224')


def test_registered_sizes():
  """The released encoders' parameter counts (visual tower without ln_post/proj)."""
  assert models.count_params('clip_vit_base_patch16_224') == 85_797_888
  assert models.count_params('clip_vit_large_patch14_224') == 303_177_728
  assert models.count_params('clip_vit_large_patch14_336') == 303_177_728 + (577 - 257) * 1024


def _random_clip(shape: dict, seed: int = 0):
  """Our CLIP config and parameters with every bias and norm term non-zero."""
  c = models.get_config('clip_vit_base_patch16_224', img_size=shape['image_size'], patch_size=shape['patch_size'],
                        embed_dim=shape['hidden_size'], depth=shape['num_hidden_layers'],
                        num_heads=shape['num_attention_heads'])
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(
      lambda p: (np.asarray(p) + (0.1 * rng.standard_normal(p.shape) if p.ndim <= 3 else 0)).astype(np.float32),
      models.init_params(c, jax.random.key(seed)))
  return c, params


@pytest.mark.parametrize('shape', list(SHAPES))
def test_export_hf_clip_round_trip(tmp_path, shape):
  """ours → `--to=hf` → CLIPVisionModel.from_pretrained: the same per-frame last_hidden_state; the directory read
  back by the converter gives the same parameters."""
  c, params = _random_clip(SHAPES[shape], seed=3)
  checkpoint.save(str(tmp_path / 'ours'), params, c)
  assert convert.main([f'--src={tmp_path / "ours"}', f'--dst={tmp_path / "hf"}', '--to=hf']) == 0
  ref = CLIPVisionModel.from_pretrained(str(tmp_path / 'hf'), attn_implementation='eager').eval()
  assert ref.config.hidden_act == 'quick_gelu' and ref.config.layer_norm_eps == c.norm_eps
  video = _video(SHAPES[shape], seed=3)
  assert _maxdiff(vmae_jax.load(str(tmp_path / 'ours')).encode(video), _reference(ref, video)) <= TOL
  back = convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'back'))
  assert (back.kind, back.embed_dim, back.depth, back.num_heads, back.patch_size, back.img_size) == (
      c.kind, c.embed_dim, c.depth, c.num_heads, c.patch_size, c.img_size)
  got = vmae_jax.load(str(tmp_path / 'back')).variables['params']
  flat, want = jax.tree_util.tree_leaves_with_path(got), dict(jax.tree_util.tree_leaves_with_path(params))
  assert len(flat) == len(want)
  for path, leaf in flat:
    np.testing.assert_array_equal(np.asarray(leaf), want[path], err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('name', ['uniformerv2_b16', 'evl_b16'])
def test_export_refuses_adapters(tmp_path, name):
  c = models.get_config(name, img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=64,
                        decoder_num_heads=4, decoder_depth=1, num_classes=5)
  variables = jax.tree_util.tree_map(np.asarray, models.init_variables(c, jax.random.key(0)))
  checkpoint.save(str(tmp_path / 'ours'), variables['params'], c, batch_stats=variables.get('batch_stats'))
  for to in ('hf', 'official'):
    with pytest.raises(export.ExportError, match=rf"a '{c.kind}' checkpoint cannot be exported --to={to}: "
                                                 rf"neither transformers nor the official VideoMAE code"):
      convert.convert(str(tmp_path / 'ours'), str(tmp_path / f'out_{to}'), to=to)
    assert not os.path.exists(tmp_path / f'out_{to}')
