"""User errors end every command line with one line on stderr that names the culprit, exit code 2 and no traceback
(vmae_jax/train/errors.py); `--debug` or VMAE_JAX_DEBUG=1 adds the traceback. Also: the range table of the config
schema (schema.LIMITS) and VideoMAE V2's unlabelled pretraining lists.

The absl-parsed `vmae_jax.main` runs as subprocesses (its flags are process-global), two at a time; the argparse
commands run in-process through their `main(argv)`, plus one subprocess each for the `python -m` entry point."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from recipes import load_config

from vmae_jax import convert, features, models, visualize
from vmae_jax.bench import cli as bench_cli
from vmae_jax.data import annotations, pipeline, prepare, videogen
from vmae_jax.data.annotations import SourceError
from vmae_jax.data.sources import ListSource
from vmae_jax.models.config import ConfigError, ModelConfig
from vmae_jax.train import errors, schema
from vmae_jax.weights import checkpoint

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
FT = '--config=configs/vitb_finetune.py:smoke'
PT = '--config=configs/vitb_pretrain.py:smoke'
WORKDIR = '--workdir={work}'   # a fresh folder per case
V2_LIST = 'clips/a.mp4 0 -1\nclips/b c.mp4 0 -1\n'   # OpenGVLab/VideoMAEv2 docs/DATASET.md: `video_path 0 -1`


def _last_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  return lines[-1] if lines else ''


# --- every command as a subprocess: (id, module and arguments, what the last stderr line must name) ---------------

SUBPROCESS_CASES = [
    ('unknown field', ['vmae_jax.main', FT, WORKDIR, '--config.foo=1'], "unknown config field 'foo'; the config has"),
    ('misspelt field', ['vmae_jax.main', FT, WORKDIR, '--config.data.mask_ratioo=0.9'],
     "'data.mask_ratioo' (did you mean data.mask_ratio?)"),
    ('field in the wrong section', ['vmae_jax.main', FT, WORKDIR, '--config.optim.warmup_steps=5'],
     "'optim.warmup_steps' (did you mean warmup_steps or warmup_epochs?)"),
    ('misspelt model field', ['vmae_jax.main', FT, WORKDIR, '--config.model.depthh=3'], 'did you mean model.depth?'),
    ('bad config-file argument', ['vmae_jax.main', '--config=configs/vitb_pretrain.py:dataset=foo', WORKDIR],
     "dataset='foo' unknown; dataset must be one of k400|ssv2|ucf101"),
    ('missing config file', ['vmae_jax.main', '--config=configs/vitb_pretrian.py:smoke', WORKDIR],
     'configs/vitb_pretrian.py:smoke: no such config file (did you mean configs/vitb_pretrain.py?)'),
    ('not an int', ['vmae_jax.main', FT, WORKDIR, '--config.batch_size=abc'],
     "config field batch_size must be an int, got 'abc'"),
    ('not a bool', ['vmae_jax.main', FT, WORKDIR, '--config.data.flip=maybe'],
     "config field data.flip must be true or false, got 'maybe'"),
    ('mask ratio 0', ['vmae_jax.main', PT, WORKDIR, '--config.data.mask_ratio=0.0'],
     'mask_ratio=0.0 masks int(0.0 × 16) = 0 of the 16 tokens'),
    ('mask ratio 0.05', ['vmae_jax.main', PT, WORKDIR, '--config.data.mask_ratio=0.05'],
     'mask_ratio=0.05 masks int(0.05 × 16) = 0 of the 16 tokens'),
    ('sampling_rate 0', ['vmae_jax.main', FT, WORKDIR, '--config.data.sampling_rate=0'],
     'data.sampling_rate=0: must be ≥ 1'),
    ('sampling_rate -2', ['vmae_jax.main', FT, WORKDIR, '--config.data.sampling_rate=-2'],
     'data.sampling_rate=-2: must be ≥ 1'),
    ('erase_prob', ['vmae_jax.main', FT, WORKDIR, '--config.data.erase_prob=1.5'],
     'data.erase_prob=1.5: must be in [0, 1]'),
    ('label_smoothing', ['vmae_jax.main', FT, WORKDIR, '--config.data.label_smoothing=-1'],
     'data.label_smoothing=-1.0: must be in [0, 1)'),
    ('mixup', ['vmae_jax.main', FT, WORKDIR, '--config.data.mixup=-1'], 'data.mixup=-1.0: must be ≥ 0'),
    ('b2', ['vmae_jax.main', PT, WORKDIR, '--config.optim.b2=1.5'], 'optim.b2=1.5: must be in [0, 1)'),
    ('workers', ['vmae_jax.main', FT, WORKDIR, '--config.data.workers=-3'], 'data.workers=-3: must be ≥ 0'),
    ('mesh_shape', ['vmae_jax.main', FT, WORKDIR, '--config.mesh_shape=(0, 1, 1)'],
     'mesh_shape=(0, 1, 1): sizes must be positive'),
    ('task', ['vmae_jax.main', FT, WORKDIR, '--config.task=train'], "task must be one of ('pretrain'"),
    ('list without a path', ['vmae_jax.main', FT, WORKDIR, '--config.data.source=list'],
     "data.source='list' needs data.path"),
    ('missing list', ['vmae_jax.main', FT, WORKDIR, '--config.data.source=list', '--config.data.path=/nonexistent'],
     '/nonexistent/train.csv: annotation list not found'),
    ('V2 list when fine-tuning', ['vmae_jax.main', FT, WORKDIR, '--config.data.source=list',
                                  '--config.data.path={tmp}/v2'],
     "v2/train.csv:1: 'clips/a.mp4 0 -1' is a VideoMAE V2 pretraining line"),
    ('head_remap: unknown label set', ['vmae_jax.main', FT, WORKDIR, '--config.init.head_remap=k710:k401'],
     "init.head_remap='k710:k401': use 'SRC:DST' with SRC and DST among k400, k600, k700, k710"),
    ('head_remap: other size', ['vmae_jax.main', FT, WORKDIR, '--config.init.head_remap=k710:k600'],
     'maps onto k600 (600 classes) but model.num_classes=400'),
    ('head_remap and files', ['vmae_jax.main', FT, WORKDIR, '--config.init.head_remap=k710:k400',
                              '--config.init.class_names=a.txt', '--config.init.target_class_names=b.txt'],
     "init.head_remap='k710:k400': names the label sets itself"),
    ('missing checkpoint', ['vmae_jax.main', FT, WORKDIR, '--config.task=eval',
                            '--config.init.checkpoint=/nonexistent'], '/nonexistent'),
    ('no workdir', ['vmae_jax.main', FT], 'Flag --workdir must have a value'),
    ('unknown flag', ['vmae_jax.main', FT, WORKDIR, '--workdri=x'], "Unknown command line flag 'workdri'"),
    ('override without --config', ['vmae_jax.main', WORKDIR, '--config.data.workers=1'],
     '--config.data.workers sets a field of the config file, but no --config='),
    ('positional argument', ['vmae_jax.main', FT, WORKDIR, 'extra'], "unexpected arguments ['extra']"),
    ('convert: missing source', ['vmae_jax.convert', '--src=/nonexistent.pth', '--dst={tmp}/out'],
     '--src=/nonexistent.pth: no such file or directory'),
    ('features: missing list', ['vmae_jax.features', '--checkpoint=x', '--data.path=/nonexistent', '--out={tmp}/f'],
     '/nonexistent: no such folder or list file (--data.path)'),
    ('visualize: missing video', ['vmae_jax.visualize', '--checkpoint=x', '--video=/nonexistent.mp4',
                                  '--out={tmp}/r.png'], '--video=/nonexistent.mp4: no such file'),
    ('bench: bad batch', ['vmae_jax.bench', 'step', '--batch=0'], 'argument --batch: must be an int ≥ 1, got 0'),
    ('prepare: missing folder', ['vmae_jax.data.prepare', '--videos=/nonexistent', '--out={tmp}/lists'],
     "--videos='/nonexistent' is not a folder"),
]
# with the traceback: (id, case, extra arguments, extra environment)
DEBUG_CASES = [
    ('--debug', 'misspelt field', ['--debug'], {}),
    ('env', 'erase_prob', [], {errors.DEBUG_ENV: '1'}),
    ('env, argparse', 'convert: missing source', [], {errors.DEBUG_ENV: '1'}),
]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Every subprocess case, run two at a time up front: id → CompletedProcess."""
  tmp = tmp_path_factory.mktemp('cli')
  (tmp / 'v2').mkdir()
  for split in ('train', 'val', 'test'):
    (tmp / 'v2' / f'{split}.csv').write_text(V2_LIST)
  env = dict(os.environ, JAX_PLATFORMS='cpu', VMAE_JAX_CACHE=str(tmp / 'cache'))
  env.pop(errors.DEBUG_ENV, None)
  cases = {name: (args, {}) for name, args, _ in SUBPROCESS_CASES}
  by_name = {name: args for name, args, _ in SUBPROCESS_CASES}
  cases.update({f'debug: {name}': (by_name[case] + extra, extra_env) for name, case, extra, extra_env in DEBUG_CASES})

  def one(item):
    name, (args, extra_env) = item
    work = tmp / 'work' / name.replace(' ', '_').replace(':', '')
    cmd = [sys.executable, '-m'] + [a.replace('{tmp}', str(tmp)).replace('{work}', str(work)) for a in args]
    return name, subprocess.run(cmd, cwd=ROOT, env={**env, **extra_env}, capture_output=True, text=True,
                                timeout=300)
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    return dict(pool.map(one, cases.items()))


