"""Export a vmae_jax checkpoint to the PyTorch world: an HF transformers VideoMAE directory or an official `.pth`.

    python -m vmae_jax.convert --src=CKPT_OR_WORKDIR --dst=hf_dir --to=hf
    python -m vmae_jax.convert --src=CKPT_OR_WORKDIR --dst=model.pth --to=official

`src` may also be anything `convert` reads (official `.pth`, HF directory, hub safetensors): it is read the same way
and written in the other format, so official → HF works in one step.

`to='official'` writes `{'model': state_dict}` with the official key names, shapes and order (layout.py), the file
the original `run_class_finetuning.py` / `run_mae_pretraining.py` code loads with a strict `load_state_dict`. It
expresses every model vmae_jax has (V1, V2 dual masking, ViT-g): dual masking is a data-side choice, not a weight.

`to='hf'` writes config.json + model.safetensors for `VideoMAEForPreTraining` (pretraining checkpoints),
`VideoMAEForVideoClassification` (classifiers with a head) or `VideoMAEModel` (classifiers without one). Limits of
the HF format, which the returned notes repeat:
  * HF hard-codes LayerNorm eps 1e-5 in `fc_norm` and the decoder norm (the official models use 1e-6 there);
    outputs differ by that alone (max-abs 1e-5 to 1.3e-4 on the tested models, relative ≤ 2e-5; BENCHMARKS.md).
  * HF has no dual masking: a V2 checkpoint's weights load, but the forward only reconstructs the encoder-masked
    tokens (V1 style); the V2 loss over running-cell-kept tokens has to be rebuilt from its submodules.
  * `VideoMAEModel` with mean pooling ends at the last block: the pooled `fc_norm` of a head-less classifier has no
    place there and is left out.
  * ViT-g fits (`intermediate_size` carries the 48/11 MLP ratio, patch 14).
A CLIP image encoder (kind 'clip', from clip_import.py) becomes a `CLIPVisionModel` directory whose per-frame
`last_hidden_state` is the encoder's output; it has no `ln_post` (never imported), so `post_layernorm` is written as
the identity and the HF `pooler_output` is the class token before any norm. The temporal adapters (UniFormerV2, EVL)
have no transformers class and are refused; `to='official'` covers the VideoMAE kinds only.
Weights are written with numpy + safetensors only; torch is needed for `.pth` files alone.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from vmae_jax.models.config import ModelConfig
from vmae_jax.weights import checkpoint, clip_import, loaded, videomae_import
from vmae_jax.weights.official_layout import official_from_params

FORMATS = ('hf', 'official')
ADAPTER_KINDS = ('uniformerv2', 'evl')
HF_FIXED_EPS = 1e-5  # torch's LayerNorm default, hard-coded by HF in fc_norm and decoder.norm

log = logging.getLogger('vmae_jax.weights.export')


class ExportError(ValueError):
  """The checkpoint cannot be written in the asked format; the message names the path, key or field."""


# ---------------------------------------------------------------------------------------------------------------
# Reading


def is_checkpoint(path: str) -> bool:
  """True for a vmae_jax checkpoint (a converted one or a training workdir), False for a foreign weights source."""
  if not os.path.isdir(path):
    return False
  root = checkpoint.checkpoint_root(path)
  return any(name.isdigit() and os.path.isdir(os.path.join(root, name, checkpoint.MODEL_CONFIG))
             for name in os.listdir(root))


def read_params(src: str, step: int | None = None, model: str | None = None,
                **overrides) -> tuple[dict, ModelConfig]:
  """(float32 numpy parameter tree, config) of a vmae_jax checkpoint, or of any source `convert` reads."""
  import jax
  if is_checkpoint(src):
    if model or overrides:
      raise ExportError(f'{src}: a vmae_jax checkpoint carries its own config; model= and field overrides apply '
                        f'only to foreign sources (.pth, HF, safetensors), got {dict(overrides, model=model)}')
    config, params = loaded.restore(src, step, device=jax.local_devices(backend='cpu')[0])
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params), config
  return videomae_import.load_official(src, model, **overrides)


# ---------------------------------------------------------------------------------------------------------------
# The HF layout (the inverse of convert.hf_to_official)


def hf_architecture(config: ModelConfig) -> str:
  if config.kind == 'pretrain':
    return 'VideoMAEForPreTraining'
  return 'VideoMAEForVideoClassification' if config.num_classes > 0 else 'VideoMAEModel'


def hf_state_dict(official: dict[str, np.ndarray], config: ModelConfig) -> tuple[dict[str, np.ndarray], list[str]]:
  """Official keys → HF transformers 5.x keys (q/k/v split, `query.bias`/`value.bias`); returns (weights, notes)."""
  arch = hf_architecture(config)
  enc = 'videomae.' if arch != 'VideoMAEModel' else ''
  pre = 'encoder.' if config.kind == 'pretrain' else ''
  out: dict[str, np.ndarray] = {}
  notes: list[str] = []
  for key, w in official.items():
    stem = key[len(pre):] if pre and key.startswith(pre) else key
    if stem.startswith('blocks.') and key.startswith(pre):
      i, rest = stem.split('.', 2)[1:]
      out.update(_hf_block(f'{enc}encoder.layer.{i}.', rest, w, config.embed_dim))
    elif key.startswith('decoder.blocks.'):
      i, rest = key.split('.', 3)[2:]
      out.update(_hf_block(f'decoder.decoder_layers.{i}.', rest, w, config.decoder_embed_dim))
    elif stem.startswith('patch_embed.proj.') and key.startswith(pre):
      out[enc + 'embeddings.patch_embeddings.projection.' + stem.rsplit('.', 1)[1]] = w
    elif stem.startswith('norm.') and key.startswith(pre):
      out[enc + 'layernorm.' + stem.rsplit('.', 1)[1]] = w
    elif key.startswith('head.'):
      out['classifier.' + key.rsplit('.', 1)[1]] = w
    elif key.startswith('fc_norm.') and arch == 'VideoMAEModel':
      if key.endswith('weight') and not (np.all(w == 1) and np.all(official['fc_norm.bias'] == 0)):
        notes.append('fc_norm left out: HF VideoMAEModel with mean pooling has no pooling norm (the trained '
                     'fc_norm of this head-less classifier is lost; export with a head to keep it)')
    else:  # mask_token, encoder_to_decoder.weight, decoder.norm.*, decoder.head.*, fc_norm.*: same names
      out[key] = w
  uses_fixed_eps = config.kind == 'pretrain' or (arch != 'VideoMAEModel' and config.use_mean_pooling)
  if uses_fixed_eps:
    which = 'decoder.norm' if config.kind == 'pretrain' else 'fc_norm'
    notes.append(f'HF hard-codes LayerNorm eps {HF_FIXED_EPS:g} in {which}; the model uses {config.norm_eps:g} '
                 f'(a relative difference of order 1e-5 in its output, more where the normalised variance is small)')
  if config.kind == 'pretrain':
    notes.append('HF VideoMAEForPreTraining has no dual masking: V2 weights load, the forward reconstructs the '
                 'encoder-masked tokens only')
  return out, notes


def _hf_block(prefix: str, rest: str, w: np.ndarray, dim: int) -> dict[str, np.ndarray]:
  att = prefix + 'attention.attention.'
  if rest == 'attn.qkv.weight':
    q, k, v = w[:dim], w[dim:2 * dim], w[2 * dim:]
    return {att + 'query.weight': q, att + 'key.weight': k, att + 'value.weight': v}
  if rest == 'attn.q_bias':
    return {att + 'query.bias': w}
  if rest == 'attn.v_bias':
    return {att + 'value.bias': w}
  for hf, official in videomae_import.HF_LAYER_KEYS:
    if rest.startswith(official):
      return {prefix + hf + rest[len(official):]: w}
  raise ExportError(f'official key {rest!r} has no HF VideoMAE counterpart')


def hf_config(config: ModelConfig, class_names: list[str] | None = None, norm_pix_loss: bool = True) -> dict:
  """config.json of transformers' VideoMAEConfig (field names of 5.x; `qkv_bias` too, the 4.x spelling)."""
  arch = hf_architecture(config)
  d = dict(architectures=[arch], model_type='videomae', image_size=config.img_size, patch_size=config.patch_size,
           num_channels=config.in_chans, num_frames=config.num_frames, tubelet_size=config.tubelet_size,
           hidden_size=config.embed_dim, num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
           intermediate_size=config.mlp_hidden_dim, hidden_act='gelu', hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0, initializer_range=0.02, layer_norm_eps=config.norm_eps,
           qv_bias=config.qkv_bias, qkv_bias=config.qkv_bias,
           # The pretraining encoder always ends with a norm; HF keeps it only with use_mean_pooling=False.
           use_mean_pooling=config.use_mean_pooling if config.kind == 'classifier' else False,
           norm_pix_loss=norm_pix_loss)
  if config.kind == 'pretrain':
    d.update(decoder_hidden_size=config.decoder_embed_dim, decoder_num_hidden_layers=config.decoder_depth,
             decoder_num_attention_heads=config.decoder_num_heads,
             decoder_intermediate_size=config.decoder_mlp_hidden_dim)
  if config.num_classes > 0:
    if class_names is not None and len(class_names) != config.num_classes:
      raise ExportError(f'{len(class_names)} class names for a head of {config.num_classes} classes')
    names = class_names or [f'LABEL_{i}' for i in range(config.num_classes)]
    d.update(id2label={str(i): n for i, n in enumerate(names)}, label2id={n: i for i, n in enumerate(names)})
  return d


