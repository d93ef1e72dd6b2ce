"""The training config: one schema for every task, checked field by field before anything is built or compiled.

A config file (`configs/*.py`) starts from `defaults(task)` and changes what its recipe changes. `check(config)`
refuses unknown fields (with a did-you-mean), wrong types, values outside their range (`LIMITS`, one table beside
the defaults) and inconsistent values with the field named, so a typo costs seconds, not a compile. Each fact
lives in one field:

- `data.num_frames` / `data.input_size` set the clip the model sees (`model` has no num_frames/img_size);
- `model.patch_size` / `model.tubelet_size` set the token grid (the data masks follow them);
- `model.num_classes` is the label space (the data lists are validated against it);
- `batch_size` is the global number of videos per optimizer update, the number the lr scaling uses
  (`num_sample` repeats and `optim.accumulate_steps` micro-batches do not change it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from vmae_jax.constants import IMAGENET_MEAN, IMAGENET_STD, SPLITS
from vmae_jax.data import masking, synthetic
from vmae_jax.models.config import HEAD_KINDS, ConfigError, ModelConfig
from vmae_jax.parallel.sharding import AXES
from vmae_jax.train.errors import did_you_mean

SCHEMA_VERSION = 1
TASKS = ('pretrain', 'finetune', 'postpretrain', 'eval', 'distill', 'demo')
CLASSIFIER_TASKS = ('finetune', 'postpretrain', 'eval', 'distill')
# data fields that are facts of the model (set from model.*), and model fields that are facts of the data.
DATA_FROM_MODEL = ('patch_size', 'tubelet_size')
MODEL_FROM_DATA = {'num_frames': 'data.num_frames', 'img_size': 'data.input_size', 'kind': 'task'}


def default_data_config() -> ml_collections.ConfigDict:
  """Every data field with its official default (docs/fidelity.md, "Recipes")."""
  return ml_collections.ConfigDict(dict(
      source='',                 # 'list' | 'tfds' | 'synthetic'; '' = synthetic without a path, else list
      path='',                   # folder with train.csv / val.csv / test.csv, or the TFDS data_dir
      root='',                   # prefix joined to the relative paths of the lists
      num_frames=16,
      sampling_rate=4,
      sampling='pretrain',       # 'pretrain' | 'dense' (Kinetics fine-tune) | 'segment' (SSv2)
      input_size=224,
      num_sample=1,              # repeated sampling: k augmented clips per decoded video (V2 pretrain 4, fine-tune 2)
      subset_per_class=0,        # > 0: train on the first N videos of each class in list order (small-data runs)
      # masks (pretraining)
      mask_type='tube', mask_ratio=0.9, decoder_mask_type='none', decoder_mask_ratio=0.5,
      tubelet_size=2, patch_size=16,
      # fine-tune augmentation
      flip=True, rand_augment=True, erase_prob=0.25,
      crop_scale=(0.08, 1.0),    # random-resized-crop area range (the official timm default)
      # per-channel normalisation of [0, 1] pixels (fine-tune and eval): ImageNet's for VideoMAE; the adapters'
      # configs set UniFormerV2's 0.45/0.225 or CLIP's constants
      mean=IMAGENET_MEAN, std=IMAGENET_STD,
      # fine-tune batch mixing (timm Mixup 'batch' mode on each process's batch); mixup=cutmix=0 turns it off
      mixup=0.8, cutmix=1.0, mix_prob=1.0, mix_switch_prob=0.5, label_smoothing=0.1,
      # evaluation views
      short_side=224, test_num_segment=5, test_num_crop=3,
      # reading
      workers=0, decode_threads=1, prefetch=2, max_replacements=20,
      max_failure_share=0.5, failure_window=100,
      synthetic=ml_collections.ConfigDict(dict()),
  ))


def defaults(task: str = 'pretrain') -> ml_collections.ConfigDict:
  """Every field a training config may have, with its default. Pretraining vs fine-tuning defaults follow the
  official run_mae_pretraining.py / run_class_finetuning.py."""
  pretrain = task == 'pretrain'
  c = ml_collections.ConfigDict()
  c.task = task
  c.seed = 0
  c.batch_size = 256               # global videos per optimizer update
  c.num_epochs = 100
  c.warmup_epochs = 40 if pretrain else 5
  c.warmup_steps = -1              # ≥ 0 overrides warmup_epochs
  c.num_train_steps = -1           # > 0 overrides num_epochs (warmup then scales by warmup_epochs/num_epochs)
  c.checkpoint_every_steps = 1000
  c.checkpoint_every_minutes = 30.0  # also save this long after the last save (preemptible VMs); 0 = off
  c.keep_checkpoints = 2           # latest N kept; fine-tuning also keeps the best by val top-1
  c.log_every_steps = 20
  c.mesh_shape = (-1, 1, 1)        # (data, fsdp, tensor); -1 fills the rest
  c.resume = ml_collections.ConfigDict(dict(
      allow_changes=()))           # fields of `resume_guarded` a resumed run may change, e.g. ('optim.base_lr',)
  c.model = ml_collections.ConfigDict(dict(name='', version=''))
  c.data = default_data_config()
  for field in DATA_FROM_MODEL:
    del c.data[field]
  c.data.synthetic = ml_collections.ConfigDict(dict(synthetic.DEFAULTS, cache_dir=''))  # data.source='synthetic'
  c.init = ml_collections.ConfigDict(dict(
      checkpoint='',               # converted checkpoint or training workdir to start from
      step=-1,                     # its step (-1 = latest)
      head_remap='',               # 'SRC:DST' among the shipped Kinetics lists k400|k600|k700|k710, e.g. 'k710:k400'
      class_names='',              # file: the checkpoint head's classes (for a head remap by name, your own lists)
      target_class_names='',       # file: this run's classes, in label order
      synonyms=''))                # JSON file {target name: checkpoint name}
  c.optim = ml_collections.ConfigDict(dict(
      base_lr=1.5e-4 if pretrain else 1e-3, min_lr=1e-5 if pretrain else 1e-6,
      b1=0.9, b2=0.95 if pretrain else 0.999, eps=1e-8, weight_decay=0.05,
      clip_grad=0.0,               # 0 = no clipping
      layer_decay=1.0 if pretrain else 0.75,
      accumulate_steps=1,          # micro-batches per update (official --update_freq)
      decay_rule='names',          # weight decay on: 'names' (VideoMAE), 'ndim' (≥2-D, UniFormerV2), 'all' (EVL)
      ema_decay=0.0))              # 0 = no EMA
  c.eval = ml_collections.ConfigDict(dict(
      every_steps=0,               # periodic single-view val (fine-tune) / val loss (pretrain); 0 = at the end only
      batch_size=8,                # global videos per eval batch
      max_videos=0,                # periodic evaluations read at most this many val videos (0 = all)
      split='val',
      final_multi_view=True))      # end of fine-tuning: the whole split, test_num_segment × test_num_crop views
  c.pretrain = ml_collections.ConfigDict(dict(
      norm_target=True,            # per-patch normalised pixel target (official --norm_pix_loss default)
      val_batches=4,               # batches of val clips for the reconstruction loss
      knn_every_steps=0,           # kNN top-1 on frozen mean-pooled features; 0 = off
      knn_k=20, knn_temperature=0.07, knn_bank_videos=1000,
      picture_every_steps=0))      # reconstruction PNG into WORKDIR/pictures; 0 = off
  c.distill = ml_collections.ConfigDict(dict(
      teacher='',                  # checkpoint of the teacher classifier (converted or a training workdir)
      teacher_step=-1,
      temperature=1.0,
      alpha=1.0))                  # loss = alpha·T²·KL(teacher‖student) + (1 − alpha)·label loss
  return c


# ---------------------------------------------------------------------------------------------------------------
# What each field allows


@dataclasses.dataclass(frozen=True)
class Range:
  """The numbers a field allows: bounds (None = unbounded), each closed unless marked open."""
  lo: float | None = None
  hi: float | None = None
  lo_open: bool = False
  hi_open: bool = False

  def __contains__(self, value) -> bool:
    if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
      return False
    return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

  def __str__(self) -> str:
    if self.hi is None:
      return f'{">" if self.lo_open else "≥"} {self.lo:g}'
    if self.lo is None:
      return f'{"<" if self.hi_open else "≤"} {self.hi:g}'
    return f'{"(" if self.lo_open else "["}{self.lo:g}, {self.hi:g}{")" if self.hi_open else "]"}'


@dataclasses.dataclass(frozen=True)
class Items:
  """A tuple field: `length` numbers, each in `each`; `ascending`: a (low, high) range with low ≤ high."""
  each: Range
  length: int
  ascending: bool = False

  def __contains__(self, value) -> bool:
    return (len(value) == self.length and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v in self.each
                                             for v in value) and (not self.ascending or list(value) == sorted(value)))

  def __str__(self) -> str:
    return f'{self.length} numbers, each {self.each}' + (', low ≤ high' if self.ascending else '')


def at_least(lo: float) -> Range:
  return Range(lo)


POSITIVE = Range(0, lo_open=True)
PROBABILITY = Range(0, 1)
FRACTION = Range(0, 1, hi_open=True)       # [0, 1): a ratio that must leave something, a decay, a smoothing
BETA = FRACTION                            # Adam's β1/β2 (β = 1 would never forget the first gradient)

# What a resumed run may not change without saying so (`resume.allow_changes`): anything that makes it another run
# than the one whose checkpoint it continues. The model (every model.* field but the compute settings), the masks,
# the data order and the lr schedule; the rest (logging, checkpoints, evaluation, compute) may change freely.
RESUME_COMPUTE = ('model.dtype', 'model.attention', 'model.remat_policy')
RESUME_FIELDS = ('seed', 'batch_size', 'num_epochs', 'num_train_steps', 'warmup_epochs', 'warmup_steps',
                 'data.source', 'data.path', 'data.num_frames', 'data.sampling_rate', 'data.mask_type',
                 'data.mask_ratio', 'data.decoder_mask_type', 'data.decoder_mask_ratio', 'optim.base_lr',
                 'optim.min_lr')
_MISSING = '(not set)'


def resume_guarded() -> tuple[str, ...]:
  """Every field a resumed run is compared on: `RESUME_FIELDS` and model.name/version/every ModelConfig field but
  `RESUME_COMPUTE`."""
  model = ['model.name', 'model.version'] + [f'model.{f.name}' for f in dataclasses.fields(ModelConfig)]
  return RESUME_FIELDS + tuple(f for f in dict.fromkeys(model) if f not in RESUME_COMPUTE)


# Every field of `defaults()` but `mesh_shape` (checked by `mesh_shape()`), `model.*` (ModelConfig's own
# `validate`, vmae_jax/models/config.py) and the free strings (paths, names): its allowed numbers (Range), tuple
# (Items) or values (a tuple of choices). `check` applies it after the field types, the model and (pretraining)
# the masks; the checks between fields stay in `check`.
LIMITS: dict[str, Range | Items | tuple] = {
    'task': TASKS,
    'seed': at_least(0),
    'batch_size': at_least(1),
    'num_epochs': at_least(0),              # 0 only with num_train_steps > 0
    'warmup_epochs': at_least(0),
    'warmup_steps': at_least(-1),           # -1: from warmup_epochs
    'num_train_steps': at_least(-1),        # -1: from num_epochs
    'checkpoint_every_steps': at_least(1),
    'checkpoint_every_minutes': at_least(0),   # 0: off
    'keep_checkpoints': at_least(1),
    'log_every_steps': at_least(1),
    'data.source': ('', 'list', 'tfds', 'synthetic'),
    'data.num_frames': at_least(1),
    'data.sampling_rate': at_least(1),
    'data.sampling': ('pretrain', 'dense', 'segment'),
    'data.input_size': at_least(1),
    'data.num_sample': at_least(1),
    'data.subset_per_class': at_least(0),
    'data.mask_type': tuple(masking.ENCODER_MASKS),
    'data.mask_ratio': FRACTION,            # pretraining: first the masking code's checks on the token grid
    'data.decoder_mask_type': ('none', *masking.DECODER_MASKS),
    'data.decoder_mask_ratio': FRACTION,
    'data.flip': (True, False),
    'data.rand_augment': (True, False),
    'data.erase_prob': PROBABILITY,
    'data.crop_scale': Items(Range(0, 1, lo_open=True), 2, ascending=True),
    'data.mean': Items(PROBABILITY, 3),
    'data.std': Items(POSITIVE, 3),
    'data.mixup': at_least(0),              # Beta(α, α) of Mixup; 0 = off
    'data.cutmix': at_least(0),             # Beta(α, α) of CutMix; 0 = off
    'data.mix_prob': PROBABILITY,
    'data.mix_switch_prob': PROBABILITY,
    'data.label_smoothing': FRACTION,
    'data.short_side': at_least(1),
    'data.test_num_segment': at_least(1),
    'data.test_num_crop': at_least(1),
    'data.workers': at_least(0),            # 0: in-process
    'data.decode_threads': at_least(0),     # 0: FFmpeg chooses
    'data.prefetch': at_least(1),
    'data.max_replacements': at_least(0),
    'data.max_failure_share': PROBABILITY,
    'data.failure_window': at_least(1),
    'data.synthetic.num_classes': Range(1, len(synthetic.CLASS_NAMES)),
    'data.synthetic.clips_per_class': at_least(1),
    'data.synthetic.num_frames': at_least(2),     # motion needs two frames
    'data.synthetic.size': at_least(16),          # and even (yuv420p): check()
    'data.synthetic.fps': at_least(1),
    'data.synthetic.seed': at_least(0),
    'data.synthetic.val_fraction': FRACTION,      # val + test < 1: check()
    'data.synthetic.test_fraction': FRACTION,
    'data.synthetic.background_contrast': PROBABILITY,
    'data.synthetic.radius_range': Items(POSITIVE, 2, ascending=True),
    'data.synthetic.travel_range': Items(POSITIVE, 2, ascending=True),
    'init.step': at_least(-1),              # -1: the latest
    'optim.base_lr': POSITIVE,
    'optim.min_lr': at_least(0),            # and ≤ optim.base_lr
    'optim.b1': BETA,
    'optim.b2': BETA,
    'optim.eps': POSITIVE,
    'optim.weight_decay': at_least(0),
    'optim.clip_grad': at_least(0),         # 0: off
    'optim.layer_decay': Range(0, 1, lo_open=True),
    'optim.accumulate_steps': at_least(1),
    'optim.ema_decay': FRACTION,            # 0: off
    'eval.every_steps': at_least(0),        # 0: at the end only
    'eval.batch_size': at_least(1),
    'eval.max_videos': at_least(0),         # 0: all
    'eval.split': SPLITS,
    'eval.final_multi_view': (True, False),
    'pretrain.norm_target': (True, False),
    'pretrain.val_batches': at_least(1),
    'pretrain.knn_every_steps': at_least(0),   # 0: off
    'pretrain.knn_k': at_least(1),
    'pretrain.knn_temperature': POSITIVE,
    'pretrain.knn_bank_videos': at_least(1),
    'pretrain.picture_every_steps': at_least(0),   # 0: off
    'distill.teacher_step': at_least(-1),   # -1: the latest
    'distill.temperature': POSITIVE,
    'distill.alpha': PROBABILITY,
    'resume.allow_changes': resume_guarded(),   # a tuple field: each of its names one of these
}


def allowed(limit) -> str:
  """How a message says what `limit` allows."""
  if isinstance(limit, tuple):
    return 'must be one of ' + ', '.join(repr(v) for v in limit)
  if isinstance(limit, Range) and limit.lo is not None and limit.hi is not None:
    return f'must be in {limit}'
  return f'must be {limit}'


def check_limits(config) -> None:
  """Every field of `LIMITS` the config has, against its limit; ConfigError naming the field, value and limit."""
  for path, limit in LIMITS.items():
    value, found = config, True
    for part in path.split('.'):
      if not isinstance(value, (ml_collections.ConfigDict, dict)) or part not in value:
        found = False
        break
      value = value[part]
    if not found:
      continue
    if isinstance(limit, tuple) and isinstance(value, (tuple, list)):   # a tuple of choices: each one of them
      ok = all(isinstance(v, str) and v in limit for v in value)
    elif isinstance(limit, tuple):
      ok = value in limit and (not isinstance(value, bool) or any(v is value for v in limit))
    elif isinstance(limit, Items):
      ok = isinstance(value, (tuple, list)) and value in limit
    else:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value in limit
    if not ok:
      raise ConfigError(f'config field {path}={value!r}: {allowed(limit)}')


def field_paths(config, prefix: str = '') -> list[str]:
  """Every section and field of `config` as a dotted path (the model section lists every ModelConfig field)."""
  out = []
  for key in config.keys():
    path = f'{prefix}{key}'
    out.append(path)
    if isinstance(config[key], (ml_collections.ConfigDict, dict)):
      out += field_paths(ml_collections.ConfigDict(config[key]) if isinstance(config[key], dict) else config[key],
                         path + '.')
  if not prefix and 'model' in config:
    out += [f'model.{f.name}' for f in dataclasses.fields(ModelConfig)]
  return list(dict.fromkeys(out))


def has_field(config, path: str) -> bool:
  value = config
  for part in path.split('.'):
    if not isinstance(value, (ml_collections.ConfigDict, dict)) or part not in value:
      return False
    value = value[part]
  return True


def unknown_field(path: str, config) -> str:
  """The message for a field `config` does not have: a did-you-mean, else the fields its section has."""
  section, _, leaf = path.rpartition('.')
  if section == 'model' and leaf in {f.name for f in dataclasses.fields(ModelConfig)}:
    return (f'config field {path!r} is a ModelConfig field this config file does not set, and the config is locked '
            'to the fields its file sets: set it in the config file')
  close = did_you_mean(path, field_paths(config))
  if close:
    return f'unknown config field {path!r} (did you mean {" or ".join(close)}?)'
  node = config
  for part in section.split('.') if section else []:
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return f'unknown config field {path!r}: there is no section {section!r}'
    node = node[part]
  if not isinstance(node, (ml_collections.ConfigDict, dict)):
    return f'unknown config field {path!r}: {section} is a field, not a section'
  return f'unknown config field {path!r}; {section or "the config"} has: {", ".join(sorted(node.keys()))}'


# ---------------------------------------------------------------------------------------------------------------
# Checks


def _kind(value) -> str:
  return type(value).__name__


def _check_fields(config, reference, prefix: str, skip: tuple[str, ...] = (), root=None) -> None:
  """Unknown fields and wrong types, recursively, against `reference` (`root`: the whole reference, for the
  did-you-mean of an unknown field)."""
  root = reference if root is None else root
  for key in config.keys():
    name = f'{prefix}{key}'
    if key in skip:
      continue
    if key not in reference:
      raise ConfigError(unknown_field(name, root))
    value, ref = config[key], reference[key]
    if isinstance(ref, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f'config field {name!r} must be a section, got {_kind(value)}')
      _check_fields(ml_collections.ConfigDict(value) if isinstance(value, dict) else value, ref, name + '.',
                    root=root)
    elif isinstance(ref, bool):
      if not isinstance(value, bool):
        raise ConfigError(f'config field {name!r} must be a bool, got {value!r}')
    elif isinstance(ref, int):
      if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f'config field {name!r} must be an int, got {value!r}')
    elif isinstance(ref, float):
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f'config field {name!r} must be a number, got {value!r}')
    elif isinstance(ref, str):
      if not isinstance(value, str):
        raise ConfigError(f'config field {name!r} must be a string, got {value!r}')
    elif isinstance(ref, tuple):
      if not isinstance(value, (tuple, list)):
        raise ConfigError(f'config field {name!r} must be a tuple, got {value!r}')


def model_config(config) -> ModelConfig:
  """The ModelConfig this training config describes: registered `model.name` + the other model.* fields, with
  the clip shape from data.* and the kind from the task."""
  from vmae_jax.models import get_config
  fields = dict(config.model)
  name, version = fields.pop('name'), fields.pop('version', '')
  for field, home in MODEL_FROM_DATA.items():
    if field in fields:
      raise ConfigError(f'config field model.{field} is not settable: it follows {home}')
  unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(ModelConfig)})
  if unknown:
    raise ConfigError(f'unknown config field model.{unknown[0]} (ModelConfig has no such field)')
  if not name:
    raise ConfigError('config field model.name must name a registered model (e.g. vit_base_patch16_224)')
  try:
    cfg = get_config(name, version=version or None, **fields)
  except ConfigError as e:
    raise ConfigError(f'model: {e}') from None
  d = config.data
  if d.num_frames <= 0 or d.num_frames % cfg.tubelet_size:
    raise ConfigError(f'config field data.num_frames={d.num_frames}: must be a positive multiple of '
                      f'model.tubelet_size={cfg.tubelet_size}')
  if d.input_size <= 0 or d.input_size % cfg.patch_size:
    raise ConfigError(f'config field data.input_size={d.input_size}: must be a positive multiple of '
                      f'model.patch_size={cfg.patch_size}')
  cfg = cfg.replace(num_frames=d.num_frames, img_size=d.input_size)
  want = 'pretrain' if config.task == 'pretrain' else 'classifier'
  if config.task != 'demo' and cfg.kind != want and not (want == 'classifier' and cfg.kind in HEAD_KINDS):
    raise ConfigError(f'config field model.name={name!r} is a {cfg.kind} model, but task={config.task!r} needs a '
                      f'{want} model')
  if config.task in CLASSIFIER_TASKS and cfg.num_classes <= 0:
    raise ConfigError(f'config field model.num_classes must be > 0 for task={config.task!r}')
  return cfg


def data_config(config, model: ModelConfig) -> ml_collections.ConfigDict:
  """The pipeline's data config: data.* plus the token-grid facts taken from the model."""
  d = ml_collections.ConfigDict(config.data.to_dict())
  d.patch_size, d.tubelet_size = model.patch_size, model.tubelet_size
  return d


