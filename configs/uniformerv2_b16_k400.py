"""UniFormerV2-B/16 on Kinetics-400 from CLIP ViT-B/16 (the Kinetics layout: global UniBlocks on the last 4 layers,
no local UniBlocks, no temporal downsampling).

    python -m vmae_jax.convert --src=CLIP_VIT_B16 --dst=ckpt/clip_b16      # HF openai/clip-vit-base-patch16 or OpenAI
    python -m vmae_jax.main --config=configs/uniformerv2_b16_k400.py --workdir=DIR \
        --config.init.checkpoint=ckpt/clip_b16 --config.data.path=K400_LISTS --config.data.root=K400_VIDEOS

Recipe (docs/fidelity.md, "Recipes"; OpenGVLab/UniFormerV2 `k400_b16_f8x224`, reported 84.4 top-1 at 8×3×4): 256
clips per step, AdamW lr 1e-5 (the loop's batch/256 scaling leaves it unchanged at 256), cosine to 1e-6 after 5
warmup epochs, 55 epochs, wd 0.05 on ≥2-D parameters only, global grad-norm clip 20, no mixup / label smoothing /
erasing, RandAugment m7-n4, sparse (segment) sampling of 8 frames, mean 0.45 / std 0.225 (SlowFast's, not CLIP's),
test 4 clips × 3 crops. The original warms up from 1e-6, this loop from 0.
"""
from vmae_jax.constants import UNIFORMERV2_MEAN, UNIFORMERV2_STD  # UniFormerV2 normalises with SlowFast's
from vmae_jax.train import schema


def recipe(name='uniformerv2_b16', version='k400', num_classes=400, frames=8):
  c = schema.defaults('finetune')
  c.batch_size = 256
  c.num_epochs = 55
  c.warmup_epochs = 5
  c.eval.every_steps = 1000
  c.model.update(dict(name=name, version=version, num_classes=num_classes, dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=frames, sampling='segment', num_sample=1, flip=True,
                     rand_augment=True, erase_prob=0.0, mixup=0.0, cutmix=0.0, label_smoothing=0.0,
                     test_num_segment=4, test_num_crop=3, mean=UNIFORMERV2_MEAN, std=UNIFORMERV2_STD))
  c.optim.update(dict(base_lr=1e-5, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=1.0,
                      clip_grad=20.0, decay_rule='ndim'))
  c.eval.max_videos = 2000
  return c


def adapter_smoke(c):
  """:smoke dims for a CLIP adapter: the global blocks / decoder as wide as the tiny backbone."""
  c = schema.make_smoke(c)
  c.model.update(dict(decoder_embed_dim=c.model.embed_dim, decoder_num_heads=2, decoder_depth=2))
  return c


def get_config(arg: str = ''):
  c = recipe()
  return adapter_smoke(c) if arg == 'smoke' else schema.variant(c, arg)
