"""VideoMAE V2 ViT-g/14 post-pretraining: supervised on Kinetics-710 (stage 2 of V2's progressive training).

    python -m vmae_jax.main --config=configs/vitg_k710_postpretrain.py --workdir=DIR \
        --config.init.checkpoint=VITG_DUAL_WORKDIR --config.data.path=K710_LISTS --config.data.root=VIDEOS

Reproduces (docs/fidelity.md, "Recipes": "V2 vit_g_k710 (post-pretrain)", reported 83.8 top-1 on K710): 96
videos per step (3 × 32) with num_sample 2, base lr 1e-3 → 3.75e-4, layer decay 0.9, drop path 0.3, wd **0.1**,
gradient clipping **5.0**, 35 epochs with 5 warmup, 710 classes (K400 ∪ K600 ∪ K700, de-duplicated), dense 16×4,
test 5 × 3. The official repo runs this with run_class_finetuning.py; here it is the same classification task.
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('postpretrain')
  c.batch_size = 96
  c.num_epochs = 35
  c.warmup_epochs = 5
  c.eval.every_steps = 2000
  c.model.update(dict(name='vit_giant_patch14_224', num_classes=710, drop_path_rate=0.3, use_mean_pooling=True,
                      dtype='bfloat16', remat_policy='nothing_saveable'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, sampling='dense', num_sample=2,
                     test_num_segment=5, test_num_crop=3))
  c.optim.update(dict(base_lr=1e-3, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.1, layer_decay=0.9,
                      clip_grad=5.0))
  c.eval.max_videos = 2000   # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