def _atomic_json(path: str, obj: dict) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
  os.replace(tmp, path)


def hf_clip_state_dict(params: dict, config: ModelConfig) -> tuple[dict[str, np.ndarray], list[str]]:
  """Our `clip` tree → HF `CLIPVisionModel` keys (clip_import's tables, reversed); returns (weights, notes)."""
  weights = clip_import.openai_to_hf(clip_import.openai_from_params(params, config))
  d = config.embed_dim
  weights['vision_model.post_layernorm.weight'] = np.ones(d, np.float32)
  weights['vision_model.post_layernorm.bias'] = np.zeros(d, np.float32)
  return weights, ['CLIP ln_post is not part of the checkpoint: post_layernorm written as the identity, so HF '
                   'pooler_output is the raw class token (last_hidden_state is exact)']


def _refuse_adapters(config: ModelConfig, dst: str, to: str) -> None:
  if config.kind in ADAPTER_KINDS:
    raise ExportError(f'{dst}: a {config.kind!r} checkpoint cannot be exported --to={to}: neither transformers nor '
                      f'the official VideoMAE code has a {config.kind} model (export the converted CLIP checkpoint '
                      'it started from instead)')


def write_hf(params: dict, config: ModelConfig, dst: str, class_names: list[str] | None = None,
             norm_pix_loss: bool = True) -> list[str]:
  """Write `dst/{config.json, model.safetensors}`; returns the notes on what the format cannot express."""
  from safetensors.numpy import save_file
  _refuse_adapters(config, dst, 'hf')
  if os.path.isfile(dst):
    raise ExportError(f'{dst}: is a file; --to=hf writes a directory')
  if config.kind == 'clip':
    weights, notes = hf_clip_state_dict(params, config)
    hf_json = clip_import.hf_vision_config(config)
  else:
    weights, notes = hf_state_dict(official_from_params(params, config), config)
    hf_json = hf_config(config, class_names, norm_pix_loss)
  os.makedirs(dst, exist_ok=True)
  tmp = os.path.join(dst, 'model.safetensors.tmp')
  save_file({k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}, tmp, metadata={'format': 'pt'})
  os.replace(tmp, os.path.join(dst, 'model.safetensors'))
  _atomic_json(os.path.join(dst, 'config.json'), hf_json)
  return notes