@pytest.mark.parametrize('name, args, names', SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_command_line_user_error_is_one_line_and_exit_code_2(runs, name, args, names):
  r = runs[name]
  assert r.returncode == 2, r.stderr[-3000:]
  assert 'Traceback' not in r.stderr, r.stderr[-3000:]
  last = _last_line(r.stderr)
  assert names in last and last.startswith(f'python -m {args[0]}'), last


@pytest.mark.parametrize('name, case, extra, env', DEBUG_CASES, ids=[c[0] for c in DEBUG_CASES])
def test_debug_shows_the_traceback(runs, name, case, extra, env):
  r = runs[f'debug: {name}']
  want = next(names for n, _, names in SUBPROCESS_CASES if n == case)
  assert r.returncode == 2 and 'Traceback (most recent call last)' in r.stderr, r.stderr[-3000:]
  assert want in _last_line(r.stderr)


# --- the argparse commands in-process ------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def files(tmp_path_factory):
  """A tiny pretraining and a tiny classifier checkpoint, a short video, a junk file, a duplicate-id list."""
  tmp = tmp_path_factory.mktemp('files')
  small = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2)
  pt = ModelConfig(kind='pretrain', decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, **small)
  ft = ModelConfig(kind='classifier', num_classes=3, **small)
  for name, c in (('pt', pt), ('ft', ft)):
    checkpoint.save(str(tmp / name), models.init_params(c, jax.random.key(0)), c)
  videogen.write_video(str(tmp / 'clip.mp4'), num_frames=12, width=40, height=32, seed=0)
  (tmp / 'junk.mp4').write_bytes(b'\x00not a video' * 20)
  (tmp / 'junk.bin').write_bytes(b'\x86\x00' * 20)
  (tmp / 'empty').mkdir()
  (tmp / 'dup.csv').write_text('a.mp4 0\nsub/../a.mp4 1\n')
  return tmp


