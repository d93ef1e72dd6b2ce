"""The Grain graph: example contents, determinism with and without worker processes, exact resume, bad input."""
import json

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from vmae_jax.data import pipeline
from vmae_jax.data.annotations import SourceError
from vmae_jax.data.sources import ListSource, make_source
from vmae_jax.data.videogen import write_video
from vmae_jax.parallel import device_batch
from vmae_jax.train import schema

NUM_GOOD = 10


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """10 good videos plus 22 broken entries of every kind the issue lists."""
  root = tmp_path_factory.mktemp('corpus')
  good = []
  for i in range(NUM_GOOD):
    name = f'good_{i}.mp4' if i % 3 else f'good_{i}.webm'
    write_video(str(root / name), num_frames=40 + 3 * i, width=64, height=48, fps=25,
                codec='libx264' if i % 3 else 'libvpx-vp9', seed=i)
    good.append(name)
  good_bytes = (root / good[1]).read_bytes()
  bad = []
  for k in range(4):
    (root / f'zero_{k}.mp4').write_bytes(b'')
    (root / f'trunc_{k}.mp4').write_bytes(good_bytes[:200 + 300 * k])
    (root / f'garbage_{k}.mp4').write_bytes(np.random.default_rng(k).integers(0, 256, 4000, np.uint8).tobytes())
    (root / f'text_{k}.avi').write_text('this is not a video\n' * (k + 1))
    (root / f'dir_{k}.mp4').mkdir()
    bad += [f'zero_{k}.mp4', f'trunc_{k}.mp4', f'garbage_{k}.mp4', f'text_{k}.avi', f'dir_{k}.mp4']
  bad += ['missing_0.mp4', 'sub/missing_1.mp4']
  corrupt = bytearray(good_bytes)
  corrupt[len(corrupt) // 3:len(corrupt) // 3 + 2000] = bytes(2000)  # header intact, payload destroyed
  (root / 'corrupt.mp4').write_bytes(bytes(corrupt))
  lists = tmp_path_factory.mktemp('lists')
  for split in ('train', 'val', 'test'):
    with open(lists / f'{split}.csv', 'w') as f:
      for i, name in enumerate(good):
        f.write(f'{name} {i % 3}\n')
  mixed = tmp_path_factory.mktemp('mixed')
  entries = [(n, i % 3) for i, n in enumerate(good)] + [(n, 1) for n in bad] + [('corrupt.mp4', 2)]
  order = np.random.default_rng(0).permutation(len(entries))
  for split in ('train', 'val', 'test'):
    with open(mixed / f'{split}.csv', 'w') as f:
      for j in order:
        f.write(f'{entries[j][0]} {entries[j][1]}\n')
  return dict(root=str(root), lists=str(lists), mixed=str(mixed), good=good, bad=bad)


def _cfg(corpus, path_key='lists', **kw):
  cfg = schema.default_data_config()
  cfg.update(dict(source='list', path=corpus[path_key], root=corpus['root'], num_frames=8, sampling_rate=2,
                  input_size=32, patch_size=8, tubelet_size=2, num_sample=2, decoder_mask_type='run_cell'))
  cfg.update(kw)
  return cfg


def _take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


def _equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_pretrain_example_contents(corpus):
  batch = _take(pipeline.train_dataset(_cfg(corpus), 'pretrain', batch_size=3, seed=0), 1)[0]
  # 3 videos × num_sample 2 = 6 clips, uint8 (normalised on device), masks with static counts.
  assert batch['video'].shape == (6, 8, 32, 32, 3) and batch['video'].dtype == np.uint8
  # grid (4, 4, 4): int(0.9·16) = 14 masked per slice → 4·2 visible; running cell keeps half of 64.
  assert batch['visible_idx'].shape == (6, 4 * 2) and batch['pred_idx'].shape == (6, 4 * 16 // 2)
  assert batch['loss_weight'].shape == (6, 32) and batch['label'].shape == (6,)
  assert batch['skipped'].shape == (3,) and not batch['skipped'].any()
  # The two samples of one video are different augmentations of the same clip, with different masks.
  assert not np.array_equal(batch['video'][0], batch['video'][1])
  assert batch['label'][0] == batch['label'][1]


def test_deterministic_with_and_without_workers(corpus):
  inline = _take(pipeline.train_dataset(_cfg(corpus, workers=0), 'pretrain', 2, seed=7), 6)
  again = _take(pipeline.train_dataset(_cfg(corpus, workers=0), 'pretrain', 2, seed=7), 6)
  workers = _take(pipeline.train_dataset(_cfg(corpus, workers=2), 'pretrain', 2, seed=7), 6)
  for a, b, c in zip(inline, again, workers):
    _equal(a, b)
    _equal(a, c)
  other = _take(pipeline.train_dataset(_cfg(corpus), 'pretrain', 2, seed=8), 1)[0]
  assert not np.array_equal(other['video'], inline[0]['video'])


def test_epochs_reshuffle(corpus):
  batches = _take(pipeline.train_dataset(_cfg(corpus, num_sample=1), 'pretrain', NUM_GOOD, seed=0), 2)
  first, second = (sorted(b['index'].tolist()) for b in batches)
  assert first == second == list(range(NUM_GOOD))  # every video once per epoch
  assert batches[0]['index'].tolist() != batches[1]['index'].tolist()  # in a new order


def test_resume_mid_epoch_exactly(corpus, tmp_path):
  ds = pipeline.train_dataset(_cfg(corpus, workers=2), 'pretrain', 2, seed=3)
  it = iter(ds)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(4)]
  fresh = iter(pipeline.train_dataset(_cfg(corpus, workers=2), 'pretrain', 2, seed=3))
  fresh.set_state(state)
  for a, b in zip(expected, [next(fresh) for _ in range(4)]):
    _equal(a, b)
  # The same through orbax with grain's checkpoint handler, as training saves it.
  it2 = iter(pipeline.train_dataset(_cfg(corpus), 'pretrain', 2, seed=3))
  for _ in range(3):
    next(it2)
  with ocp.CheckpointManager(str(tmp_path / 'ck'), item_names=('data_iter',)) as mngr:
    mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it2)))
    mngr.wait_until_finished()
  it3 = iter(pipeline.train_dataset(_cfg(corpus), 'pretrain', 2, seed=3))
  with ocp.CheckpointManager(str(tmp_path / 'ck'), item_names=('data_iter',)) as mngr:
    mngr.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(it3)))
  for a, b in zip(expected, [next(it3) for _ in range(4)]):
    _equal(a, b)