def write_official(params: dict, config: ModelConfig, dst: str) -> list[str]:
  """Write `{'model': state_dict}` (official keys, torch shapes and order) to the `.pth` file `dst`."""
  _refuse_adapters(config, dst, 'official')
  if config.kind == 'clip':
    raise ExportError(f'{dst}: a CLIP encoder has no official VideoMAE layout; use --to=hf (a CLIPVisionModel '
                      'directory)')
  try:
    import torch
  except ImportError as e:  # pragma: no cover - torch is a test extra
    raise ExportError(f'{dst}: writing .pth files needs torch (CPU build: pip install torch --index-url '
                      f'https://download.pytorch.org/whl/cpu)') from e
  if os.path.isdir(dst):
    raise ExportError(f'{dst}: is a directory; --to=official writes one .pth file')
  sd = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in official_from_params(params, config).items()}
  parent = os.path.dirname(os.path.abspath(dst))
  os.makedirs(parent, exist_ok=True)
  tmp = dst + '.tmp'
  torch.save({'model': sd}, tmp)
  os.replace(tmp, dst)
  return []


def norm_target_of(src: str) -> bool:
  """Whether a pretraining workdir trained on normalised pixels (its config.json); True (the official default)
  for anything else."""
  path = os.path.join(src, 'config.json')
  if os.path.isdir(src) and os.path.exists(path):
    with open(path) as f:
      cfg = json.load(f)
    if isinstance(cfg.get('config'), dict):
      value = cfg['config'].get('pretrain', {}).get('norm_target')
      return True if value is None else bool(value)
  return True


def export(src: str, dst: str, to: str, step: int | None = None, class_names: list[str] | None = None,
           model: str | None = None, **overrides) -> tuple[ModelConfig, list[str]]:
  """Write the checkpoint (or foreign source) `src` to `dst` in format `to` ('hf' or 'official').

  Returns (config, notes): the notes say what the target format could not express (also logged).
  """
  if to not in FORMATS:
    raise ExportError(f'unknown export format {to!r}; choose from {FORMATS}')
  params, config = read_params(src, step, model, **overrides)
  if to == 'hf':
    notes = write_hf(params, config, dst, class_names, norm_pix_loss=norm_target_of(src))
  else:
    notes = write_official(params, config, dst)
  for note in notes:
    log.warning('%s: %s', dst, note)
  return config, notes
