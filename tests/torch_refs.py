"""PyTorch references for parity tests: the original VideoMAE V2 modelling code (from the cd-fvd sdist) and HF
transformers VideoMAE, built to the shape of a vmae_jax ModelConfig with random non-zero weights.

The original code is read from `cdfvd.third_party.VideoMAEv2`; HF models are built offline from a config with eager
attention and the LayerNorm eps the official models use (1e-6; docs/fidelity.md, "Models").
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from cdfvd.third_party.VideoMAEv2 import videomaev2_finetune as orig_ft
from cdfvd.third_party.VideoMAEv2 import videomaev2_pretrain as orig_pt

from vmae_jax.models.config import ModelConfig

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


def randomize_(model: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
  """Make every bias, q/v bias, LayerNorm affine term and the mask token non-zero (matrices keep their init, so
  activations stay O(1) and an absolute tolerance stays meaningful)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1 or name.endswith('mask_token'):
        p.add_(torch.randn(p.shape, generator=g) * scale)
  return model.eval()


def original_pretrain(c: ModelConfig, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  m = orig_pt.PretrainVisionTransformer(
      img_size=c.img_size, patch_size=c.patch_size, encoder_embed_dim=c.embed_dim, encoder_depth=c.depth,
      encoder_num_heads=c.num_heads, decoder_num_classes=c.decoder_num_classes, decoder_embed_dim=c.decoder_embed_dim,
      decoder_depth=c.decoder_depth, decoder_num_heads=c.decoder_num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias,
      norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), tubelet_size=c.tubelet_size, all_frames=c.num_frames)
  return randomize_(m, seed)


def original_classifier(c: ModelConfig, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  m = orig_ft.VisionTransformer(
      img_size=c.img_size, patch_size=c.patch_size, num_classes=c.num_classes, embed_dim=c.embed_dim, depth=c.depth,
      num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias,
      norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), init_scale=c.init_scale, all_frames=c.num_frames,
      tubelet_size=c.tubelet_size, use_mean_pooling=c.use_mean_pooling)
  # cd-fvd's copy hard-codes an 8-slot, 16x16 temporal interpolation of the table (a ViT-g/16-frame special case);
  # the V1 code uses the table it built for its own frame count and size, which is what we compare against.
  m.interpolate_pos_encoding = lambda t: m.pos_embed
  return randomize_(m, seed)


def to_torch_video(video: np.ndarray) -> torch.Tensor:
  """(B, T, H, W, C) → the original layout (B, C, T, H, W)."""
  return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 4, 1, 2, 3).contiguous()


def to_hf_video(video: np.ndarray) -> torch.Tensor:
  """(B, T, H, W, C) → HF layout (B, T, C, H, W)."""
  return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 1, 4, 2, 3).contiguous()


def original_target(video_bcthw: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
  """The normalised-pixel target of engine_for_pretraining.py (docs/fidelity.md, "Pixel target and loss"), written
  with torch ops."""
  b, c, t, h, w = video_bcthw.shape
  u = video_bcthw * IMAGENET_STD[None, :, None, None, None] + IMAGENET_MEAN[None, :, None, None, None]
  u = u.reshape(b, c, t // tubelet, tubelet, h // patch, patch, w // patch, patch)
  u = u.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, -1, tubelet * patch * patch, c)
  u = (u - u.mean(dim=-2, keepdim=True)) / (u.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
  return u.reshape(b, u.shape[1], -1)


def original_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, decode_mask=None) -> torch.Tensor:
  """V1: MSE over encoder-masked tokens. V2: per-token MSE on decoder-kept tokens weighted by the encoder mask."""
  b, _, c = target.shape
  if decode_mask is None:
    labels = target[mask].reshape(b, -1, c)
    return torch.nn.functional.mse_loss(out, labels)
  labels = target[~decode_mask].reshape(b, -1, c)
  per_token = ((out - labels) ** 2).mean(-1)
  w = mask[~decode_mask].reshape(b, -1).float()
  return (per_token * w).sum() / w.sum()


def hf_config(c: ModelConfig, num_labels: int | None = None):
  from transformers import VideoMAEConfig
  kw = dict(image_size=c.img_size, patch_size=c.patch_size, num_channels=c.in_chans, num_frames=c.num_frames,
            tubelet_size=c.tubelet_size, hidden_size=c.embed_dim, num_hidden_layers=c.depth,
            num_attention_heads=c.num_heads, intermediate_size=c.mlp_hidden_dim, hidden_act='gelu',
            layer_norm_eps=1e-6, qkv_bias=c.qkv_bias, norm_pix_loss=True)
  if c.kind == 'pretrain':
    kw.update(use_mean_pooling=False, decoder_hidden_size=c.decoder_embed_dim,
              decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
              decoder_intermediate_size=c.decoder_mlp_hidden_dim)
  else:
    kw.update(use_mean_pooling=c.use_mean_pooling)
  if num_labels is not None:
    kw['num_labels'] = num_labels
  return VideoMAEConfig(**kw)


def hf_pretrain(c: ModelConfig, seed: int = 0):
  from transformers import VideoMAEForPreTraining
  torch.manual_seed(seed)
  m = VideoMAEForPreTraining._from_config(hf_config(c), attn_implementation='eager')
  m.decoder.norm.eps = 1e-6  # HF hard-codes torch's 1e-5 here; the official decoder norm uses 1e-6
  return randomize_(m, seed)


def hf_classifier(c: ModelConfig, seed: int = 0):
  from transformers import VideoMAEForVideoClassification
  torch.manual_seed(seed)
  m = VideoMAEForVideoClassification._from_config(hf_config(c, num_labels=c.num_classes),
                                                  attn_implementation='eager')
  if c.use_mean_pooling:
    m.fc_norm.eps = 1e-6  # HF hard-codes 1e-5; the official fc_norm uses 1e-6
  return randomize_(m, seed)
