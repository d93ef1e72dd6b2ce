"""VideoMAE V2 ViT-g/14 dual-masking pretraining: the official `vit_g_hybrid_pt_1200e` recipe.

    python -m vmae_jax.main --config=configs/vitg_dual.py --workdir=/mnt/runs/vitg_dual \
        --config.data.path=LISTS --config.data.root=VIDEOS
    python -m vmae_jax.main --config=configs/vitg_dual.py:smoke --workdir=/tmp/vitg_dual_smoke

Reproduces (docs/fidelity.md, "Recipes"): OpenGVLab/VideoMAEv2 scripts/pretrain/vit_g_hybrid_pt.sh — tube masking
0.9 + running-cell decoder masking 0.5, 16 frames at stride 4, 2048 videos per step (32 per GPU × 64 A100-80G), each
augmented 4 times (num_sample 4, not counted in the lr scaling), AdamW β .9/.95, wd 0.05, base lr 6e-4 → 4.8e-3 at
2048, min lr 1e-5 → 8e-5, 30 warmup of 300 epochs ("1200e"), gradient clipping 0.02, activation checkpointing on
every block. 1,026,306,560 parameters.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('pretrain')
  c.batch_size = 2048
  c.num_epochs = 300
  c.warmup_epochs = 30
  c.checkpoint_every_steps = 1000
  c.model.update(dict(
      name='pretrain_videomae_giant_patch14_224', version='v2',
      patch_size=14, tubelet_size=2, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11,
      qkv_bias=True, decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=8, drop_path_rate=0.0,
      dtype='bfloat16', attention='auto', remat_policy='nothing_saveable'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, num_sample=4,
                     mask_type='tube', mask_ratio=0.9, decoder_mask_type='run_cell', decoder_mask_ratio=0.5))
  c.optim.update(dict(base_lr=6e-4, min_lr=1e-5, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.05, clip_grad=0.02))
  # during training: val reconstruction loss + a picture every 2000 steps, kNN top-1 of frozen features every 10000
  c.eval.every_steps = 2000
  c.pretrain.update(dict(picture_every_steps=2000, knn_every_steps=10000, knn_bank_videos=5000))
  c.eval.max_videos = 2000
  return schema.variant(c, arg)
