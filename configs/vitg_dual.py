"""VideoMAE V2 ViT-g/14 dual-masking pretraining: the official `vit_g_hybrid_pt_1200e` recipe.

    python -m vmae_jax.main --config=configs/vitg_dual.py --workdir=gs://BUCKET/vitg_dual

Reproduces (spec/videomae.md §5): scripts/pretrain/vit_g_hybrid_pt.sh of OpenGVLab/VideoMAEv2 — tube masking 0.9 +
running-cell decoder masking 0.5, 16 frames at stride 4, 2048 clips per step (32 per GPU × 64 A100-80G) with each
clip augmented 4 times (num_sample 4, not counted in the lr scaling), AdamW β .9/.95, wd 0.05, base lr 6e-4 →
4.8e-3 at 2048, min lr 1e-5 → 8e-5, 30 warmup of 300 epochs ("1200e"), gradient clipping 0.02, activation
checkpointing on every block. 1,026,306,560 parameters.
"""
import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'pretrain'
  c.seed = 0
  c.batch_size = 2048              # global, before num_sample repeats
  c.num_epochs = 300
  c.warmup_epochs = 30
  c.num_train_steps = -1           # > 0 overrides epochs
  c.checkpoint_every_steps = 1000
  c.mesh_shape = (-1, 1, 1)        # (data, fsdp, tensor); -1 fills the rest

  c.model = ml_collections.ConfigDict(dict(
      name='pretrain_videomae_giant_patch14_224', version='v2',
      img_size=224, patch_size=14, tubelet_size=2, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11,
      qkv_bias=True, decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=8, drop_path_rate=0.0,
      dtype='bfloat16', attention='auto', remat_policy='nothing_saveable'))

  c.data = ml_collections.ConfigDict(dict(
      source='list', path='', root='', num_frames=16, sampling_rate=4, num_sample=4,
      mask_type='tube', mask_ratio=0.9, decoder_mask_type='run_cell', decoder_mask_ratio=0.5))

  c.optim = ml_collections.ConfigDict(dict(
      name='adamw', base_lr=6e-4, min_lr=1e-5, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.05, clip_grad=0.02))
  return c
