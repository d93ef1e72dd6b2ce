"""VideoMAE V1 ViT-B/16 fine-tuning, one recipe per dataset (`:dataset=k400|ssv2|ucf101`, default k400; add
`,smoke` for the tiny synthetic run of the same code path, e.g. `:dataset=ucf101,smoke` or `:smoke`), each from
the same dataset's pretraining (configs/vitb_pretrain.py).

    python -m vmae_jax.main --config=configs/vitb_finetune.py:dataset=k400 --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=K400_LISTS --config.data.root=K400_VIDEOS
    python -m vmae_jax.main --config=configs/vitb_finetune.py:dataset=ssv2 --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=SSV2_LISTS --config.data.root=SSV2_VIDEOS
    python -m vmae_jax.main --config=configs/vitb_finetune.py:dataset=ucf101 --workdir=DIR \
        --config.init.checkpoint=PRETRAIN_WORKDIR --config.data.path=UCF_LISTS --config.data.root=UCF_VIDEOS

Reproduces (docs/fidelity.md, "Recipes"; the official scripts of MCG-NJU/VideoMAE named below):
- k400, from the 800-epoch pretraining ("V1 K400 B (800e pt)", reported 80.0 top-1;
  scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/finetune.sh): 512 videos per step
  (8 × 64), num_sample 1, base lr 1e-3 → 2e-3, min lr 1e-6, warmup 5 of 100 epochs, layer decay 0.75, drop path
  0.1, AdamW β .9/.999, wd 0.05, RandAugment m7-n4, random erasing 0.25, Mixup 0.8 / CutMix 1.0 with label
  smoothing 0.1, dense 16×4 sampling; test 5 clips × 3 crops, softmax per view then the mean.
- ssv2, from the 800-epoch SSv2 pretraining ("V1 SSv2 B (800e)", reported 69.6 top-1;
  scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/finetune.sh): 512 videos per step
  (8 × 64), base lr 5e-4 → 1e-3, layer decay 0.75, drop path 0.1, 50 epochs with 5 warmup, TSN segment sampling
  (16 segments), **no horizontal flip** (left/right classes), test 2 clips × 3 crops.
- ucf101, from the UCF101-only pretraining, the small-data result ("V1 UCF101 B (3200e UCF pt)", reported 91.3
  top-1; scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/finetune.sh): 128 videos
  per step (16 × 8) with num_sample 2, base lr 5e-4 → 2.5e-4, min lr 1e-5, layer decay 0.7, drop path 0.2, head
  dropout 0.5, 100 epochs with 5 warmup, dense 16×4 sampling, test 5 × 3.
"""
from vmae_jax.train import schema

# what the datasets' recipes change; everything else is shared (get_config)
RECIPES = {
    'k400': dict(
        batch_size=512, num_epochs=100, eval_every_steps=1000,
        model=dict(num_classes=400, drop_path_rate=0.1),
        data=dict(sampling_rate=4, sampling='dense', num_sample=1, test_num_segment=5, test_num_crop=3),
        optim=dict(base_lr=1e-3, min_lr=1e-6, layer_decay=0.75)),
    'ssv2': dict(
        batch_size=512, num_epochs=50, eval_every_steps=1000,
        model=dict(num_classes=174, drop_path_rate=0.1),
        data=dict(sampling_rate=2, sampling='segment', num_sample=1, flip=False, test_num_segment=2,
                  test_num_crop=3),
        optim=dict(base_lr=5e-4, min_lr=1e-6, layer_decay=0.75)),
    'ucf101': dict(
        batch_size=128, num_epochs=100, eval_every_steps=200,
        model=dict(num_classes=101, drop_path_rate=0.2, head_drop_rate=0.5),
        data=dict(sampling_rate=4, sampling='dense', num_sample=2, test_num_segment=5, test_num_crop=3),
        optim=dict(base_lr=5e-4, min_lr=1e-5, layer_decay=0.7)),
}


def get_config(arg: str = ''):
  a = schema.parse_arg(arg, dataset=tuple(RECIPES), smoke=False)
  r = RECIPES[a.dataset]
  c = schema.defaults('finetune')
  c.batch_size = r['batch_size']
  c.num_epochs = r['num_epochs']
  c.warmup_epochs = 5
  c.eval.every_steps = r['eval_every_steps']
  c.model.update(dict(name='vit_base_patch16_224', use_mean_pooling=True, dtype='bfloat16', **r['model']))
  c.data.update(dict(source='list', num_frames=16, **r['data']))
  c.optim.update(dict(b1=0.9, b2=0.999, weight_decay=0.05, **r['optim']))
  c.eval.max_videos = 2000   # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, 'smoke' if a.smoke else '')