IN_PROCESS_CASES = [
    # (id, main, arguments, what the last stderr line must name)
    ('convert: not field=value', convert.main, ['--src={tmp}/junk.mp4', '--dst={tmp}/o', 'num_heads'],
     "override 'num_heads' is not field=value"),
    ('convert: unknown --to', convert.main, ['--src={tmp}/junk.mp4', '--dst={tmp}/o', '--to=onnx'],
     "argument --to: invalid choice: 'onnx'"),
    ('convert: misspelt --model', convert.main, ['--src={tmp}/junk.mp4', '--dst={tmp}/o', '--model=vit_base_patch16'],
     "--model='vit_base_patch16' is not a registered model (did you mean vit_base_patch16_224"),
    ('convert: not a weights file', convert.main, ['--src={tmp}/junk.mp4', '--dst={tmp}/o'],
     'junk.mp4: refused to load'),
    ('convert: no --src', convert.main, ['--dst={tmp}/o'], 'the following arguments are required: --src'),
    ('features: stride 0', features.main, ['--checkpoint={tmp}/pt', '--data.path={tmp}/empty', '--out={tmp}/f',
                                           '--stride=0'], 'argument --stride: must be an int ≥ 1, got 0'),
    ('features: no videos', features.main, ['--checkpoint={tmp}/pt', '--data.path={tmp}/empty', '--out={tmp}/f'],
     'empty: no video files'),
    ('features: duplicate id', features.main, ['--checkpoint={tmp}/pt', '--data.path={tmp}/dup.csv',
                                               '--out={tmp}/f'], "dup.csv:2: video id 'a' already given on line 1"),
    ('features: missing checkpoint', features.main, ['--checkpoint={tmp}/none', '--data.path={tmp}',
                                                     '--out={tmp}/f'], 'none: no such checkpoint directory'),
    ('features: a video as the list', features.main, ['--checkpoint={tmp}/pt', '--data.path={tmp}/clip.mp4',
                                                      '--out={tmp}/f'], 'clip.mp4: a video, not a list file'),
    ('features: a binary list', features.main, ['--checkpoint={tmp}/pt', '--data.path={tmp}/junk.bin',
                                                '--out={tmp}/f'], 'junk.bin: not a UTF-8 text list'),
    ('visualize: missing checkpoint', visualize.main, ['--checkpoint={tmp}/none', '--video={tmp}/clip.mp4',
                                                       '--out={tmp}/r.png'], 'none: no such checkpoint directory'),
    ('visualize: classifier checkpoint', visualize.main, ['--checkpoint={tmp}/ft', '--video={tmp}/clip.mp4',
                                                          '--out={tmp}/r.png'],
     'a classifier checkpoint has no decoder'),
    ('visualize: mask ratio out of range', visualize.main, ['--checkpoint={tmp}/pt', '--video={tmp}/clip.mp4',
                                                            '--out={tmp}/r.png', '--mask_ratio=1.5'],
     '--mask_ratio=1.5: must be in (0, 1)'),
    ('visualize: mask ratio masks nothing', visualize.main, ['--checkpoint={tmp}/pt', '--video={tmp}/clip.mp4',
                                                             '--out={tmp}/r.png', '--mask_ratio=0.05'],
     '--mask_ratio=0.05: mask_ratio=0.05 masks int(0.05 × 16) = 0 of the 16 tokens'),
    ('visualize: not a video', visualize.main, ['--checkpoint={tmp}/pt', '--video={tmp}/junk.mp4',
                                                '--out={tmp}/r.png'], 'junk.mp4'),
    ('visualize: output type', visualize.main, ['--checkpoint={tmp}/pt', '--video={tmp}/clip.mp4',
                                                '--out={tmp}/r.txt'], 'must end in .png (frames side by side) or .gif'),
    ('visualize: output folder', visualize.main, ['--checkpoint={tmp}/pt', '--video={tmp}/clip.mp4',
                                                  '--out={tmp}/nowhere/r.png'], 'nowhere does not exist'),
    ('bench: unknown mode', bench_cli.main, ['step', '--mode=v3'], "argument --mode: invalid choice: 'v3'"),
    ('bench: model field', bench_cli.main, ['step', 'depthh=2'], "unknown model config field(s) ['depthh']"),
    ('bench: step model', bench_cli.main, ['step', '--model=vit_small_patch16_224', '--mode=v1'],
     'needs a pretraining model'),
    ('bench: adapter model', bench_cli.main, ['adapters', '--model=evl_b61'], "unknown model name 'evl_b61'"),
    ('bench: attention impl', bench_cli.main, ['attention', '--impls=flash', '--steps=1'],
     "model config field 'attention': must be one of"),
    ('bench: pipeline folder', bench_cli.main, ['pipeline', '--videos={tmp}/nowhere'],
     '--videos={tmp}/nowhere: no such folder'),
    ('bench: unknown command', bench_cli.main, ['nosuch'], "argument command: invalid choice: 'nosuch'"),
    ('prepare: fractions', prepare.main, ['--videos={tmp}/empty', '--out={tmp}/l', '--val_fraction=1.5'],
     '--val_fraction=1.5, --test_fraction=0.1: each in [0, 1), sum < 1'),
    ('prepare: class list', prepare.main, ['--videos={tmp}/empty', '--out={tmp}/l', '--classes={tmp}/none.txt'],
     'none.txt: no such file'),
    ('prepare: crf', prepare.main, ['--videos={tmp}/empty', '--out={tmp}/l', '--crf=99'],
     'argument --crf: must be an int in [0, 51], got 99'),
    ('prepare: no class folders', prepare.main, ['--videos={tmp}/empty', '--out={tmp}/l'],
     'empty: no class sub-folders'),
]


