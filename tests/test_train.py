"""Training: config checks, every recipe's :smoke run end to end (chained as the real pipeline is: pretrain →
post-pretrain / finetune → remap / eval / distill), restore of training workdirs, NaN stop, and eval helpers."""
import json
import os

import jax
import ml_collections
import numpy as np
import pytest
from recipes import load_config

import vmae_jax
from vmae_jax.data import annotations
from vmae_jax.models.config import ConfigError
from vmae_jax.tasks import evaluation
from vmae_jax.train import schema, trainer

ROOT = os.path.join(os.path.dirname(__file__), '..')
LABELS = annotations.KINETICS_DIR   # the class lists shipped with the package
# config names as --config spells them after configs/ and before .py (a family's dataset after ':')
VITB_PRETRAIN = ['vitb_pretrain:dataset=k400', 'vitb_pretrain:dataset=ssv2', 'vitb_pretrain:dataset=ucf101']
VITB_FINETUNE = ['vitb_finetune:dataset=k400', 'vitb_finetune:dataset=ssv2', 'vitb_finetune:dataset=ucf101']
CONFIGS = ['vitg_dual', *VITB_PRETRAIN, *VITB_FINETUNE, 'vitg_k710_postpretrain', 'vitg_k400_finetune',
           'distill_g_to_b', 'demo']


pytestmark = pytest.mark.usefixtures('synthetic_cache')


# --- config checks ---------------------------------------------------------------------------------------------

def smoke(name='vitb_finetune:dataset=k400'):
  return load_config(name, 'smoke')


@pytest.mark.parametrize('name', [n for n in CONFIGS if n != 'demo'])
def test_recipe_configs_pass_the_checks(name):
  for arg in ('', 'smoke'):
    c = load_config(name, arg)
    if c.task == 'distill':
      c.distill.teacher = '/teacher'   # the recipe names it on the command line
    model = schema.check(c, num_devices=8, num_processes=1).model
    assert model.num_frames == c.data.num_frames and model.img_size == c.data.input_size
  assert load_config(name, 'smoke').batch_size == 8


@pytest.mark.parametrize('edit, field', [
    (lambda c: c.data.update({'num_framez': 4}), 'data.num_framez'),
    (lambda c: setattr(c, 'batch_sise', 8), 'batch_sise'),
    (lambda c: setattr(c, 'optim', ml_collections.ConfigDict({**c.optim.to_dict(), 'base_lr': 'high'})),
     'optim.base_lr'),
    (lambda c: setattr(c.data, 'num_frames', 5), 'data.num_frames'),
    (lambda c: setattr(c.data, 'input_size', 36), 'data.input_size'),
    (lambda c: c.model.update({'num_frames': 8}), 'model.num_frames'),
    (lambda c: c.model.update({'img_size': 64}), 'model.img_size'),
    (lambda c: c.data.update({'patch_size': 8}), 'data.patch_size'),
    (lambda c: c.model.update({'num_classes': 0}), 'model.num_classes'),
    (lambda c: c.model.update({'depthh': 3}), 'model.depthh'),
    (lambda c: setattr(c, 'mesh_shape', (3, 1, 1)), 'mesh_shape'),
    (lambda c: setattr(c.optim, 'accumulate_steps', 3), 'batch_size'),
    (lambda c: setattr(c, 'task', 'pretrain'), 'model.name'),
    (lambda c: setattr(c.optim, 'layer_decay', 1.5), 'optim.layer_decay'),
    (lambda c: setattr(c, 'task', 'eval'), 'init.checkpoint'),
])
def test_bad_fields_are_named(edit, field):
  c = smoke()
  edit(c)
  with pytest.raises(ConfigError, match=field.replace('.', r'\.')):
    schema.check(c, num_devices=8)


@pytest.mark.parametrize('field, value, match', [
    ('mask_type', 'blob', 'blob'), ('mask_ratio', 1.0, 'mask_ratio'),
    ('input_size', 24, 'even token grid'),       # 3×3 tokens: the running-cell 2×2 cells do not tile
    ('decoder_mask_type', 'cube', 'cube')])
def test_mask_settings_are_checked_by_the_masking_code(field, value, match):
  c = smoke('vitg_dual')
  c.data[field] = value
  if field == 'input_size':
    c.data.short_side = 24
  with pytest.raises(ConfigError, match=f'data.mask_type/mask_ratio.*{match}'):
    schema.check(c)


