"""The official model names and their architectures (docs/fidelity.md, "Models"; the `vit_*` and
`pretrain_videomae_*` functions of MCG-NJU/VideoMAE and OpenGVLab/VideoMAEv2 modeling_finetune.py /
modeling_pretrain.py).

`vit_*` names are classifiers (no head unless `num_classes` is given); `pretrain_videomae_*` names are the MAE
pretraining models. Large and huge pretraining models differ between the papers' scripts: V1 used a 12-layer
decoder (huge also 640 wide), V2 a 4-layer 512-wide one. The V1 decoder is the default; `version='v2'` selects V2's.
Giant exists only in V2.
"""
from __future__ import annotations

from vmae_jax.models.config import ConfigError, ModelConfig

GIANT_MLP_RATIO = 48 / 11  # int(1408·48/11) = 6144 for the encoder, int(512·48/11) = 2234 for the decoder

# name → encoder architecture.
_ENCODERS = {
    'small': dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    'base': dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    'large': dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    'huge': dict(patch_size=16, embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    'giant': dict(patch_size=14, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=GIANT_MLP_RATIO),
}
# size → {version: decoder}; the depth is the one the papers' scripts pass (--decoder_depth).
_DECODERS = {
    'small': {'v1': dict(decoder_embed_dim=192, decoder_num_heads=3, decoder_depth=4)},
    'base': {'v1': dict(decoder_embed_dim=384, decoder_num_heads=6, decoder_depth=4),
             'v2': dict(decoder_embed_dim=384, decoder_num_heads=6, decoder_depth=4)},
    'large': {'v1': dict(decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=12),
              'v2': dict(decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=4)},
    'huge': {'v1': dict(decoder_embed_dim=640, decoder_num_heads=8, decoder_depth=12),
             'v2': dict(decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=4)},
    'giant': {'v2': dict(decoder_embed_dim=512, decoder_num_heads=8, decoder_depth=4)},
}
_DEFAULT_VERSION = {'small': 'v1', 'base': 'v1', 'large': 'v1', 'huge': 'v1', 'giant': 'v2'}
# The small model has no V2 script; its V1 decoder is the only one defined.

CLASSIFIERS = {
    'vit_small_patch16_224': 'small',
    'vit_base_patch16_224': 'base',
    'vit_large_patch16_224': 'large',
    'vit_huge_patch16_224': 'huge',
    'vit_giant_patch14_224': 'giant',
}
PRETRAIN = {
    'pretrain_videomae_small_patch16_224': 'small',
    'pretrain_videomae_base_patch16_224': 'base',
    'pretrain_videomae_large_patch16_224': 'large',
    'pretrain_videomae_huge_patch16_224': 'huge',
    'pretrain_videomae_giant_patch14_224': 'giant',
}


# CLIP image encoders (docs/fidelity.md, "Adapters"): pre-norm, QuickGELU, LayerNorm eps 1e-5, heads of 64 channels.
_CLIP = {
    'b16': dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, img_size=224),
    'l14': dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16, img_size=224),
    'l14_336': dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16, img_size=336),
}
_CLIP_COMMON = dict(mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-5, tubelet_size=1, num_frames=8)
CLIP = {'clip_vit_base_patch16_224': 'b16', 'clip_vit_large_patch14_224': 'l14',
        'clip_vit_large_patch14_336': 'l14_336'}
# UniFormerV2 (docs/fidelity.md, "Adapters"). version 'k400' (default): the Kinetics/MiT layout, global UniBlocks
# on the last 4 layers, no local blocks, no temporal downsampling, 8 frames. version 'ssv2': the Something-Something
# layout, local UniBlocks in every layer, global ones on the last 8 (B) / 16 (L), 16 frames downsampled to 8, drop
# paths.
UNIFORMERV2 = {'uniformerv2_b16': 'b16', 'uniformerv2_l14': 'l14', 'uniformerv2_l14_336': 'l14_336'}
_UNIFORMERV2_VERSIONS = {
    'k400': lambda size: dict(decoder_depth=4, no_lmhra=True, temporal_downsample=False, num_frames=8),
    'ssv2': lambda size: dict(decoder_depth=8 if size == 'b16' else 16, no_lmhra=False, double_lmhra=True,
                              temporal_downsample=True, tubelet_size=2, num_frames=16, drop_path_rate=0.2,
                              decoder_drop_path_rate=0.4),
}
# EVL (docs/fidelity.md, "Adapters"): frozen CLIP, 4 decoder layers as wide as the backbone, dropouts 0.5, 8 frames.
EVL = {'evl_b16': 'b16', 'evl_l14': 'l14', 'evl_l14_336': 'l14_336'}


def _clip_family(name: str, version: str | None) -> dict:
  if name in CLIP:
    if version is not None:
      raise ConfigError(f'{name}: the CLIP encoder has no versions')
    return dict(kind='clip', name=name, **_CLIP_COMMON, **_CLIP[CLIP[name]])
  size = UNIFORMERV2.get(name) or EVL[name]
  arch = _CLIP[size]
  common = dict(name=name, **{**_CLIP_COMMON, **arch}, decoder_embed_dim=arch['embed_dim'],
                decoder_num_heads=arch['num_heads'], decoder_drop_rate=0.5, head_drop_rate=0.5)
  if name in UNIFORMERV2:
    version = version or 'k400'
    if version not in _UNIFORMERV2_VERSIONS:
      raise ConfigError(f'{name}: layout version {version!r} is not defined; available: '
                        f'{sorted(_UNIFORMERV2_VERSIONS)}')
    return dict(common, kind='uniformerv2', **_UNIFORMERV2_VERSIONS[version](size))
  if version is not None:
    raise ConfigError(f'{name}: EVL has no versions')
  return dict(common, kind='evl', decoder_depth=4, freeze_backbone=True)


def model_names() -> list[str]:
  return list(CLASSIFIERS) + list(PRETRAIN) + list(CLIP) + list(UNIFORMERV2) + list(EVL)


def get_config(name: str, version: str | None = None, **overrides) -> ModelConfig:
  """The ModelConfig of a registered name, with official-argument-name overrides applied."""
  if name in CLASSIFIERS:
    if version is not None:
      raise ConfigError(f'{name}: `version` selects a pretraining decoder; classifiers have none')
    size = CLASSIFIERS[name]
    base = dict(kind='classifier', name=name, **_ENCODERS[size])
  elif name in PRETRAIN:
    size = PRETRAIN[name]
    version = version or _DEFAULT_VERSION[size]
    if version not in _DECODERS[size]:
      raise ConfigError(f'{name}: decoder version {version!r} is not defined; '
                        f'available: {sorted(_DECODERS[size])}')
    base = dict(kind='pretrain', name=name, **_ENCODERS[size], **_DECODERS[size][version])
  elif name in CLIP or name in UNIFORMERV2 or name in EVL:
    base = _clip_family(name, version)
  else:
    raise ConfigError(f'unknown model name {name!r}; registered: {model_names()}')
  return ModelConfig(**base).replace(**overrides)