@pytest.mark.parametrize('name, main, args, names', IN_PROCESS_CASES, ids=[c[0] for c in IN_PROCESS_CASES])
def test_argparse_command_user_error_is_one_line_and_exit_code_2(files, capsys, monkeypatch, name, main, args, names):
  monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
  args = [a.replace('{tmp}', str(files)) for a in args]
  try:
    code = main(args)
  except SystemExit as e:   # argparse's own errors: one line too (errors.ArgumentParser)
    code = e.code
  err = capsys.readouterr().err
  assert code == 2, err
  assert 'Traceback' not in err, err
  assert names.replace('{tmp}', str(files)) in _last_line(err), err


def test_debug_flag_of_an_argparse_command(files, capsys, monkeypatch):
  monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
  assert visualize.main([f'--checkpoint={files}/none', f'--video={files}/clip.mp4', f'--out={files}/r.png',
                         '--debug']) == 2
  err = capsys.readouterr().err
  assert 'Traceback (most recent call last)' in err and 'no such checkpoint directory' in _last_line(err)


def test_visualize_still_draws(files, capsys):
  out = files / 'recon.png'
  assert visualize.main([f'--checkpoint={files}/pt', f'--video={files}/clip.mp4', f'--out={out}',
                         '--sampling_rate=2', '--mask_ratio=0.75']) == 0
  assert out.stat().st_size > 0 and 'wrote' in capsys.readouterr().out


