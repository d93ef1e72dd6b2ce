"""EVL ViT-B/16 on Kinetics-400: frozen CLIP ViT-B/16, a 4-layer decoder over its last 4 blocks.

    python -m vmae_jax.main --config=configs/evl_b16_k400.py --workdir=DIR \
        --config.init.checkpoint=ckpt/clip_b16 --config.data.path=K400_LISTS --config.data.root=K400_VIDEOS

Recipe (docs/fidelity.md, "Recipes"; OpenGVLab/efficient-video-recognition
scripts/train_k400_vitb16_8f_dec4x768.sh, reported 82.8 top-1 at 8 frames, 1 crop × 3 clips): 256 clips per step for
50,000 steps, AdamW lr 4e-4 cosine to 0 with no warmup, wd 0.05 on every trained parameter, no clipping, dense
sampling 8 × 16, RandAugment m7-n4, no flip, no mixup / label smoothing, CLIP's mean/std. The backbone gets no
gradient and no optimizer state (model.freeze_backbone, the EVL default).
"""
from vmae_jax.constants import CLIP_MEAN, CLIP_STD
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('finetune')
  c.batch_size = 256
  c.num_train_steps = 50_000
  c.warmup_steps = 0
  c.eval.every_steps = 5000
  c.model.update(dict(name='evl_b16', num_classes=400, dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=8, sampling_rate=16, sampling='dense', num_sample=1, flip=False,
                     rand_augment=True, erase_prob=0.0, mixup=0.0, cutmix=0.0, label_smoothing=0.0,
                     test_num_segment=3, test_num_crop=1, mean=CLIP_MEAN, std=CLIP_STD))
  c.optim.update(dict(base_lr=4e-4, min_lr=0.0, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=1.0,
                      clip_grad=0.0, decay_rule='all'))
  c.eval.max_videos = 2000
  if arg == 'smoke':
    c = schema.make_smoke(c)
    c.model.update(dict(decoder_embed_dim=c.model.embed_dim, decoder_num_heads=2, decoder_depth=2))
    return c
  return schema.variant(c, arg)
