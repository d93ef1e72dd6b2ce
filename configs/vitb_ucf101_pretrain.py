"""VideoMAE V1 ViT-B/16 pretraining on UCF101 alone: the official small-data recipe (3200 epochs).

    python -m vmae_jax.main --config=configs/vitb_ucf101_pretrain.py --workdir=DIR \
        --config.data.path=UCF101_LISTS --config.data.root=UCF101_VIDEOS

Reproduces (spec/videomae.md §5.2, "V1 ucf101 ViT-B 3200"): tube masking **0.75**, 16 frames at stride 4, 192 videos
per step (24 × 8 GPUs), base lr **3e-4** → 2.25e-4, warmup 40 of 3201 epochs, AdamW β .9/.95, wd 0.05.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('pretrain')
  c.batch_size = 192
  c.num_epochs = 3201
  c.warmup_epochs = 40
  c.model.update(dict(name='pretrain_videomae_base_patch16_224', version='v1', drop_path_rate=0.0,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, mask_type='tube', mask_ratio=0.75,
                     decoder_mask_type='none'))
  c.optim.update(dict(base_lr=3e-4, min_lr=1e-5, b1=0.9, b2=0.95, weight_decay=0.05))
  # during training: val reconstruction loss + a picture every 2000 steps, kNN top-1 of frozen features every 10000
  c.eval.every_steps = 2000
  c.pretrain.update(dict(picture_every_steps=2000, knn_every_steps=10000, knn_bank_videos=5000))
  c.eval.max_videos = 2000
  return schema.variant(c, arg)
