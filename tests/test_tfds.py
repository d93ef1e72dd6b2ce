"""TFDS array_record packing without TensorFlow: video bytes (as-is and re-encoded) and JPEG frames, read back as
random-access decode-stage records; bad videos are recorded skips."""
import importlib
import io
import json
import os
import pickle
import shutil

import av
import numpy as np
import pytest
from PIL import Image

from vmae_jax.data import synthetic_cache, tfds_builder
from vmae_jax.data.annotations import SourceError

TINY = dict(clips_per_class=3, num_frames=16, size=32)


def test_tensorflow_is_not_installed():
  # The point of these tests: everything below runs without TF.
  with pytest.raises(ImportError):
    importlib.import_module('tensorflow')


@pytest.fixture(scope='module')
def lists(tmp_path_factory):
  """The tiny synthetic dataset as root, and an annotation folder whose train list adds a missing file and a
  file that is not a video."""
  base = tmp_path_factory.mktemp('tfds')
  root = synthetic_cache.ensure_synthetic(cache_dir=str(base / 'cache'), num_workers=1, **TINY)
  ann = base / 'ann'
  ann.mkdir()
  for name in ('train.csv', 'val.csv', 'test.csv', 'classes.txt'):
    shutil.copy(os.path.join(root, name), ann / name)
  (base / 'junk').mkdir()
  (base / 'junk' / 'not_a_video.mp4').write_bytes(b'this is not a video ' * 40)
  junk_root = str(base)
  with open(ann / 'train.csv', 'a') as f:
    f.write('videos/missing.mp4 3\n')
  return dict(base=base, root=root, ann=str(ann), junk_root=junk_root)


def _decode_bytes(data):
  with av.open(io.BytesIO(data)) as container:
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(stream)])
  with av.open(io.BytesIO(data)) as container:
    keyframes = [i for i, f in enumerate(container.decode(video=0)) if f.key_frame]
  return codec, frames, keyframes


def _csv(folder, split):
  with open(os.path.join(folder, f'{split}.csv')) as f:
    return [(line.rsplit(' ', 1)[0], int(line.rsplit(' ', 1)[1])) for line in f.read().splitlines()]


@pytest.mark.parametrize('kwargs,size,gop', [
    (dict(storage='video'), 32, None),
    (dict(storage='video', short_side=16, gop=4), 16, 4),
    (dict(storage='video', short_side=64), 32, None),   # never upscaled
])
def test_video_storage_roundtrip(lists, tmp_path, kwargs, size, gop):
  out = tfds_builder.build(lists['ann'], lists['root'], str(tmp_path / 'data'), **kwargs)
  assert os.path.isfile(os.path.join(out, 'dataset_info.json'))
  for split in ('train', 'val', 'test'):
    source = tfds_builder.load_source(str(tmp_path / 'data'), split)
    expected = _csv(lists['root'], split)
    assert len(source) == len(expected)
    # records keep the list order; labels and paths match the csv
    assert [(source[i]['path'], source[i]['label']) for i in range(len(source))] == expected
    record = source[-1]
    assert set(record) == {'path', 'label', 'video_bytes', 'num_frames', 'fps', 'height', 'width'}
    assert isinstance(record['video_bytes'], bytes) and isinstance(record['path'], str)
    codec, frames, keyframes = _decode_bytes(record['video_bytes'])
    assert codec == 'h264' and frames.shape == (16, size, size, 3)
    assert (record['num_frames'], record['height'], record['width'], record['fps']) == (16, size, size, 25.0)
    if gop:
      assert keyframes == list(range(0, 16, gop))
  if not kwargs.get('short_side') and not kwargs.get('gop'):
    # stored as-is: the exact bytes of the file
    rel = source[0]['path']
    assert source[0]['video_bytes'] == open(os.path.join(lists['root'], rel), 'rb').read()


def test_jpeg_storage_roundtrip_and_pickling(lists, tmp_path):
  out = tfds_builder.build(lists['ann'], lists['root'], str(tmp_path / 'data'), storage='jpeg', short_side=16,
                           jpeg_quality=95)
  source = tfds_builder.load_source(out, 'val')
  expected = _csv(lists['root'], 'val')
  assert len(source) == len(expected)
  for i in (0, len(source) - 1):
    record = source[i]
    assert set(record) == {'path', 'label', 'jpeg_frames', 'num_frames', 'fps', 'height', 'width'}
    assert (record['path'], record['label']) == expected[i]
    frames = [np.asarray(Image.open(io.BytesIO(j)).convert('RGB')) for j in record['jpeg_frames']]
    assert len(frames) == record['num_frames'] == 16
    assert all(f.shape == (16, 16, 3) for f in frames)
    # the frames are the video's frames (downscaled): compare with a decode of the original at 16 px
    with av.open(os.path.join(lists['root'], record['path'])) as container:
      reference = [f.to_ndarray(format='rgb24', width=16, height=16) for f in container.decode(video=0)]
    err = np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(frames, reference)])
    assert err < 12, err
  # Grain workers get the source by pickle
  clone = pickle.loads(pickle.dumps(source))
  assert len(clone) == len(source) and clone[1]['jpeg_frames'] == source[1]['jpeg_frames']
  assert [r['path'] for r in source.__getitems__([2, 0])] == [expected[2][0], expected[0][0]]
  with pytest.raises(IndexError, match='index 99'):
    source[99]
  import grain
  dataset = grain.MapDataset.source(source).map(lambda r: (r['label'], len(r['jpeg_frames'])))
  assert [dataset[i] for i in range(len(dataset))] == [(label, 16) for _, label in expected]


