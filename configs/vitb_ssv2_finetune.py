"""VideoMAE V1 ViT-B/16 fine-tuning on Something-Something V2 from the 800-epoch SSv2 pretraining.

    python -m vmae_jax.main --config=configs/vitb_ssv2_finetune.py --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=SSV2_LISTS --config.data.root=SSV2_VIDEOS

Reproduces (spec/videomae.md §6.1–6.3, "V1 SSv2 B (800e)", reported 69.6 top-1): 512 videos per step (8 × 64),
base lr 5e-4 → 1e-3, layer decay 0.75, drop path 0.1, 50 epochs with 5 warmup, TSN segment sampling (16 segments),
**no horizontal flip** (left/right classes), test 2 clips × 3 crops.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('finetune')
  c.batch_size = 512
  c.num_epochs = 50
  c.warmup_epochs = 5
  c.eval.every_steps = 1000
  c.model.update(dict(name='vit_base_patch16_224', num_classes=174, drop_path_rate=0.1, use_mean_pooling=True,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=2, sampling='segment', num_sample=1, flip=False,
                     test_num_segment=2, test_num_crop=3))
  c.optim.update(dict(base_lr=5e-4, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=0.75))
  c.eval.max_videos = 2000       # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