def test_the_mapping():
  from vmae_jax.data import decode
  from vmae_jax.train import trainer
  from vmae_jax.weights import initialize, videomae_import
  assert errors.classify(trainer.TrainingError('nan')) == (1, 'training stopped')
  assert errors.classify(pipeline.DataError('30 of the first 40 videos failed'))[0] == 2
  for e in (ConfigError('x'), initialize.InitError('x'), checkpoint.CheckpointError('x'), SourceError('x'),
            videomae_import.ConvertError('x'), decode.DecodeError('x'), errors.UsageError('x'),
            FileNotFoundError(2, 'No such file or directory', '/x')):
    assert errors.classify(e)[0] == 2, e
  assert errors.classify(type('Sub', (checkpoint.CheckpointError,), {})('x'))[0] == 2   # subclasses count
  for bug in (ValueError('x'), KeyError('x'), RuntimeError('x'), ZeroDivisionError()):
    assert errors.classify(bug) is None
  assert errors.one_line(FileNotFoundError(2, 'No such file or directory', '/x.csv')) == \
      '/x.csv: No such file or directory'
  assert errors.one_line(ConfigError('a\n  b')) == 'a b'


# --- the range table -------------------------------------------------------------------------------------------

def _leaves(d, prefix=''):
  for key, value in d.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def test_every_non_string_field_has_a_limit():
  for task in schema.TASKS[:-1]:
    c = schema.defaults(task)
    for path, value in _leaves(c):
      if isinstance(value, str) or path == 'mesh_shape' or path.startswith('model.'):
        continue
      assert path in schema.LIMITS, f'{path} (task {task}) has no entry in schema.LIMITS'
    schema.check_limits(c)   # the defaults are inside their limits
  paths = {p for task in schema.TASKS[:-1] for p, _ in _leaves(schema.defaults(task))}
  assert set(schema.LIMITS) <= paths


