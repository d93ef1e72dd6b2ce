"""The PyTorch side of `python -m vmae_jax.bench step --compare-torch`: HF transformers VideoMAE with the same dims,
batch and masks, trained by the same kind of step (forward + loss + backward + AdamW), timed the same way.

  v1        `VideoMAEForPreTraining(pixel_values, bool_masked_pos)`: HF's own norm-pix target and MSE loss;
  v2        the dual-masking forward rebuilt from HF submodules (as VideoMAEv2 `models/modeling_pretrain.py` runs
            it): encoder on the visible tokens, decoder on [visible ; mask tokens at the decoder-kept positions],
            per-token MSE weighted by the encoder mask over the kept tokens;
  finetune  `VideoMAEForVideoClassification`, cross-entropy with label smoothing 0.1 on its logits.

SDPA attention; fp32 on CPU, `torch.autocast(bfloat16)` on GPU when the JAX step computes in bf16. Pretraining clips
arrive as uint8 and are normalised inside the step, as ours are. AdamW (foreach) with the decay / no-decay split of
the official recipes. Importing this module imports torch; the JAX harness only does so for --compare-torch.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from vmae_jax.models.config import ModelConfig
from vmae_jax.models.target import IMAGENET_MEAN, IMAGENET_STD


def hf_config(c: ModelConfig):
  """VideoMAEConfig with our dims; pretraining keeps the encoder's final norm (use_mean_pooling=False), as the HF
  conversion of the official checkpoints does."""
  from transformers import VideoMAEConfig
  kw = dict(image_size=c.img_size, patch_size=c.patch_size, num_channels=c.in_chans, num_frames=c.num_frames,
            tubelet_size=c.tubelet_size, hidden_size=c.embed_dim, num_hidden_layers=c.depth,
            num_attention_heads=c.num_heads, intermediate_size=c.mlp_hidden_dim, hidden_act='gelu',
            layer_norm_eps=c.norm_eps, qkv_bias=c.qkv_bias, norm_pix_loss=True)
  if c.kind == 'pretrain':
    kw.update(use_mean_pooling=False, decoder_hidden_size=c.decoder_embed_dim,
              decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
              decoder_intermediate_size=c.decoder_mlp_hidden_dim)
  else:
    kw.update(use_mean_pooling=c.use_mean_pooling, num_labels=c.num_classes)
  return VideoMAEConfig(**kw)


def norm_pix_target(frames: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
  """HF's target: (B, T, C, H, W) in [0, 1] → per-token, per-channel normalised (B, N, t·p·p·C), channel
  fastest."""
  b, t, c, h, w = frames.shape
  x = frames.view(b, t // tubelet, tubelet, c, h // patch, patch, w // patch, patch)
  x = x.permute(0, 1, 4, 6, 2, 5, 7, 3).reshape(b, -1, tubelet * patch * patch, c)
  x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
  return x.reshape(b, x.shape[1], -1)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
  decay, no_decay = [], []
  for name, p in model.named_parameters():
    (no_decay if p.ndim == 1 or name.endswith(('mask_token', 'bias')) else decay).append(p)
  return [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0.0}]


class TorchStep:
  """One HF training step on fixed inputs; `run()` returns its seconds (synchronised on GPU)."""

  def __init__(self, config: ModelConfig, mode: str, batch: dict[str, np.ndarray], *, device: str = 'cpu',
               bf16: bool = False, lr: float = 1e-4, betas=(0.9, 0.999), weight_decay: float = 0.05,
               label_smoothing: float = 0.1, seed: int = 0):
    from transformers import VideoMAEForPreTraining, VideoMAEForVideoClassification
    torch.manual_seed(seed)
    self.config, self.mode, self.device, self.bf16 = config, mode, torch.device(device), bf16
    cls = VideoMAEForVideoClassification if mode == 'finetune' else VideoMAEForPreTraining
    self.model = cls._from_config(hf_config(config), attn_implementation='sdpa').to(self.device).train()
    if mode == 'finetune' and config.use_mean_pooling:
      self.model.fc_norm.eps = config.norm_eps        # HF hard-codes 1e-5; the official fc_norm uses 1e-6
    if mode != 'finetune':
      self.model.decoder.norm.eps = config.norm_eps   # likewise for the decoder norm
    self.optimizer = torch.optim.AdamW(_param_groups(self.model, weight_decay), lr=lr, betas=betas, eps=1e-8)
    self.label_smoothing = label_smoothing
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
    # our clips are (B, T, H, W, C); HF takes (B, T, C, H, W)
    self.video = to(batch['video']).permute(0, 1, 4, 2, 3).contiguous()
    if mode == 'finetune':
      self.label = to(batch['label']).long()
    else:
      self.encoder_mask = to(batch['encoder_mask'])
      if mode == 'v2':
        self.decoder_mask = to(batch['decoder_mask'])
    self.mean = torch.tensor(IMAGENET_MEAN, device=self.device)[None, None, :, None, None]
    self.std = torch.tensor(IMAGENET_STD, device=self.device)[None, None, :, None, None]
    self.losses: list[float] = []
    self.peak_bytes = 0

  def _loss(self) -> torch.Tensor:
    if self.mode == 'finetune':
      logits = self.model(self.video).logits
      return F.cross_entropy(logits.float(), self.label, label_smoothing=self.label_smoothing)
    pixels = (self.video.float() / 255.0 - self.mean) / self.std
    if self.mode == 'v1':
      return self.model(pixels, bool_masked_pos=self.encoder_mask).loss
    return self._v2_loss(pixels)

  def _v2_loss(self, pixels: torch.Tensor) -> torch.Tensor:
    hf, mask, decode_mask = self.model, self.encoder_mask, self.decoder_mask
    b = pixels.shape[0]
    vis = hf.encoder_to_decoder(hf.videomae(pixels, bool_masked_pos=mask).last_hidden_state)
    dd = vis.shape[-1]
    pos = hf.position_embeddings.expand(b, -1, -1).type_as(vis).to(self.device)
    kept = ~decode_mask
    dec_in = torch.cat([vis + pos[~mask].reshape(b, -1, dd), hf.mask_token + pos[kept].reshape(b, -1, dd)], 1)
    pred = hf.decoder(dec_in, int(kept[0].sum())).logits
    with torch.no_grad():
      target = norm_pix_target(pixels * self.std + self.mean, self.config.tubelet_size, self.config.patch_size)
      labels = target[kept].reshape(b, -1, target.shape[-1])
      weight = mask[kept].reshape(b, -1).float()
    per_token = ((pred.float() - labels) ** 2).mean(-1)
    return (per_token * weight).sum() / weight.sum()

  def _sync(self):
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)

  def run(self) -> float:
    self._sync()
    t0 = time.perf_counter()
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
      loss = self._loss()
    loss.backward()
    self.optimizer.step()
    self._sync()
    elapsed = time.perf_counter() - t0
    self.losses.append(float(loss.detach()))
    if self.device.type == 'cuda':
      self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
    return elapsed
