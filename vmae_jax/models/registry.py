"""The official model names and their architectures (spec/videomae.md §1.1–1.2).

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


def model_names() -> list[str]:
  return list(CLASSIFIERS) + list(PRETRAIN)


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
  else:
    raise ConfigError(f'unknown model name {name!r}; registered: {model_names()}')
  return ModelConfig(**base).replace(**overrides)