def mesh_shape(config, num_devices: int) -> tuple[int, int, int]:
  shape = tuple(int(s) for s in config.mesh_shape)
  if len(shape) != 3:
    raise ConfigError(f'config field mesh_shape must have 3 entries {AXES}, got {shape}')
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ConfigError(f'config field mesh_shape={shape}: sizes must be positive, at most one -1')
  known = math.prod(s for s in shape if s != -1)
  if num_devices % known:
    raise ConfigError(f'config field mesh_shape={shape} does not divide the {num_devices} devices')
  shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ConfigError(f'config field mesh_shape={shape} uses {math.prod(shape)} devices, but {num_devices} exist')
  return shape


class Checked(NamedTuple):
  """What `check` computed on the way: the model config the run builds and the mesh shape with -1 filled in."""
  model: ModelConfig
  mesh_shape: tuple[int, int, int]


def check(config, num_devices: int = 1, num_processes: int = 1) -> Checked:
  """Every check that needs no data and no compile; returns the model config. Raises ConfigError naming a field."""
  if 'task' not in config or config.task not in TASKS:
    raise ConfigError(f'config field task must be one of {TASKS}, got {config.get("task")!r}')
  if config.task == 'demo':
    raise ConfigError('check() validates one training stage; the demo config is checked stage by stage')
  ref = defaults(config.task)
  _check_fields(config, ref, '', skip=('model',))
  for field in DATA_FROM_MODEL:
    if field in config.data:
      raise ConfigError(f'config field data.{field} is not settable: it follows model.{field}')
  model = model_config(config)
  d = config.data
  if config.task == 'pretrain':   # draw one set of masks: the masking code's own checks, on this token grid
    try:
      masking.sample_masks(np.random.default_rng(0), model.token_grid(), d.mask_type, d.mask_ratio,
                           d.decoder_mask_type, d.decoder_mask_ratio)
    except ValueError as e:
      raise ConfigError(f'config fields data.mask_type/mask_ratio/decoder_mask_type/decoder_mask_ratio: {e}') from None
  guarded = resume_guarded()
  for name in config.resume.allow_changes:   # first: a did-you-mean, not the whole list
    if name not in guarded:
      close = did_you_mean(str(name), list(guarded))
      raise ConfigError(f'config field resume.allow_changes: {name!r} is not a field checked on resume' +
                        (f' (did you mean {" or ".join(close)}?)' if close else
                         f'; those are: {", ".join(guarded)}'))
  check_limits(config)

  def need(cond, field, msg):
    if not cond:
      value = config
      for part in field.split('.'):
        value = value[part]
      raise ConfigError(f'config field {field}={value!r}: {msg}')

  need(config.num_train_steps > 0 or config.num_epochs > 0, 'num_epochs', 'must be > 0 (or set num_train_steps)')
  need(d.short_side >= d.input_size, 'data.short_side', f'must be ≥ data.input_size={d.input_size}')
  need(d.synthetic.size % 2 == 0, 'data.synthetic.size', 'must be even (the clips are yuv420p H.264)')
  need(d.synthetic.val_fraction + d.synthetic.test_fraction < 1, 'data.synthetic.val_fraction',
       f'plus data.synthetic.test_fraction={d.synthetic.test_fraction} must be < 1')
  o = config.optim
  need(o.min_lr <= o.base_lr, 'optim.min_lr', f'must be in [0, optim.base_lr={o.base_lr}]')
  need(o.decay_rule in optim_rules(), 'optim.decay_rule', f'must be one of {optim_rules()}')
  need(config.batch_size % o.accumulate_steps == 0, 'batch_size',
       f'must be divisible by optim.accumulate_steps={o.accumulate_steps}')
  if config.task == 'pretrain':
    need(o.layer_decay == 1.0, 'optim.layer_decay', 'pretraining uses no layer decay (1.0)')
  shape = mesh_shape(config, num_devices)
  dp = shape[0] * shape[1]
  micro = config.batch_size // o.accumulate_steps
  need(micro % dp == 0, 'batch_size', f'the micro-batch of {micro} videos must be divisible by the data-parallel '
       f'size {dp} (mesh_shape {shape}: data × fsdp)')
  need(micro % num_processes == 0, 'batch_size', f'the micro-batch of {micro} must divide over {num_processes} '
       'processes')
  need(config.eval.batch_size % num_processes == 0, 'eval.batch_size',
       f'must be divisible by the {num_processes} processes')
  if config.task == 'distill':
    need(bool(config.distill.teacher), 'distill.teacher', 'the teacher checkpoint is required')
  if config.task == 'eval':
    need(bool(config.init.checkpoint), 'init.checkpoint', 'eval needs the checkpoint to evaluate')
  if config.init.class_names or config.init.target_class_names:
    need(bool(config.init.class_names and config.init.target_class_names), 'init.class_names',
         'a head remap needs both init.class_names and init.target_class_names')
  if config.init.head_remap:
    need(not (config.init.class_names or config.init.target_class_names), 'init.head_remap',
         'names the label sets itself; leave init.class_names / init.target_class_names empty')
    from vmae_jax.weights.initialize import InitError, parse_head_remap
    try:
      _, dst = parse_head_remap(config.init.head_remap)
    except InitError as e:
      raise ConfigError(str(e)) from None
    need(model.num_classes == int(dst[1:]), 'init.head_remap',
         f'maps onto {dst} ({dst[1:]} classes) but model.num_classes={model.num_classes}')
  return Checked(model, shape)