def test_bad_videos_are_recorded_skips(lists, tmp_path):
  ann = tmp_path / 'ann'
  shutil.copytree(lists['ann'], ann)
  # paths relative to a root that also holds the junk file
  root = lists['junk_root']
  rel_root = os.path.relpath(lists['root'], root)
  for split in ('train', 'val', 'test'):
    lines = [f'{rel_root}/{p} {l}' if not p.startswith('videos/missing') else f'{p} {l}'
             for p, l in _csv(ann, split)]
    if split == 'train':
      lines.append('junk/not_a_video.mp4 2')
    (ann / f'{split}.csv').write_text('\n'.join(lines) + '\n')
  out = tfds_builder.build(str(ann), root, str(tmp_path / 'data'), storage='jpeg')
  source = tfds_builder.load_source(out, 'train')
  assert len(source) == 8                           # 8 good, 2 skipped
  with open(os.path.join(out, tfds_builder.ERRORS_FILE)) as f:
    errors = [json.loads(line) for line in f]
  assert [(e['split'], e['path']) for e in errors] == [('train', 'videos/missing.mp4'),
                                                       ('train', 'junk/not_a_video.mp4')]
  assert 'FileNotFoundError' in errors[0]['reason'] and 'not_a_video.mp4' in errors[1]['reason']
  assert errors[0]['line'] == 9 and errors[1]['line'] == 10


def test_a_split_with_no_readable_video_stops_with_a_clear_error(lists, tmp_path):
  ann = tmp_path / 'ann'
  ann.mkdir()
  shutil.copy(os.path.join(lists['root'], 'train.csv'), ann / 'train.csv')
  (ann / 'val.csv').write_text('videos/nothing_here.mp4 0\n')
  with pytest.raises(tfds_builder.BuildError, match=r"val\.csv: no video of split 'val'.*nothing_here"):
    tfds_builder.build(str(ann), lists['root'], str(tmp_path / 'data'))


def test_bad_lists_and_arguments_name_the_problem(lists, tmp_path):
  ann = tmp_path / 'ann'
  ann.mkdir()
  (ann / 'train.csv').write_text('videos/a.mp4 0\nvideos/b.mp4 x\n')
  with pytest.raises(SourceError, match=r'train\.csv:2: label .x. is not an integer'):
    tfds_builder.build(str(ann), lists['root'], str(tmp_path / 'data'))
  (ann / 'train.csv').write_text('videos/a.mp4 9\n')
  with pytest.raises(SourceError, match=r'train\.csv:1: label 9 outside \[0, 8\)'):
    tfds_builder.build(str(ann), lists['root'], str(tmp_path / 'data'), num_classes=8)
  with pytest.raises(tfds_builder.BuildError, match='storage'):
    tfds_builder.build(lists['ann'], lists['root'], str(tmp_path / 'data'), storage='png')
  with pytest.raises(tfds_builder.BuildError, match='no packed dataset'):
    tfds_builder.load_source(str(tmp_path / 'nothing'), 'train')


def test_fast_decode_intra_packing_reads_only_wanted_frames(tmp_path, monkeypatch):
  """keyframe interval 1 + fast_decode: the decode stage serves any frames without the general path."""
  from vmae_jax.data import decode, tfds_builder
  from vmae_jax.data.videogen import write_video
  (tmp_path / 'v').mkdir()
  write_video(str(tmp_path / 'v' / 'a.mp4'), num_frames=30, width=64, height=48)
  (tmp_path / 'train.csv').write_text('a.mp4 0\n')
  out = tfds_builder.build(str(tmp_path), str(tmp_path / 'v'), str(tmp_path / 'data'), short_side=320, gop=1,
                           fast_decode=True)
  assert out.split(os.sep)[-2].endswith('_g1_crf23_fd')
  record = tfds_builder.load_source(str(tmp_path / 'data'), 'train')[0]

  def fail(*a, **k):
    raise AssertionError('general decode path used')
  monkeypatch.setattr(decode, '_decode_seeking', fail)
  frames = decode.decode_frames(record, [29, 3, 17])
  assert frames.shape == (3, 48, 64, 3)


def test_shards_are_stored_uncompressed(tmp_path):
  from array_record.python import array_record_module

  from vmae_jax.data.videogen import write_video
  (tmp_path / 'v').mkdir()
  write_video(str(tmp_path / 'v' / 'a.mp4'), num_frames=12, width=32, height=32)
  (tmp_path / 'train.csv').write_text('a.mp4 0\n')
  out = tfds_builder.build(str(tmp_path), str(tmp_path / 'v'), str(tmp_path / 'data'))
  shards = [f for f in os.listdir(out) if '.array_record' in f]
  assert shards
  for f in shards:
    assert 'uncompressed' in array_record_module.ArrayRecordReader(os.path.join(out, f)).writer_options_string()
  record = tfds_builder.load_source(out, 'train')[0]
  assert record['video_bytes'] == (tmp_path / 'v' / 'a.mp4').read_bytes()
