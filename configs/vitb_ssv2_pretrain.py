"""VideoMAE V1 ViT-B/16 pretraining on Something-Something V2: the official `ssv2 ViT-B 800` recipe.

    python -m vmae_jax.main --config=configs/vitb_ssv2_pretrain.py --workdir=DIR \
        --config.data.path=SSV2_LISTS --config.data.root=SSV2_VIDEOS

Reproduces (spec/videomae.md §5.2, "V1 ssv2 ViT-B 800 / 2400"): tube masking 0.9, 16 frames at stride **2**, 2048
videos per step (32 × 64), lr 1.5e-4 → 1.2e-3, warmup 40 of 801 epochs (2401 for the long schedule:
--config.num_epochs=2401), AdamW β .9/.95, wd 0.05.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('pretrain')
  c.batch_size = 2048
  c.num_epochs = 801
  c.warmup_epochs = 40
  c.model.update(dict(name='pretrain_videomae_base_patch16_224', version='v1', drop_path_rate=0.0,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=2, mask_type='tube', mask_ratio=0.9,
                     decoder_mask_type='none'))
  c.optim.update(dict(base_lr=1.5e-4, min_lr=1e-5, b1=0.9, b2=0.95, weight_decay=0.05))
  # during training: val reconstruction loss + a picture every 2000 steps, kNN top-1 of frozen features every 10000
  c.eval.every_steps = 2000
  c.pretrain.update(dict(picture_every_steps=2000, knn_every_steps=10000, knn_bank_videos=5000))
  c.eval.max_videos = 2000
  return schema.variant(c, arg)
