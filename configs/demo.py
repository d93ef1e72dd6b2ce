"""The embedded demo (the README's main job): pretraining beats scratch on a small labelled set, on a CPU.

    python -m vmae_jax.main --config=configs/demo.py --workdir=DIR
    python -m vmae_jax.main --config=configs/demo.py:smoke --workdir=DIR     # the same stages in seconds (tests)

Generates the synthetic motion dataset (8 classes that differ only in how one object moves), pretrains a small
ViT with V2 dual masking (tube 0.9 + running cell 0.5, repeated sampling 2) on all 640 training clips without
labels, fine-tunes it on a labelled subset (the first 20 training clips of each class, 160 clips: the paper's
small-data setting, where the gain comes from self-supervision on the same clips), evaluates on the 160 val clips
(2 temporal clips each, softmax per view then the mean), and trains the same classifier from scratch with the same
fine-tune budget. Writes DIR/summary.json (pretrained_top1, scratch_top1). Figures and timings: BENCHMARKS.md.

Differences from the official recipes, each for this data and budget (BENCHMARKS.md has what was tried):
- an easier look of the synthetic clips (background contrast 0.15, larger objects, longer travel): with the
  default look no model, even trained on every label, rose above chance within minutes;
- raw-pixel reconstruction target (`pretrain.norm_target=False`): per-patch normalisation turns the smooth,
  near-flat background patches into unit-variance codec noise and the loss never fell below 0.97;
- fine-tuning without flip (left/right are classes), RandAugment, erasing, Mixup/CutMix or label smoothing; the
  random-resized crop keeps its official (0.08, 1) area range (a full-frame crop let both models memorise the 160
  clips: 19–24 % val top-1, no gain);
- learning rates set as peaks for these small batches (base = peak · 256 / batch).
"""
import ml_collections

from vmae_jax.train import schema

SYNTHETIC = dict(num_classes=8, clips_per_class=100, num_frames=18, size=64, val_fraction=0.2, test_fraction=0.0,
                 background_contrast=0.15, radius_range=(0.15, 0.3), travel_range=(0.5, 0.8))
SMOKE_SYNTHETIC = dict(num_classes=4, clips_per_class=6, num_frames=12, size=48, val_fraction=0.2,
                       test_fraction=0.0, background_contrast=0.15, radius_range=(0.15, 0.3),
                       travel_range=(0.5, 0.8))


def _common(c, smoke: bool):
  d = c.data
  d.source = 'synthetic'
  d.synthetic.update(SMOKE_SYNTHETIC if smoke else SYNTHETIC)
  d.num_frames, d.sampling_rate, d.input_size, d.short_side = (4, 2, 32, 32) if smoke else (8, 2, 64, 64)
  d.sampling = 'pretrain'        # a random 16-frame window at stride 2 (test: 2 windows, start and end)
  d.test_num_segment, d.test_num_crop = 2, 1   # square frames at the input size: 3 crops would be one crop 3 times
  d.workers = 1 if not smoke else 0
  c.model.update(dict(patch_size=16 if not smoke else 8, embed_dim=96 if not smoke else 32,
                      depth=4 if not smoke else 2, num_heads=3 if not smoke else 2, mlp_ratio=4.0,
                      drop_path_rate=0.0, dtype='float32'))
  c.eval.update(dict(batch_size=16 if not smoke else 8, every_steps=0))
  c.checkpoint_every_minutes = 0.0 if smoke else 30.0   # smoke: saves at fixed steps only, on any machine


def get_config(arg: str = ''):
  if arg not in ('', 'smoke'):
    raise ValueError(f"config argument {arg!r} unknown; use '' or 'smoke'")
  smoke = arg == 'smoke'
  steps = (lambda full, tiny: tiny if smoke else full)

  pre = schema.defaults('pretrain')
  pre.model.update(dict(name='pretrain_videomae_small_patch16_224', version='v1', decoder_embed_dim=64 if not smoke
                        else 32, decoder_depth=1, decoder_num_heads=2))
  _common(pre, smoke)
  pre.data.update(dict(num_sample=2, mask_type='tube', mask_ratio=0.9, decoder_mask_type='run_cell',
                       decoder_mask_ratio=0.5))
  pre.batch_size = steps(16, 8)
  pre.num_train_steps = steps(800, 4)
  pre.warmup_steps = steps(40, 1)
  pre.optim.update(dict(base_lr=1.5e-3 * 256 / pre.batch_size, min_lr=1.5e-5 * 256 / pre.batch_size))
  pre.checkpoint_every_steps = steps(400, 2)
  pre.log_every_steps = steps(100, 1)
  pre.pretrain.update(dict(norm_target=False, val_batches=2, picture_every_steps=steps(400, 2)))

  fine = schema.defaults('finetune')
  fine.model.update(dict(name='vit_small_patch16_224', num_classes=(SMOKE_SYNTHETIC if smoke else
                                                                     SYNTHETIC)['num_classes']))
  _common(fine, smoke)
  fine.data.update(dict(subset_per_class=steps(20, 2), flip=False, rand_augment=False, erase_prob=0.0,
                        mixup=0.0, cutmix=0.0, label_smoothing=0.0))
  fine.batch_size = steps(32, 8)
  fine.num_train_steps = steps(400, 4)
  fine.warmup_steps = steps(30, 1)
  fine.optim.update(dict(base_lr=5e-3 * 256 / fine.batch_size, min_lr=5e-5 * 256 / fine.batch_size,
                         layer_decay=0.75))
  fine.checkpoint_every_steps = steps(200, 2)
  fine.log_every_steps = steps(100, 1)

  c = ml_collections.ConfigDict()
  c.task = 'demo'
  c.seed = 0
  c.pretrain = pre
  c.finetune = fine
  return c
