"""The embedded demo (the README's main job): pretraining beats scratch on a small labelled set, on a CPU.

    python -m vmae_jax.main --config=configs/demo.py --workdir=DIR

Generates the synthetic motion dataset (classes differ only in how an object moves), pretrains a small ViT with V2
dual masking (tube 0.9 + running cell 0.5) on all training clips without labels, fine-tunes it on a labelled
subset of those clips, evaluates multi-view on the val split, and trains the same classifier from scratch with the
same fine-tune budget. Writes DIR/summary.json (pretrained_top1, scratch_top1). Like the paper's small-data
setting (UCF101/HMDB51 without extra data), the gain comes from self-supervision on the same clips.
Figures and timings: BENCHMARKS.md.
"""
import ml_collections

from vmae_jax import train_config

SYNTHETIC = dict(num_classes=8, clips_per_class=160, num_frames=40, size=96)


def _data(c, smoke: bool):
  d = c.data
  d.source = 'synthetic'
  d.synthetic.update(SYNTHETIC if not smoke else dict(num_classes=4, clips_per_class=6, num_frames=12, size=48))
  d.num_frames, d.sampling_rate, d.input_size, d.short_side = (8, 4, 64, 64) if not smoke else (4, 2, 32, 32)
  d.test_num_segment, d.test_num_crop = 2, 2
  d.workers = 0


def _model(c, smoke: bool):
  c.model.update(dict(patch_size=16 if not smoke else 8, embed_dim=128 if not smoke else 32, depth=4 if not smoke
                      else 2, num_heads=4 if not smoke else 2, mlp_ratio=4.0, dtype='float32'))


def get_config(arg: str = ''):
  if arg not in ('', 'smoke'):
    raise ValueError(f"config argument {arg!r} unknown; use '' or 'smoke'")
  smoke = arg == 'smoke'
  pre = train_config.defaults('pretrain')
  pre.model.update(dict(name='pretrain_videomae_small_patch16_224', version='v1', decoder_embed_dim=64,
                        decoder_depth=1, decoder_num_heads=2))
  _model(pre, smoke)
  _data(pre, smoke)
  pre.data.update(dict(mask_type='tube', mask_ratio=0.9, decoder_mask_type='run_cell', decoder_mask_ratio=0.5))
  pre.batch_size = 32 if not smoke else 8
  pre.num_train_steps = 600 if not smoke else 4
  pre.warmup_steps = 40 if not smoke else 1
  pre.optim.update(dict(base_lr=1.5e-3, min_lr=1e-5))
  pre.checkpoint_every_steps = 200 if not smoke else 2
  pre.log_every_steps = 50 if not smoke else 1
  pre.eval.update(dict(batch_size=8, every_steps=0))
  pre.pretrain.update(dict(val_batches=2, picture_every_steps=0))

  fine = train_config.defaults('finetune')
  fine.model.update(dict(name='vit_small_patch16_224', num_classes=SYNTHETIC['num_classes'] if not smoke else 4,
                         drop_path_rate=0.1))
  _model(fine, smoke)
  _data(fine, smoke)
  fine.data.update(dict(sampling='dense', subset_per_class=16 if not smoke else 2, rand_augment=False,
                        mixup=0.0, cutmix=0.0))
  fine.batch_size = 16 if not smoke else 8
  fine.num_train_steps = 300 if not smoke else 4
  fine.warmup_steps = 30 if not smoke else 1
  fine.optim.update(dict(base_lr=1e-3, min_lr=1e-6, layer_decay=0.75))
  fine.checkpoint_every_steps = 100 if not smoke else 2
  fine.log_every_steps = 50 if not smoke else 1
  fine.eval.update(dict(batch_size=8, every_steps=0))

  c = ml_collections.ConfigDict()
  c.task = 'demo'
  c.seed = 0
  c.pretrain = pre
  c.finetune = fine
  return c