def test_batch_must_divide_over_the_data_parallel_devices():
  c = smoke()
  c.batch_size = 12
  with pytest.raises(ConfigError, match=r'batch_size.*data-parallel size 8'):
    schema.check(c, num_devices=8)
  c.mesh_shape = (4, 1, 2)
  schema.check(c, num_devices=8)  # 12 videos over data=4: fine


def test_distill_needs_a_teacher():
  c = smoke('distill_g_to_b')
  with pytest.raises(ConfigError, match=r'distill\.teacher'):
    schema.check(c)


def test_schedule_steps_follow_the_official_epoch_arithmetic():
  c = smoke()
  c.num_train_steps, c.num_epochs, c.warmup_epochs, c.warmup_steps = -1, 10, 2, -1
  assert schema.schedule_steps(c, 100) == (120, 24, 12)   # 100 // 8 = 12 steps per epoch (drop_last)
  c.num_train_steps = 50
  assert schema.schedule_steps(c, 100) == (50, 10, 12)    # warmup keeps its share of the schedule
  c.warmup_steps = 3
  assert schema.schedule_steps(c, 100)[1] == 3


# --- smoke runs, chained -----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Every config's :smoke variant, each initialised from the previous stage as the real recipes chain."""
  base = tmp_path_factory.mktemp('runs')
  out = {}

  def go(name, **overrides):
    c = smoke(name)
    for key, value in overrides.items():
      section, _, field = key.rpartition('.')
      (c if not section else c[section])[field] = value
    workdir = str(base / name.replace(':', '_').replace('=', '_'))
    out[name] = (workdir, vmae_jax_main_run(c, workdir))
    return workdir

  v1 = go('vitb_pretrain:dataset=k400')
  v2 = go('vitg_dual')
  go('vitb_pretrain:dataset=ssv2')
  go('vitb_pretrain:dataset=ucf101')
  go('vitb_finetune:dataset=k400', **{'init.checkpoint': v1})
  go('vitb_finetune:dataset=ssv2', **{'init.checkpoint': v1})
  go('vitb_finetune:dataset=ucf101')
  k710 = go('vitg_k710_postpretrain', **{'init.checkpoint': v2})
  go('vitg_k400_finetune', **{'init.checkpoint': k710})   # the recipe's init.head_remap='k710:k400'

  go('distill_g_to_b', **{'distill.teacher': k710})
  c = smoke('vitb_finetune:dataset=k400')
  c.task = 'eval'
  c.init.checkpoint = out['vitb_finetune:dataset=k400'][0]
  out['eval'] = (str(base / 'eval'), vmae_jax_main_run(c, str(base / 'eval')))
  out['demo'] = (str(base / 'demo'), vmae_jax_main_run(load_config('demo', 'smoke'), str(base / 'demo')))
  return out


def vmae_jax_main_run(config, workdir):
  from vmae_jax.main import run
  return run(config, workdir)


def _steps(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line)['step'] for line in f]


@pytest.mark.parametrize('name', ['vitg_dual', *VITB_PRETRAIN])
def test_pretrain_smoke(runs, name):
  workdir, results = runs[name]
  assert np.isfinite(results['val/loss']) and 0 <= results['val/knn_top1'] <= 100
  assert _steps(workdir)[:4] == [1, 2, 3, 4]
  pictures = sorted(os.listdir(os.path.join(workdir, 'pictures')))
  assert pictures == ['reconstruction_0000002.png', 'reconstruction_0000004.png', 'reconstruction_final.png']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  assert os.listdir(os.path.join(workdir, 'tensorboard'))
  m = vmae_jax.load(workdir)   # a training workdir restores like a converted checkpoint
  assert m.config.kind == 'pretrain' and m.config.num_frames == 4
  with open(os.path.join(workdir, 'checkpoints', '4', 'config', 'metadata')) as f:
    assert json.load(f)['schema_version'] == schema.SCHEMA_VERSION


@pytest.mark.parametrize('name', [*VITB_FINETUNE, 'vitg_k710_postpretrain', 'vitg_k400_finetune', 'distill_g_to_b',
                                  'eval'])
