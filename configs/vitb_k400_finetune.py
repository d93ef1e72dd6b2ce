"""VideoMAE V1 ViT-B/16 fine-tuning on Kinetics-400 from the 800-epoch pretraining.

    python -m vmae_jax.main --config=configs/vitb_k400_finetune.py --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=K400_LISTS --config.data.root=K400_VIDEOS

Reproduces (spec/videomae.md §6.1–6.3, "V1 K400 B (800e pt)", reported 80.0 top-1): 512 videos per step (8 × 64),
num_sample 1, base lr 1e-3 → 2e-3, min lr 1e-6, warmup 5 of 100 epochs, layer decay 0.75, drop path 0.1, AdamW
β .9/.999, wd 0.05, RandAugment m7-n4, random erasing 0.25, Mixup 0.8 / CutMix 1.0 with label smoothing 0.1, dense
16×4 sampling; test 5 clips × 3 crops, softmax per view then the mean.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('finetune')
  c.batch_size = 512
  c.num_epochs = 100
  c.warmup_epochs = 5
  c.eval.every_steps = 1000
  c.model.update(dict(name='vit_base_patch16_224', num_classes=400, drop_path_rate=0.1, use_mean_pooling=True,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, sampling='dense', num_sample=1,
                     test_num_segment=5, test_num_crop=3))
  c.optim.update(dict(base_lr=1e-3, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=0.75))
  c.eval.max_videos = 2000       # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