def _lookup(tree, path: str):
  for part in path.split('.'):
    if not isinstance(tree, (dict, ml_collections.ConfigDict)) or part not in tree:
      return _MISSING
    tree = tree[part]
  return list(tree) if isinstance(tree, tuple) else tree   # JSON has lists where the config has tuples


def resume_changes(saved: dict, config) -> list[str]:
  """'FIELD: SAVED → NEW' for each field of `resume_guarded` that `config` changes from `saved` (the `config` item
  of a checkpoint, `to_json_dict`'s format) and `resume.allow_changes` does not list."""
  old, new = saved.get('config', {}), config.to_dict()
  allowed = set(config.resume.allow_changes) if has_field(config, 'resume.allow_changes') else set()
  out = []
  for path in resume_guarded():
    a, b = _lookup(old, path), _lookup(new, path)
    if a != b and path not in allowed:
      out.append(f'{path}: {a!r} → {b!r}')
  return out


def optim_rules() -> tuple[str, ...]:
  from vmae_jax.train.optim import DECAY_RULES
  return DECAY_RULES


def schedule_steps(config, train_videos: int) -> tuple[int, int, int]:
  """(optimizer steps, warmup steps, steps per epoch) as the official code counts them:
  steps per epoch = videos // global batch (drop_last)."""
  per_epoch = train_videos // config.batch_size
  if config.num_train_steps > 0:
    total = int(config.num_train_steps)
    warmup = (int(config.warmup_steps) if config.warmup_steps >= 0
              else int(round(total * config.warmup_epochs / max(config.num_epochs, 1))))
  else:
    if per_epoch == 0:
      raise ConfigError(f'config field batch_size={config.batch_size} is larger than the {train_videos} training '
                        'videos: an epoch has no step (set num_train_steps)')
    total = int(config.num_epochs * per_epoch)
    warmup = int(config.warmup_steps) if config.warmup_steps >= 0 else int(config.warmup_epochs * per_epoch)
  return total, min(warmup, total), per_epoch