def test_broken_corpus_training_never_crashes_and_counts(corpus, tmp_path):
  cfg = _cfg(corpus, 'mixed', num_sample=1, max_failure_share=0.9)
  n = NUM_GOOD + len(corpus['bad']) + 1  # + the payload-damaged file
  assert len(corpus['bad']) >= 20
  run = lambda d: list(pipeline.train_dataset(cfg, 'pretrain', 1, seed=0, error_dir=str(d), num_epochs=1))
  batches = run(tmp_path / 'w1')
  assert len(batches) == n  # every entry yields exactly one example
  bad_paths = set(corpus['bad']) | {'corrupt.mp4'}
  for b in batches:
    assert b['video'].shape == (1, 8, 32, 32, 3)
  lines = [json.loads(l) for l in open(tmp_path / 'w1' / 'data_errors.jsonl')]
  reported = [l['path'] for l in lines]
  assert len(reported) == len(set(reported))  # each reported once
  assert set(reported) <= bad_paths and set(corpus['bad']) <= set(reported)  # every broken entry was met
  assert all(l['reason'] for l in lines)
  skipped = sum(int(b['skipped'].sum()) for b in batches)
  assert skipped >= len(corpus['bad'])
  # Replacements are deterministic: the same run gives the same examples and the same skip count.
  again = run(tmp_path / 'w2')
  assert sum(int(b['skipped'].sum()) for b in again) == skipped
  for a, b in zip(batches, again):
    _equal(a, b)


def test_broken_corpus_eval_counts_exactly(corpus, tmp_path):
  cfg = _cfg(corpus, 'mixed', test_num_segment=2, test_num_crop=3, short_side=32, sampling='dense')
  batches = list(pipeline.eval_dataset(cfg, 4, error_dir=str(tmp_path), split='test'))
  valid = np.concatenate([b['valid'] for b in batches])
  assert len(valid) == NUM_GOOD + len(corpus['bad']) + 1
  # "N of M videos evaluated": exactly the readable ones (a payload-damaged file may still decode: FFmpeg conceals).
  corrupt_readable = pipeline.EvalExample(make_source(cfg, 'test'), cfg, None, True)(
      [make_source(cfg, 'test')[i]['path'] for i in range(len(valid))].index('corrupt.mp4'))['valid']
  assert int(valid.sum()) == NUM_GOOD + int(corrupt_readable)
  assert batches[0]['video'].shape[1:] == (6, 8, 32, 32, 3)
  for b in batches:
    assert not b['video'][~b['valid']].any()


