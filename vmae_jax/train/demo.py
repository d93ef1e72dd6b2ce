"""The embedded demo: VideoMAE's data-efficiency claim on a CPU in minutes.

    python -m vmae_jax.main --config=configs/demo.py --workdir=DIR

Stages, each a normal training run in its own sub-workdir (so a killed demo resumes where it stopped):
1. `pretrain/`: a small ViT pretrained with V2 dual masking on every training clip of the synthetic motion
   dataset, labels unused;
2. `finetune_pretrained/`: fine-tuned from that encoder on a labelled subset (`finetune.data.subset_per_class`
   clips per class), then evaluated multi-view on the val split;
3. `finetune_scratch/`: the same classifier, budget and data, from random initialisation.
`DIR/summary.json` holds `pretrained_top1`, `scratch_top1` (percent), their difference and the time of each stage.
A stage's time is the training time it really took: each stage keeps its own total in `<stage>/demo_seconds.json`,
added to only by runs that trained, so re-running a finished demo (a no-op) does not overwrite the figures with
near-zero times, and a killed and resumed stage counts both of its parts.
"""
from __future__ import annotations

import json
import os
import time

import ml_collections

from vmae_jax.models.config import ConfigError

STAGES = ('pretrain', 'finetune')
SECONDS_FILE = 'demo_seconds.json'


def _stage_seconds(stage_dir: str, elapsed: float, trained: bool) -> float:
  """The stage's total training seconds, `elapsed` added when this run trained (written atomically)."""
  path = os.path.join(stage_dir, SECONDS_FILE)
  total = 0.0
  if os.path.exists(path):
    with open(path) as f:
      total = float(json.load(f)['seconds'])
  if trained:
    total += elapsed
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      json.dump({'seconds': total}, f)
    os.replace(tmp, path)
  return round(total, 1)


def stage_configs(config, workdir: str) -> dict[str, ml_collections.ConfigDict]:
  """The three runs of the demo (sub-workdir name → training config)."""
  unknown = sorted(set(config.keys()) - {'task', 'seed', *STAGES})
  if unknown:
    raise ConfigError(f'unknown config field {unknown[0]!r} (the demo config has task, seed, pretrain, finetune)')
  pre = ml_collections.ConfigDict(config.pretrain.to_dict())
  fine = ml_collections.ConfigDict(config.finetune.to_dict())
  if pre.task != 'pretrain' or fine.task != 'finetune':
    raise ConfigError('config fields pretrain.task / finetune.task must be pretrain / finetune')
  pre.seed = fine.seed = config.seed
  scratch = ml_collections.ConfigDict(fine.to_dict())
  fine.init.checkpoint = os.path.join(workdir, 'pretrain')
  scratch.init.checkpoint = ''
  return {'pretrain': pre, 'finetune_pretrained': fine, 'finetune_scratch': scratch}


def run(config, workdir: str) -> dict:
  from vmae_jax.train.trainer import RESULTS_FILE, Trainer
  workdir = os.path.abspath(workdir)
  stages = stage_configs(config, workdir)
  # Building every Trainer checks every stage's config before the first stage starts.
  trainers = {name: Trainer(cfg, os.path.join(workdir, name)) for name, cfg in stages.items()}
  os.makedirs(workdir, exist_ok=True)
  results, seconds = {}, {}
  for name, trainer in trainers.items():
    print(f'=== demo stage {name} ===', flush=True)
    trains = not os.path.exists(os.path.join(trainer.workdir, RESULTS_FILE))   # else: finished earlier, a no-op
    start = time.time()
    results[name] = trainer.run()
    seconds[name] = _stage_seconds(trainer.workdir, time.time() - start, trains)
  fine = stages['finetune_pretrained']
  summary = {
      'pretrained_top1': results['finetune_pretrained']['eval/top1'],
      'scratch_top1': results['finetune_scratch']['eval/top1'],
      'pretrained_top5': results['finetune_pretrained']['eval/top5'],
      'scratch_top5': results['finetune_scratch']['eval/top5'],
      'pretrain_val_loss': results['pretrain'].get('val/loss'),
      'val_videos': results['finetune_pretrained']['eval/videos'],
      'finetune_clips_per_class': fine.data.subset_per_class,
      'eval_views': f'{fine.data.test_num_segment}x{fine.data.test_num_crop}',
      'seconds': seconds,
  }
  summary['margin'] = summary['pretrained_top1'] - summary['scratch_top1']
  with open(os.path.join(workdir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  print(f'demo: pretrained top-1 {summary["pretrained_top1"]:.1f}%, scratch top-1 {summary["scratch_top1"]:.1f}% '
        f'(margin {summary["margin"]:+.1f} points; stage seconds {seconds}); {workdir}/summary.json', flush=True)
  return summary