def to_json_dict(config) -> dict[str, Any]:
  """The config as the checkpoint stores it: plain JSON with the schema version."""
  return {'schema_version': SCHEMA_VERSION, 'config': config.to_dict()}


def make_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `:smoke` variant of a recipe: the same task and code path (masking, augmentation, accumulation, EMA,
  evaluations), tiny dims, a few steps on a small synthetic dataset, a global batch of 8 (any 8-device mesh
  divides it)."""
  c.batch_size = 8
  c.num_train_steps = 4
  c.warmup_steps = 1
  c.checkpoint_every_steps = 2
  c.checkpoint_every_minutes = 0.0   # steps only: a smoke run saves at the same steps on any machine
  c.log_every_steps = 1
  c.mesh_shape = (-1, 1, 1)
  if c.optim.accumulate_steps > 1:
    c.optim.accumulate_steps = 2
  m = c.model
  m.patch_size, m.embed_dim, m.depth, m.num_heads = 8, 32, 2, 2
  if c.task == 'pretrain':
    m.decoder_embed_dim, m.decoder_depth, m.decoder_num_heads = 32, 1, 2
  m.dtype = 'float32'
  d = c.data
  d.source, d.path, d.root = 'synthetic', '', ''
  d.synthetic.update(dict(num_classes=4, clips_per_class=6, num_frames=12, size=48))
  d.num_frames, d.sampling_rate, d.input_size, d.short_side = 4, 2, 32, 32
  d.test_num_segment, d.test_num_crop = 2, 2
  d.workers = 0
  c.eval.batch_size, c.eval.every_steps, c.eval.max_videos = 8, 2, 8
  c.pretrain.update(dict(val_batches=1, knn_every_steps=2, knn_bank_videos=16, picture_every_steps=2))
  return c


def variant(c: ml_collections.ConfigDict, arg: str) -> ml_collections.ConfigDict:
  """The config-file argument after ':' — '' (the recipe) or 'smoke'."""
  if arg in ('', None):
    return c
  if arg == 'smoke':
    return make_smoke(c)
  raise ConfigError(f"config argument {arg!r} unknown; use '' (the recipe) or 'smoke'")


def parse_arg(arg: str, **accepted) -> ml_collections.ConfigDict:
  """A big_vision-style config-file argument, 'key=value,flag' (e.g. 'dataset=ssv2,smoke'), as a ConfigDict.

  `accepted` names every key a config file takes: a tuple lists its allowed values (the first is the default), a
  bool is a flag (False unless named alone, as 'smoke'). Anything else raises ConfigError naming what is allowed."""
  usage = ', '.join(f'{k}={"|".join(v)}' if isinstance(v, tuple) else k for k, v in accepted.items())
  out = ml_collections.ConfigDict({k: v[0] if isinstance(v, tuple) else False for k, v in accepted.items()})
  seen = set()
  for item in (arg or '').split(','):
    key, eq, value = item.strip().partition('=')
    if not key and not eq:
      continue
    if key not in accepted or key in seen or bool(eq) != isinstance(accepted[key], tuple):
      raise ConfigError(f'config argument {item.strip()!r} unknown in {arg!r}; use a comma-separated subset of: '
                        f'{usage}')
    if eq and value not in accepted[key]:
      raise ConfigError(f'config argument {key}={value!r} unknown; {key} must be one of {"|".join(accepted[key])}')
    out[key] = value if eq else True
    seen.add(key)
  return out
