"""`python -m vmae_jax.data.prepare`: class-folder tree → official lists, class order, errors, re-encoded copies."""
import json
import os

import av
import numpy as np
import pytest

from vmae_jax.data import prepare, reencode


def _video(path, width=48, height=32, frames=6, seed=0):
  rng = np.random.default_rng(seed)
  data = reencode.encode_frames(rng.integers(0, 255, (frames, height, width, 3), dtype=np.uint8), 10)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data)


@pytest.fixture
def tree(tmp_path):
  """cat: 10 videos (one in a nested folder, one .webm-named mp4), dog: 5, empty_class: none; a stray text file."""
  root = tmp_path / 'videos'
  for i in range(10):
    sub = 'nested/' if i == 3 else ''
    ext = '.webm' if i == 7 else '.mp4'
    _video(str(root / 'cat' / f'{sub}cat{i}{ext}'), seed=i)
  for i in range(5):
    _video(str(root / 'dog' / f'dog{i}.mp4'), seed=100 + i)
  (root / 'empty_class').mkdir()
  (root / 'dog' / 'notes.txt').write_text('not a video')
  return root


def _read(out, split):
  with open(os.path.join(out, f'{split}.csv')) as f:
    return [(line.rsplit(' ', 1)[0], int(line.rsplit(' ', 1)[1])) for line in f.read().splitlines()]


def test_lists_labels_and_split_sizes(tree, tmp_path, capsys):
  out = tmp_path / 'lists'
  assert prepare.main([f'--videos={tree}', f'--out={out}', '--val_fraction=0.2', '--test_fraction=0.2']) == 0
  printed = capsys.readouterr().out
  assert f'root:  {tree}' in printed and 'empty_class' in printed and 'non-video' in printed
  assert open(out / 'classes.txt').read().split() == ['cat', 'dog', 'empty_class']   # sorted folder names
  splits = {s: _read(str(out), s) for s in ('train', 'val', 'test')}
  per = {s: {label: sum(1 for _, l in items if l == label) for label in (0, 1)} for s, items in splits.items()}
  assert per == {'train': {0: 6, 1: 3}, 'val': {0: 2, 1: 1}, 'test': {0: 2, 1: 1}}
  everything = [p for items in splits.values() for p, _ in items]
  assert len(everything) == len(set(everything)) == 15
  for items in splits.values():
    for rel, label in items:
      assert os.path.isfile(os.path.join(tree, rel))
      assert rel.split('/')[0] == ['cat', 'dog'][label]
  assert 'cat/nested/cat3.mp4' in everything and 'cat/cat7.webm' in everything
  # deterministic per seed, different for another seed
  again = tmp_path / 'again'
  prepare.main([f'--videos={tree}', f'--out={again}', '--val_fraction=0.2', '--test_fraction=0.2'])
  assert all(_read(str(again), s) == splits[s] for s in splits)
  other = tmp_path / 'other'
  prepare.main([f'--videos={tree}', f'--out={other}', '--val_fraction=0.2', '--test_fraction=0.2', '--seed=1'])
  assert _read(str(other), 'val') != splits['val']


def test_class_list_sets_the_label_order(tree, tmp_path):
  classes = tmp_path / 'classes.txt'
  classes.write_text('dog\nempty_class\ncat\nbird\n')
  out = tmp_path / 'lists'
  summary = prepare.prepare(str(tree), str(out), classes=str(classes), log=lambda *_: None)
  assert summary['classes'] == ['dog', 'empty_class', 'cat', 'bird']
  assert any('bird' in note for note in summary['notes'])       # listed, no folder: reported
  assert any('empty_class' in note for note in summary['notes'])
  labels = {rel.split('/')[0]: label for s in ('train', 'val', 'test') for rel, label in _read(str(out), s)}
  assert labels == {'dog': 0, 'cat': 2}
  assert open(out / 'classes.txt').read().split() == ['dog', 'empty_class', 'cat', 'bird']


def test_unknown_sub_folder_is_an_error_naming_it(tree, tmp_path, capsys):
  classes = tmp_path / 'classes.txt'
  classes.write_text('cat\n')
  with pytest.raises(prepare.PrepareError, match=r"\['dog', 'empty_class'\] are not in the class list"):
    prepare.prepare(str(tree), str(tmp_path / 'out'), classes=str(classes))
  assert prepare.main([f'--videos={tree}', f'--out={tmp_path / "out"}', f'--classes={classes}']) == 2
  assert "'dog'" in capsys.readouterr().err
  with pytest.raises(prepare.PrepareError, match='not a folder'):
    prepare.prepare(str(tmp_path / 'missing'), str(tmp_path / 'out'))


def test_reencoded_copies_never_upscale(tmp_path, capsys):
  videos = tmp_path / 'videos'
  _video(str(videos / 'big' / 'wide.mp4'), width=96, height=64, frames=12)
  _video(str(videos / 'big' / 'tall.mp4'), width=40, height=80, frames=12)
  _video(str(videos / 'small' / 'tiny.mp4'), width=30, height=20, frames=12)
  (videos / 'small' / 'broken.mp4').write_bytes(b'\x00' * 300)
  out = tmp_path / 'lists'
  assert prepare.main([f'--videos={videos}', f'--out={out}', '--short_side=32', '--gop=4', '--workers=1',
                       '--val_fraction=0', '--test_fraction=0']) == 0
  printed = capsys.readouterr().out
  root = str(out / 'videos')
  assert f'root:  {root}' in printed and 'skipped 1' in printed
  items = _read(str(out), 'train')
  assert sorted(items) == [('big/tall.mp4', 0), ('big/wide.mp4', 0), ('small/tiny.mp4', 1)]
  assert _read(str(out), 'val') == [] and _read(str(out), 'test') == []
  sizes = {}
  for rel, _ in items:
    with av.open(os.path.join(root, rel)) as container:
      frames = list(container.decode(video=0))
      sizes[rel] = (frames[0].width, frames[0].height)
      keys = [i for i, f in enumerate(frames) if f.key_frame]
      # a keyframe at least every gop frames (x264 adds one where a noise frame codes better as intra)
      assert keys[0] == 0 and max(np.diff(keys + [len(frames)])) <= 4, (rel, keys)
  assert sizes == {'big/wide.mp4': (48, 32), 'big/tall.mp4': (32, 64), 'small/tiny.mp4': (30, 20)}
  errors = [json.loads(line) for line in open(out / 'prepare_errors.jsonl')]
  assert [e['path'] for e in errors] == ['small/broken.mp4']
  # a second run reuses the copies; other settings into the same folder are refused
  mtime = os.path.getmtime(os.path.join(root, 'big/wide.mp4'))
  prepare.prepare(str(videos), str(out), short_side=32, gop=4, workers=1, val_fraction=0, test_fraction=0,
                  log=lambda *_: None)
  assert os.path.getmtime(os.path.join(root, 'big/wide.mp4')) == mtime
  with pytest.raises(prepare.PrepareError, match='holds copies made with'):
    prepare.prepare(str(videos), str(out), short_side=16, workers=1, log=lambda *_: None)


def test_split_counts_keep_train_and_honour_fractions():
  assert prepare.split_counts(10, 0.1, 0.1) == (1, 1)
  assert prepare.split_counts(3, 0.1, 0.1) == (1, 1)     # a non-zero share gets one video…
  assert prepare.split_counts(2, 0.1, 0.1) == (1, 0)     # …as long as train keeps one (val before test)
  assert prepare.split_counts(1, 0.5, 0.4) == (0, 0)
  assert prepare.split_counts(100, 0.0, 0.25) == (0, 25)