def _outside(limit):
  """Values just outside a limit."""
  if isinstance(limit, tuple):
    return ['no such choice']
  if isinstance(limit, schema.Items):
    each = limit.each
    span = 1 if each.hi is None else each.hi - each.lo
    low, high = each.lo + span / 4, each.lo + 3 * span / 4
    bad = [(low,) * (limit.length - 1), (each.lo - 1,) + (high,) * (limit.length - 1)]
    return bad + ([(high, low)] if limit.ascending else [])
  out = []
  if limit.lo is not None:
    out.append(limit.lo if limit.lo_open else limit.lo - 1)
  if limit.hi is not None:
    out.append(limit.hi if limit.hi_open else limit.hi + 1)
  return out


@pytest.mark.parametrize('path', sorted(schema.LIMITS))
def test_each_limit_refuses_a_value_just_outside_it(path):
  c = schema.defaults('finetune')
  parent, _, leaf = path.rpartition('.')
  section = c
  for part in parent.split('.') if parent else []:
    section = section[part]
  for bad in _outside(schema.LIMITS[path]):
    with section.ignore_type():
      section[leaf] = bad
    with pytest.raises(ConfigError, match=f'config field {path}='):
      schema.check_limits(c)


def test_recipes_with_the_range_table(tmp_path):
  """Every recipe and demo stage passes `check` (tests/test_configs.py and test_train.py load the rest)."""
  for name in ('uniformerv2_b16_k400', 'uniformerv2_b16_ssv2', 'evl_b16_k400'):
    for arg in ('', 'smoke'):
      schema.check(load_config(name, arg), num_devices=8)
  for arg in ('', 'smoke'):
    demo = load_config('demo', arg)
    for stage in ('pretrain', 'finetune'):
      schema.check(demo[stage])


def test_config_check_names_what_is_allowed():
  c = load_config('vitb_finetune:dataset=k400', 'smoke')
  c.data.sampling = 'tsn'
  with pytest.raises(ConfigError, match=r"data.sampling='tsn': must be one of 'pretrain', 'dense', 'segment'"):
    schema.check(c)
  c = load_config('vitb_finetune:dataset=k400', 'smoke')
  c.data.update({'num_framez': 4})
  with pytest.raises(ConfigError, match=r"'data.num_framez' \(did you mean data.num_frames"):
    schema.check(c)


# --- VideoMAE V2 pretraining lists ------------------------------------------------------------------------------

