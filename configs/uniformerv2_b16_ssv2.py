"""UniFormerV2-B/16 on Something-Something V2 from CLIP ViT-B/16 (the Sth layout: local UniBlocks in every layer,
global UniBlocks on the last 8, 16 frames temporally downsampled to 8, drop path 0.2 backbone / 0.4 global).

    python -m vmae_jax.main --config=configs/uniformerv2_b16_ssv2.py --workdir=DIR \
        --config.init.checkpoint=ckpt/clip_b16 --config.data.path=SSV2_LISTS --config.data.root=SSV2_VIDEOS

Recipe (docs/fidelity.md, "Recipes"; OpenGVLab/UniFormerV2 `ssv2_b16_f16x224`, reported 69.5 top-1 at 16×3×1): 128
videos × 2 repeated augmentations = 256 clips per step, lr 4e-5 for those 256 clips (base_lr 8e-5 here: the loop
scales by videos/256 = 0.5), 22 epochs with 5 warmup, wd 0.05 on ≥2-D parameters, clip 20, **no flip**, sparse
sampling, mean 0.45 / std 0.225, test 1 clip × 3 crops. BatchNorm statistics of the local UniBlocks are trained and
checkpointed with the parameters.
"""
import importlib.util
import os

from vmae_jax.train import schema

_spec = importlib.util.spec_from_file_location('uniformerv2_b16_k400',
                                               os.path.join(os.path.dirname(__file__), 'uniformerv2_b16_k400.py'))
k400 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(k400)


def get_config(arg: str = ''):
  c = k400.recipe(version='ssv2', num_classes=174, frames=16)
  c.batch_size = 128
  c.num_epochs = 22
  c.data.update(dict(num_sample=2, flip=False, test_num_segment=1, test_num_crop=3))
  c.optim.base_lr = 8e-5
  c.optim.min_lr = 2e-6
  return k400.adapter_smoke(c) if arg == 'smoke' else schema.variant(c, arg)
