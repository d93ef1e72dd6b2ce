"""ModelConfig: every architecture fact of a video ViT / VideoMAE model in one frozen record.

Field names follow the official `create_model(...)` arguments (`img_size`, `patch_size`, `tubelet_size`,
`num_frames`, `embed_dim`, `depth`, `num_heads`, `mlp_ratio`, `qkv_bias`, `decoder_embed_dim`, ...), so a
researcher can read an official script's flags straight into it. A config is plain data: it round-trips through
JSON next to every checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from vmae_jax.models import attention

KINDS = ('classifier', 'pretrain', 'clip', 'uniformerv2', 'evl')
# Kinds whose backbone is a CLIP image ViT applied per frame (docs/fidelity.md, "Adapters"); they take no tubelet
# embedding.
CLIP_KINDS = ('clip', 'uniformerv2', 'evl')
# Kinds that end in a classification head (trained by the finetune/postpretrain/eval tasks).
HEAD_KINDS = ('classifier', 'uniformerv2', 'evl')
ATTENTION_IMPLS = attention.IMPLS
REMAT_POLICIES = ('none', 'nothing_saveable', 'dots_saveable', 'dots_with_no_batch_dims_saveable',
                  'everything_saveable')
DTYPES = ('float32', 'bfloat16', 'float16')


class ConfigError(ValueError):
  """A model config field is missing, unknown or inconsistent; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture + compute settings. `kind` picks the model: a classifier or the MAE pretraining model."""
  kind: str = 'classifier'
  name: str = ''
  # Input and cube embedding. The sinusoid tables are regenerated from the actual input shape, so
  # `img_size`/`num_frames` only set the default shape used for initialisation and shape checks.
  img_size: int = 224
  patch_size: int = 16
  tubelet_size: int = 2
  num_frames: int = 16
  in_chans: int = 3
  # Encoder.
  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  norm_eps: float = 1e-6
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  # Classifier head (kind='classifier'). num_classes=0 means no head: the model returns fc_norm(mean tokens).
  num_classes: int = 0
  use_mean_pooling: bool = True
  init_scale: float = 0.001
  head_drop_rate: float = 0.0
  # Pretraining decoder (kind='pretrain'). The decoder MLP uses the encoder's mlp_ratio, as the official code does.
  decoder_embed_dim: int = 384
  decoder_depth: int = 4
  decoder_num_heads: int = 6
  # Temporal adapters on CLIP (kind 'uniformerv2' / 'evl'; docs/fidelity.md, "Adapters"). The global UniBlocks
  # (UniFormerV2) or EVL decoder layers are `decoder_depth` layers of width `decoder_embed_dim` with
  # `decoder_num_heads` heads, fed by the last `decoder_depth` backbone blocks. UniFormerV2's temporal downsampling
  # sets tubelet_size=2.
  temporal_downsample: bool = False
  no_lmhra: bool = True               # UniFormerV2: no local UniBlocks (the Kinetics layout)
  double_lmhra: bool = True           # UniFormerV2: a second local UniBlock between attention and MLP
  dw_reduction: float = 1.5           # UniFormerV2: local UniBlock width = int(embed_dim // dw_reduction)
  decoder_drop_rate: float = 0.0      # dropout inside the global-block / EVL-decoder MLP (official mlp_dropout)
  decoder_drop_path_rate: float = 0.0  # UniFormerV2 global blocks: linspace(0, rate, decoder_depth)
  freeze_backbone: bool = False       # the CLIP backbone gets no gradient and no optimizer state
  # Compute (not architecture): activation dtype, attention kernel, rematerialisation policy of the block scan.
  dtype: str = 'float32'
  attention: str = 'auto'
  remat_policy: str = 'none'

  def __post_init__(self):
    validate(self)

  # Derived sizes -------------------------------------------------------------------------------------------
  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  @property
  def mlp_hidden_dim(self) -> int:
    return int(self.embed_dim * self.mlp_ratio)

  @property
  def decoder_mlp_hidden_dim(self) -> int:
    return int(self.decoder_embed_dim * self.mlp_ratio)

  @property
  def decoder_num_classes(self) -> int:
    """Width of the pixel head: one tubelet of p×p RGB pixels per token."""
    return self.in_chans * self.tubelet_size * self.patch_size ** 2

  def token_grid(self, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None) -> tuple[int, int, int]:
    """(T', H', W') token grid for an input of the given (default: configured) size."""
    num_frames = self.num_frames if num_frames is None else num_frames
    height = self.img_size if height is None else height
    width = self.img_size if width is None else width
    return grid_for(num_frames, height, width, self.tubelet_size, self.patch_size)

  @property
  def num_tokens(self) -> int:
    t, h, w = self.token_grid()
    return t * h * w

  def replace(self, **changes) -> 'ModelConfig':
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
    if unknown:
      raise ConfigError(f'unknown model config field(s) {unknown}; known fields: '
                        f'{sorted(f.name for f in dataclasses.fields(self))}')
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'ModelConfig':
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ConfigError(f'unknown model config field(s) {unknown}')
    return cls(**d)


def grid_for(num_frames: int, height: int, width: int, tubelet: int, patch: int) -> tuple[int, int, int]:
  if num_frames % tubelet:
    raise ConfigError(f'num_frames={num_frames} is not divisible by tubelet_size={tubelet}')
  if height % patch or width % patch:
    raise ConfigError(f'frame size {height}x{width} is not divisible by patch_size={patch}')
  return num_frames // tubelet, height // patch, width // patch


def validate(c: ModelConfig) -> None:
  def need(cond, field, msg):
    if not cond:
      raise ConfigError(f'model config field {field!r}: {msg} (got {getattr(c, field)!r})')

  need(c.kind in KINDS, 'kind', f'must be one of {KINDS}')
  if c.kind in CLIP_KINDS:
    _validate_clip_kind(c, need)
  for f in ('img_size', 'patch_size', 'tubelet_size', 'num_frames', 'embed_dim', 'depth', 'num_heads', 'in_chans'):
    need(isinstance(getattr(c, f), int) and getattr(c, f) > 0, f, 'must be a positive int')
  need(c.embed_dim % c.num_heads == 0, 'num_heads', f'must divide embed_dim={c.embed_dim}')
  need(c.mlp_ratio > 0, 'mlp_ratio', 'must be > 0')
  need(c.num_frames % c.tubelet_size == 0, 'num_frames', f'must be divisible by tubelet_size={c.tubelet_size}')
  need(c.img_size % c.patch_size == 0, 'img_size', f'must be divisible by patch_size={c.patch_size}')
  for f in ('drop_rate', 'attn_drop_rate', 'drop_path_rate', 'head_drop_rate', 'decoder_drop_rate',
            'decoder_drop_path_rate'):
    need(0.0 <= getattr(c, f) < 1.0, f, 'must be in [0, 1)')
  need(isinstance(c.num_classes, int) and c.num_classes >= 0, 'num_classes', 'must be an int >= 0')
  need(c.norm_eps > 0, 'norm_eps', 'must be > 0')
  need(c.dtype in DTYPES, 'dtype', f'must be one of {DTYPES}')
  need(c.attention in ATTENTION_IMPLS, 'attention', f'must be one of {ATTENTION_IMPLS}')
  need(c.remat_policy in REMAT_POLICIES, 'remat_policy', f'must be one of {REMAT_POLICIES}')
  if c.kind == 'pretrain':
    for f in ('decoder_embed_dim', 'decoder_depth', 'decoder_num_heads'):
      need(isinstance(getattr(c, f), int) and getattr(c, f) > 0, f, 'must be a positive int')
    need(c.decoder_embed_dim % c.decoder_num_heads == 0, 'decoder_num_heads',
         f'must divide decoder_embed_dim={c.decoder_embed_dim}')
    need(c.num_classes == 0, 'num_classes', 'must be 0 for a pretraining model')


def _validate_clip_kind(c: ModelConfig, need) -> None:
  """CLIP-backbone kinds: frames are embedded one by one (tubelet 1), or in pairs with UniFormerV2's temporal
  downsampling (kernel 3, stride 2: tubelet 2); the adapters read the last `decoder_depth` blocks."""
  tubelet = 2 if c.temporal_downsample else 1
  need(c.tubelet_size == tubelet, 'tubelet_size',
       f'must be {tubelet} for kind {c.kind!r} with temporal_downsample={c.temporal_downsample}')
  need(c.kind == 'uniformerv2' or not c.temporal_downsample, 'temporal_downsample', 'is a UniFormerV2 option')
  need(c.kind == 'uniformerv2' or c.no_lmhra, 'no_lmhra', 'local UniBlocks are a UniFormerV2 option')
  need(c.kind != 'clip' or c.num_classes == 0, 'num_classes', 'must be 0: the CLIP encoder has no head')
  need(c.dw_reduction > 0 and int(c.embed_dim // c.dw_reduction) > 0, 'dw_reduction', 'must give a width > 0')
  if c.kind in ('uniformerv2', 'evl'):
    need(isinstance(c.decoder_depth, int) and 0 < c.decoder_depth <= c.depth, 'decoder_depth',
         f'must be in [1, depth={c.depth}]')
    need(c.decoder_embed_dim % c.decoder_num_heads == 0, 'decoder_num_heads',
         f'must divide decoder_embed_dim={c.decoder_embed_dim}')
  if c.kind == 'uniformerv2':
    need(c.decoder_embed_dim == c.embed_dim, 'decoder_embed_dim',
         f'must equal embed_dim={c.embed_dim}: the global UniBlocks read backbone features unprojected')