def test_v2_pretraining_list_is_read_for_pretraining(tmp_path):
  (tmp_path / 'train.csv').write_text('# V2\n' + V2_LIST + 'clips/d.mp4,3\n')
  assert annotations.read_list(str(tmp_path / 'train.csv')) == [
      (2, 'clips/a.mp4', -1), (3, 'clips/b c.mp4', -1), (4, 'clips/d.mp4', 3)]
  src = ListSource(str(tmp_path), 'train', root='/data')
  assert src.unlabelled == 2 and src[1] == {'path': 'clips/b c.mp4', 'file': '/data/clips/b c.mp4', 'label': -1}
  assert pipeline.train_indices(src) == [0, 1, 2]
  with pytest.raises(SourceError, match=r'train\.csv: 2 of its 3 videos have no label .* data\.subset_per_class=1'):
    pipeline.train_indices(src, subset_per_class=1)
  assert annotations.parse_line('x/y z.mp4 12 -1') == ('x/y z.mp4', '-1', True)
  assert annotations.parse_line('x/y 12.mp4 7') == ('x/y 12.mp4', '7', False)
  assert annotations.parse_line('clip.mp4 -1') == ('clip.mp4', '-1', False)


def test_v2_pretraining_list_feeds_the_pretraining_pipeline(files, tmp_path):
  for split in ('train', 'val', 'test'):
    (tmp_path / f'{split}.csv').write_text('clip.mp4 0 -1\nclip.mp4 0 -1\n')
  cfg = schema.default_data_config()
  cfg.update(dict(source='list', path=str(tmp_path), root=str(files), num_frames=4, sampling_rate=2, input_size=32,
                  patch_size=8, tubelet_size=2))
  assert pipeline.num_train_videos(cfg) == 2
  batch = next(iter(pipeline.train_dataset(cfg, 'pretrain', 2, seed=0)))
  assert batch['video'].shape == (2, 4, 32, 32, 3) and (batch['label'] == -1).all()
  with pytest.raises(SourceError, match=r"train\.csv:1: 'clip\.mp4 0 -1' is a VideoMAE V2 pretraining line"):
    pipeline.train_dataset(cfg, 'finetune', 2, seed=0, num_classes=3)
  from vmae_jax.tasks import evaluation
  with pytest.raises(SourceError, match=r'train\.csv: 2 of its 2 videos have no label .* the kNN probe'):
    evaluation.features(None, None, cfg, 'train', 2, None, num_classes=None)   # before any step runs


def test_v2_pretraining_list_is_refused_for_fine_tuning(tmp_path):
  (tmp_path / 'train.csv').write_text('clips/ok.mp4 1\n' + V2_LIST)
  with pytest.raises(SourceError, match=r"train\.csv:2: 'clips/a\.mp4 0 -1' is a VideoMAE V2 pretraining line .*"
                                        r'labels in \[0, 5\)'):
    ListSource(str(tmp_path), 'train', num_classes=5)
  (tmp_path / 'val.csv').write_text('clips/ok.mp4 -2\n')
  with pytest.raises(SourceError, match=r'val\.csv:1: label -2 is negative'):
    ListSource(str(tmp_path), 'val')
  (tmp_path / 'test.csv').write_text('clips/ok.mp4 -1\n')
  with pytest.raises(SourceError, match=r'test\.csv:1: label -1 outside \[0, 5\)'):
    ListSource(str(tmp_path), 'test', num_classes=5)


def test_features_reads_v2_lists(tmp_path):
  (tmp_path / 'list.txt').write_text(V2_LIST)
  assert [(v.id, v.file) for v in features.list_videos(str(tmp_path / 'list.txt'), root='/r')] == [
      ('clips/a', '/r/clips/a.mp4'), ('clips/b c', '/r/clips/b c.mp4')]


def test_masks_name_the_ratio_and_the_token_count():
  with pytest.raises(ValueError, match=r'mask_ratio=0\.001 masks int\(0\.001 × 196\) = 0 of the 196 tokens'):
    schema.masking.tube_mask(np.random.default_rng(0), (8, 14, 14), 0.001)
  with pytest.raises(ValueError, match=r'= 0 of the 64 tokens of the clip \(random mask, 4x4x4 tokens\)'):
    schema.masking.random_mask(np.random.default_rng(0), (4, 4, 4), 0.01)
  assert schema.masking.tube_mask(np.random.default_rng(0), (2, 4, 4), 1 / 16).sum() == 2