def test_failure_share_stops_a_bad_source():
  monitor = pipeline.FailureMonitor(max_share=0.5, window=100)
  monitor.update({'skipped': np.array([0, 1, 0, 2])})
  assert monitor.metrics() == {'data/skipped': 3}
  with pytest.raises(pipeline.DataError, match='failed to load'):
    for _ in range(20):
      monitor.update({'skipped': np.array([3, 3])})


def test_list_source_errors_name_file_and_line(tmp_path):
  (tmp_path / 'train.csv').write_text('a.mp4 1\nb.mp4,2\nc d.mp4 0\n')
  src = ListSource(str(tmp_path), 'train', root='/data', num_classes=3)
  assert [src[i]['path'] for i in range(3)] == ['a.mp4', 'b.mp4', 'c d.mp4']
  assert src[1]['label'] == 2 and src[0]['file'] == '/data/a.mp4'
  (tmp_path / 'val.csv').write_text('a.mp4 1\nb.mp4 7\n')
  with pytest.raises(SourceError, match=r'val\.csv:2: label 7 outside \[0, 3\)'):
    ListSource(str(tmp_path), 'val', num_classes=3)
  (tmp_path / 'test.csv').write_text('a.mp4 1\nnolabel\n')
  with pytest.raises(SourceError, match=r'test\.csv:2'):
    ListSource(str(tmp_path), 'test')
  (tmp_path / 'test.csv').write_text('a.mp4 x1\n')
  with pytest.raises(SourceError, match=r"test\.csv:1: label 'x1' is not an integer"):
    ListSource(str(tmp_path), 'test')
  (tmp_path / 'test.csv').write_text('\n')
  with pytest.raises(SourceError, match='empty'):
    ListSource(str(tmp_path), 'test')


def test_global_batch_on_a_mesh(corpus):
  batch = _take(pipeline.train_dataset(_cfg(corpus), 'pretrain', 2, seed=0), 1)[0]
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), ('data', 'fsdp', 'tensor'))
  g = device_batch.global_batch({'video': batch['video'], 'visible_idx': batch['visible_idx']}, mesh)
  assert g['video'].shape == batch['video'].shape
  np.testing.assert_array_equal(np.asarray(g['visible_idx']), batch['visible_idx'])
  video = device_batch.normalize_on_device(g['video'])
  np.testing.assert_allclose(np.asarray(video)[0, 0, 0, 0],
                             (batch['video'][0, 0, 0, 0] / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
                             rtol=1e-5)


def test_synthetic_source_is_the_default_without_a_path(tmp_path):
  """data.source='' and no path: the embedded motion dataset, generated into the configured cache folder and read
  through exactly the same list + decode path."""
  cfg = schema.default_data_config()
  cfg.update(dict(num_frames=8, sampling_rate=2, input_size=32, patch_size=8, num_sample=1, workers=0))
  cfg.synthetic = dict(cache_dir=str(tmp_path), clips_per_class=4, num_frames=16, size=32, num_workers=1)
  src = make_source(cfg, 'train')
  assert len(src) >= 8 and src[0]['file'].endswith('.mp4') and src[0]['file'].startswith(str(tmp_path))
  batch = _take(pipeline.train_dataset(cfg, 'pretrain', 4, seed=0), 1)[0]
  assert batch['video'].shape == (4, 8, 32, 32, 3) and not batch['skipped'].any()


def test_finetune_batches_with_mixup(corpus):
  cfg = _cfg(corpus, num_sample=2, rand_augment=False)
  batch = _take(pipeline.train_dataset(cfg, 'finetune', 2, seed=0, num_classes=3), 1)[0]
  assert batch['video'].shape == (4, 8, 32, 32, 3) and batch['video'].dtype == np.float32
  assert batch['target'].shape == (4, 3)
  np.testing.assert_allclose(batch['target'].sum(-1), 1.0, atol=1e-6)
  assert (batch['target'].max(-1) < 1.0).all()  # smoothed and mixed, never one-hot
  again = _take(pipeline.train_dataset(cfg, 'finetune', 2, seed=0, num_classes=3), 1)[0]
  _equal(batch, again)
  cfg.mixup = cfg.cutmix = 0.0
  plain = _take(pipeline.train_dataset(cfg, 'finetune', 2, seed=0, num_classes=3), 1)[0]
  assert 'target' not in plain
  with pytest.raises(ValueError, match='num_classes'):
    pipeline.train_dataset(_cfg(corpus), 'finetune', 2, seed=0)
