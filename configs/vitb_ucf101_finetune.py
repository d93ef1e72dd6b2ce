"""VideoMAE V1 ViT-B/16 fine-tuning on UCF101 from the UCF101-only pretraining (the small-data result).

    python -m vmae_jax.main --config=configs/vitb_ucf101_finetune.py --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=UCF_LISTS --config.data.root=UCF_VIDEOS

Reproduces (spec/videomae.md §6.3, "V1 UCF101 B (3200e UCF pt)", reported 91.3 top-1): 128 videos per step
(16 × 8) with num_sample 2, base lr 5e-4 → 2.5e-4, min lr 1e-5, layer decay 0.7, drop path 0.2, head dropout 0.5,
100 epochs with 5 warmup, dense 16×4 sampling, test 5 × 3.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('finetune')
  c.batch_size = 128
  c.num_epochs = 100
  c.warmup_epochs = 5
  c.eval.every_steps = 200
  c.model.update(dict(name='vit_base_patch16_224', num_classes=101, drop_path_rate=0.2, head_drop_rate=0.5,
                      use_mean_pooling=True, dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, sampling='dense', num_sample=2,
                     test_num_segment=5, test_num_crop=3))
  c.optim.update(dict(base_lr=5e-4, min_lr=1e-5, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=0.7))
  c.eval.max_videos = 2000       # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
