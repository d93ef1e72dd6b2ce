"""VideoMAE V2 ViT-g/14: the short K400 fine-tune from the K710 post-pretrained model (stage 3).

    python -m vmae_jax.main --config=configs/vitg_k400_finetune.py --workdir=DIR \
        --config.init.checkpoint=K710_WORKDIR --config.data.path=K400_LISTS --config.data.root=VIDEOS

Reproduces (docs/fidelity.md, "Recipes": "V2 vit_g_k710_it_k400", reported 88.4 / 98.0): 96 videos per step (3 × 32)
with num_sample 2, base lr **1e-5** → 3.75e-6, layer decay 0.9, drop path 0.25, wd 0.1, **3 epochs with 1 warmup**;
the 710-class head becomes a 400-class head by class name (`init.head_remap='k710:k400'`, the class lists shipped
with the package; = the official label_710to400.json map of OpenGVLab/VideoMAEv2).
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('finetune')
  c.batch_size = 96
  c.num_epochs = 3
  c.warmup_epochs = 1
  c.eval.every_steps = 2000
  c.model.update(dict(name='vit_giant_patch14_224', num_classes=400, drop_path_rate=0.25, use_mean_pooling=True,
                      dtype='bfloat16', remat_policy='nothing_saveable'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, sampling='dense', num_sample=2,
                     test_num_segment=5, test_num_crop=3))
  c.optim.update(dict(base_lr=1e-5, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.1, layer_decay=0.9))
  c.init.head_remap = 'k710:k400'
  c.eval.max_videos = 2000   # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