def test_classification_smoke(runs, name):
  workdir, results = runs[name]
  assert results['eval/videos'] == 4 and results['eval/failed'] == 0
  assert 0 <= results['eval/top1'] <= results['eval/top5'] <= 100
  if name != 'eval':
    m = vmae_jax.load(workdir)
    video = np.zeros((1, 4, 32, 32, 3), np.float32)
    assert m.classify(video).shape == (1, m.config.num_classes)


@pytest.mark.parametrize('how', ['named', 'files'])
def test_k400_head_remapped_from_k710_by_name(runs, how):
  """The smoke k400 fine-tune starts from the k710 run's head rows in the official 710→400 order, whether the label
  sets are named (the recipe's init.head_remap='k710:k400', lists shipped with the package) or given as files."""
  from vmae_jax.weights.initialize import restore_any
  _, k710 = restore_any(runs['vitg_k710_postpretrain'][0])
  c = smoke('vitg_k400_finetune')
  c.init.checkpoint = runs['vitg_k710_postpretrain'][0]
  assert c.init.head_remap == 'k710:k400'
  if how == 'files':
    c.init.head_remap = ''
    c.init.class_names = os.path.join(LABELS, 'label_map_k710.txt')
    c.init.target_class_names = os.path.join(LABELS, 'label_map_k400.txt')
  from vmae_jax.tasks import Context
  from vmae_jax.weights.initialize import init_from_checkpoint
  ctx = Context(c, schema.check(c).model, None, '', None)
  params = init_from_checkpoint(ctx, jax.random.key(0))
  with open(os.path.join(LABELS, 'label_710to400.json')) as f:
    rows = json.load(f)
  np.testing.assert_array_equal(params['head_kernel'], k710['head_kernel'][:, rows])
  np.testing.assert_array_equal(params['head_bias'], k710['head_bias'][rows])


def test_finished_workdir_exits_without_training(runs):
  workdir, results = runs['vitb_finetune:dataset=k400']
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  again = vmae_jax_main_run(smoke('vitb_finetune:dataset=k400'), workdir)
  assert again == results
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before


def test_finetune_keeps_the_latest_and_the_best_checkpoint(tmp_path, monkeypatch):
  from vmae_jax.tasks.classify import Classify
  c = smoke()
  c.num_train_steps, c.keep_checkpoints, c.checkpoint_every_steps = 6, 1, 100
  scores = {2: 90.0, 4: 10.0, 6: 20.0}
  monkeypatch.setattr(Classify, 'periodic', lambda self, step, params, writer: (
      {'val/top1': scores[step]} if step in scores else {}))
  trainer.Trainer(c, str(tmp_path)).run()
  assert sorted(os.listdir(tmp_path / 'checkpoints'), key=int) == ['2', '6']   # best (90 at step 2) + latest


def test_demo_smoke_writes_the_summary(runs):
  workdir, summary = runs['demo']
  with open(os.path.join(workdir, 'summary.json')) as f:
    on_disk = json.load(f)
  assert on_disk == summary
  for key in ('pretrained_top1', 'scratch_top1', 'margin', 'seconds'):
    assert key in summary
  assert set(os.listdir(workdir)) >= {'pretrain', 'finetune_pretrained', 'finetune_scratch', 'summary.json'}
  assert all(s > 0 for s in summary['seconds'].values())


def test_rerunning_a_finished_demo_keeps_the_stage_times(runs):
  """A finished demo run again is a no-op that must not replace the stage times with its own near-zero ones."""
  workdir, summary = runs['demo']
  again = vmae_jax_main_run(load_config('demo', 'smoke'), workdir)
  assert again['seconds'] == summary['seconds']
  assert again['pretrained_top1'] == summary['pretrained_top1']


# --- NaN stop ------------------------------------------------------------------------------------------------------

def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  c = smoke()
  c.num_train_steps, c.eval.every_steps = 8, 0
  calls = {'n': 0}
  real = trainer.device_batch.global_batch

  def poisoned(batch, mesh):
    calls['n'] += 1
    if calls['n'] == 5:   # the 5th training batch
      batch = dict(batch, video=np.full_like(batch['video'], np.nan))
    return real(batch, mesh)
  monkeypatch.setattr(trainer.device_batch, "global_batch", poisoned)
  with pytest.raises(trainer.TrainingError, match=r'non-finite.*\(4, 5\].*steps \[2, 4\]'):
    trainer.Trainer(c, str(tmp_path)).run()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '4']
  m = vmae_jax.load(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(m.variables))


