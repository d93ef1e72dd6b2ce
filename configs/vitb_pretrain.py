"""VideoMAE V1 ViT-B/16 pretraining, one recipe per dataset (`:dataset=k400|ssv2|ucf101`, default k400; add
`,smoke` for the tiny synthetic run of the same code path, e.g. `:dataset=ssv2,smoke` or `:smoke`).

    python -m vmae_jax.main --config=configs/vitb_pretrain.py:dataset=k400 --workdir=DIR \
        --config.data.path=K400_LISTS --config.data.root=K400_VIDEOS
    python -m vmae_jax.main --config=configs/vitb_pretrain.py:dataset=ssv2 --workdir=DIR \
        --config.data.path=SSV2_LISTS --config.data.root=SSV2_VIDEOS
    python -m vmae_jax.main --config=configs/vitb_pretrain.py:dataset=ucf101 --workdir=DIR \
        --config.data.path=UCF101_LISTS --config.data.root=UCF101_VIDEOS

Reproduces (docs/fidelity.md, "Recipes"; the official scripts of MCG-NJU/VideoMAE named below):
- k400, the official `pretrain/vit_base` 800-epoch recipe ("V1 kinetics ViT-B 800",
  scripts/kinetics/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh): tube masking 0.9,
  decoder depth 4, 16 frames at stride 4, 2048 videos per step (32 × 64 GPUs), base lr 1.5e-4 → 1.2e-3, min lr
  1e-5 (scaled), warmup 40 of 801 epochs, AdamW β .9/.95, wd 0.05, no clipping, multi-scale crop only (no flip).
- ssv2, the official `ssv2 ViT-B 800` recipe ("V1 ssv2 ViT-B 800 / 2400",
  scripts/ssv2/videomae_vit_base_patch16_224_tubemasking_ratio_0.9_epoch_800/pretrain.sh): tube masking 0.9, 16
  frames at stride **2**, 2048 videos per step (32 × 64), lr 1.5e-4 → 1.2e-3, warmup 40 of 801 epochs (2401 for
  the long schedule: --config.num_epochs=2401), AdamW β .9/.95, wd 0.05.
- ucf101, the official small-data recipe on UCF101 alone, 3200 epochs ("V1 ucf101 ViT-B 3200",
  scripts/ucf101/videomae_vit_base_patch16_224_tubemasking_ratio_0.75_epoch_3200/pretrain.sh): tube masking
  **0.75**, 16 frames at stride 4, 192 videos per step (24 × 8 GPUs), base lr **3e-4** → 2.25e-4, warmup 40 of
  3201 epochs, AdamW β .9/.95, wd 0.05.
"""
from vmae_jax.train import schema

# what the datasets' recipes change; everything else is shared (get_config)
RECIPES = {
    'k400': dict(batch_size=2048, num_epochs=801, sampling_rate=4, mask_ratio=0.9, base_lr=1.5e-4),
    'ssv2': dict(batch_size=2048, num_epochs=801, sampling_rate=2, mask_ratio=0.9, base_lr=1.5e-4),
    'ucf101': dict(batch_size=192, num_epochs=3201, sampling_rate=4, mask_ratio=0.75, base_lr=3e-4),
}


def get_config(arg: str = ''):
  a = schema.parse_arg(arg, dataset=tuple(RECIPES), smoke=False)
  r = RECIPES[a.dataset]
  c = schema.defaults('pretrain')
  c.batch_size = r['batch_size']
  c.num_epochs = r['num_epochs']
  c.warmup_epochs = 40
  c.model.update(dict(name='pretrain_videomae_base_patch16_224', version='v1', drop_path_rate=0.0,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=r['sampling_rate'], mask_type='tube',
                     mask_ratio=r['mask_ratio'], decoder_mask_type='none'))
  c.optim.update(dict(base_lr=r['base_lr'], min_lr=1e-5, b1=0.9, b2=0.95, weight_decay=0.05))
  # during training: val reconstruction loss + a picture every 2000 steps, kNN top-1 of frozen features every 10000
  c.eval.every_steps = 2000
  c.pretrain.update(dict(picture_every_steps=2000, knn_every_steps=10000, knn_bank_videos=5000))
  c.eval.max_videos = 2000
  return schema.variant(c, 'smoke' if a.smoke else '')