# --- evaluation helpers ----------------------------------------------------------------------------------------

def test_multi_view_is_the_mean_of_per_view_softmax():
  rng = np.random.default_rng(0)
  b, v, c = 3, 4, 6
  logits = rng.normal(size=(b * v, c)).astype(np.float32) * 3
  batch = {'video': np.zeros((b, v, 2, 2, 2, 3), np.uint8), 'label': np.array([0, 1, 2], np.int32),
           'valid': np.array([True, True, False])}
  counts = evaluation.classification_counts(lambda p, x: logits)(None, batch)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs = (probs / probs.sum(-1, keepdims=True)).reshape(b, v, c).mean(1)
  hits = (probs.argmax(-1) == batch['label'])[:2]
  assert float(counts['count']) == 2 and float(counts['top1']) == hits.sum()
  # top-1 of the mean softmax can differ from the mean of logits: the official merge is the former
  top5 = [batch['label'][i] in np.argsort(-probs[i])[:5] for i in range(2)]
  assert float(counts['top5']) == sum(top5)


def test_knn_top1_on_separable_features():
  bank = np.eye(3)[[0, 0, 1, 1, 2, 2]] + 0.01
  bank /= np.linalg.norm(bank, axis=1, keepdims=True)
  labels = np.array([0, 0, 1, 1, 2, 2])
  assert evaluation.knn_top1(bank, labels, bank[[0, 2, 4]], np.array([0, 1, 2]), k=2) == 100.0
  assert evaluation.knn_top1(bank, labels, bank[[0, 2, 4]], np.array([1, 2, 0]), k=2) == 0.0


def test_reconstruction_picture_of_a_perfect_prediction_is_the_clip():
  from vmae_jax import visualize
  from vmae_jax.models import target
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  visible, pred = np.array([0, 5]), np.array([1, 2, 3, 4, 6, 7])
  norm = (video / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  tokens = np.asarray(target.pixel_target(norm[None].astype(np.float32), 2, 8))[0]
  original, masked, recon = visualize.reconstruction_rows(video, visible, pred, tokens[pred], 2, 8)
  np.testing.assert_allclose(recon, original, atol=1e-4)
  assert np.all(masked[:2, :8, 8:] == visualize.GREY)   # token 1 (t0, row 0, col 1) is masked
  image = visualize.figure((original, masked, recon))
  assert image.dtype == np.uint8 and image.shape == (3 * 16 + 4, 4 * 16 + 6, 3)


def test_eval_subsets_spread_over_the_list():
  assert evaluation.subset(10) == list(range(10))
  assert evaluation.subset(100, 5) == [0, 25, 50, 74, 99]


def test_finetune_subset_takes_the_first_clips_of_each_class():
  from vmae_jax.data.pipeline import train_indices

  class Source:
    items = [('a', 0), ('b', 0), ('c', 1), ('d', 0), ('e', 1), ('f', 1), ('g', 2)]

    def __len__(self):
      return len(self.items)
  assert train_indices(Source(), 2) == [0, 1, 2, 4, 6]
  assert train_indices(Source(), 0) == list(range(7))


def test_visualize_cli_on_a_training_workdir(runs, tmp_path):
  from PIL import Image

  from vmae_jax import visualize
  from vmae_jax.data import synthetic_cache
  workdir, _ = runs['vitg_dual']
  folder = synthetic_cache.ensure_synthetic(num_classes=4, clips_per_class=6, num_frames=12, size=48)
  video = os.path.join(folder, 'videos', 'move_left', 'move_left_0000.mp4')
  png, gif = str(tmp_path / 'r.png'), str(tmp_path / 'r.gif')
  assert visualize.main([f'--checkpoint={workdir}', f'--video={video}', f'--out={png}', '--sampling_rate=2',
                         '--decoder_mask']) == 0
  assert Image.open(png).size == (4 * 32 + 3 * 2, 3 * 32 + 2 * 2)   # 4 frames × 3 rows of 32² (the smoke model)
  assert visualize.main([f'--checkpoint={workdir}', f'--video={video}', f'--out={gif}', '--sampling_rate=2']) == 0
  assert Image.open(gif).n_frames == 4
  with pytest.raises(ValueError, match='no decoder'):
    visualize.reconstruct_file(runs['vitb_finetune:dataset=k400'][0], video)
