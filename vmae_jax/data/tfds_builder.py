"""Pack any annotation list (the official `train.csv`/`val.csv`/`test.csv` layout) into TFDS array_record shards,
without TensorFlow, and read them back as a random-access source for Grain.

Why: millions of small video files are slow to list, open and copy onto TPU/GPU hosts; a few large array_record
shards are one sequential copy and give O(1) random access by index. TensorFlow is not needed: a
GeneratorBasedBuilder with `file_format='array_record'` built by `download_and_prepare` and read with
`as_data_source` works without it, as long as the features avoid the TF-backed connectors (`tfds.features.Video`
and the `tfds build` CLI need TF; docs/data.md, "TFDS"). So every example stores the encoded bytes as a
`Tensor(shape=(), dtype=object)` and decodes on the host with PyAV, like a file on disk.

Two storages:
- `video`: the container bytes, as they are or re-encoded by `reencode()` (H.264, short side, fixed GOP: faster
  seeking and smaller frames);
- `jpeg`: every frame as a JPEG, all of a video's JPEGs concatenated in the one bytes field, plus the start offsets
  (int64, one per frame): decoding a frame is one JPEG decode, no seeking.

A video that cannot be read is skipped at build time: logged and written to `build_errors.jsonl` (one JSON object
per line: split, line, path, reason) next to the shards. One bad file never stops the build.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import json
import logging
import os
import shutil
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from vmae_jax.constants import SPLITS  # <split>.csv in the annotation folder → TFDS split <split>
from vmae_jax.data import reencode
from vmae_jax.data.annotations import SPLIT_FILES, read_list

STORAGES = ('video', 'jpeg')
ERRORS_FILE = 'build_errors.jsonl'

log = logging.getLogger(__name__)


class BuildError(ValueError):
  """An annotation list or a build setting is unusable; the message names the file and line or the argument."""


# ---------------------------------------------------------------------------------------------------------------
# Annotation lists


def available_splits(annotation_dir: str) -> list[str]:
  """The splits whose `<split>.csv` exists and holds at least one line, in train/val/test order."""
  found = []
  for split in SPLITS:
    path = os.path.join(annotation_dir, SPLIT_FILES[split])
    if os.path.isfile(path):
      with open(path) as f:
        if any(line.strip() and not line.startswith('#') for line in f):
          found.append(split)
  return found


# ---------------------------------------------------------------------------------------------------------------
# Builder


@dataclasses.dataclass(eq=False)
class VmaeVideosConfig(tfds.core.BuilderConfig):
  """How videos are stored. The name is derived from the settings, so different packings of the same list can
  live side by side in one data_dir (`vmae_videos/<name>/1.0.0`)."""
  storage: str = 'video'
  short_side: int | None = None
  gop: int | None = None
  crf: int = 23
  jpeg_quality: int = 90
  fast_decode: bool = False


# What x264's `fastdecode` tune turns off: CABAC (entropy decoding is the bulk of intra decode time) and the
# deblocking filter. With gop=1 the decode stage reads only the wanted frames; measured ~2x faster per clip.
FAST_DECODE_X264 = 'no-cabac=1:no-deblock=1'


def make_config(storage: str = 'video', short_side: int | None = None, gop: int | None = None, crf: int = 23,
                jpeg_quality: int = 90, fast_decode: bool = False) -> VmaeVideosConfig:
  """A config named after its settings: `video`, `video_s320_g16_crf23`, `jpeg_q90`, `jpeg_q90_s224`, …"""
  if storage not in STORAGES:
    raise BuildError(f'storage={storage!r} unknown; choose from {STORAGES}')
  if short_side is not None and short_side < 2:
    raise BuildError(f'short_side={short_side}: must be ≥ 2 (or None to keep the size)')
  if gop is not None and gop < 1:
    raise BuildError(f'gop={gop}: must be ≥ 1 (or None for the encoder default)')
  if storage == 'video':
    reencoding = short_side is not None or gop is not None or fast_decode
    name = 'video' if not reencoding else f'video_s{short_side or 0}_g{gop or 0}_crf{crf}' + ('_fd' if fast_decode
                                                                                               else '')
  else:
    if gop is not None or fast_decode:
      raise BuildError('gop and fast_decode only apply to storage="video" (JPEG frames have no keyframes)')
    name = f'jpeg_q{jpeg_quality}' + (f'_s{short_side}' if short_side else '')
  return VmaeVideosConfig(name=name, storage=storage, short_side=short_side, gop=gop, crf=crf,
                          jpeg_quality=jpeg_quality, fast_decode=fast_decode,
                          description=f'storage={storage}, short_side={short_side}, gop={gop}, crf={crf}, '
                                      f'jpeg_quality={jpeg_quality}')


def _pack_one(path: str, config: VmaeVideosConfig, verify: bool) -> dict[str, Any]:
  """Read one video and return the stored fields (raises on any problem; the caller records it)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file')
  if os.path.getsize(path) == 0:
    raise ValueError(f'{path}: zero-byte file')
  if config.storage == 'jpeg':
    src_info = reencode.probe(path)
    jpegs = reencode.encode_jpeg_frames(path, short_side=config.short_side, quality=config.jpeg_quality)
    sizes = np.array([len(j) for j in jpegs], dtype=np.int64)
    from PIL import Image  # only the first JPEG's header, for the stored size
    width, height = Image.open(io.BytesIO(jpegs[0])).size
    return dict(video=b''.join(jpegs), jpeg_offsets=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
                num_frames=len(jpegs), fps=src_info['fps'], height=height, width=width)
  if config.short_side is not None or config.gop is not None or config.fast_decode:
    data = reencode.reencode(path, short_side=config.short_side, gop=config.gop, crf=config.crf, threads=1,
                             x264_params=FAST_DECODE_X264 if config.fast_decode else None)
    info = reencode.probe(data)
  else:
    info = reencode.probe(path)   # by path, so its errors name the file
    with open(path, 'rb') as f:
      data = f.read()
  num_frames = reencode.count_frames(data) if verify else info['num_frames']
  return dict(video=data, jpeg_offsets=np.zeros((0,), np.int64), num_frames=num_frames, fps=info['fps'],
              height=info['height'], width=info['width'])


class VmaeVideos(tfds.core.GeneratorBasedBuilder):
  """Videos listed in `<annotation_dir>/{train,val,test}.csv` (paths relative to `root`), packed per `config`.

  Build with `build()` (or construct with annotation_dir/root and call download_and_prepare); read with
  `load_source()`, which does not need this class or the annotation folder.
  """
  name = 'vmae_videos'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'video bytes or concatenated JPEG frames + offsets; label, path, frame metadata'}
  BUILDER_CONFIGS = [make_config('video'), make_config('jpeg')]

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # tfds derives this from the package via importlib_resources (an etils[epath] extra); where that backport is
    # missing, download_and_prepare fails on the lookup. The module file is the answer anyway.
    return epath.Path(__file__)

  def __init__(self, *, annotation_dir: str | None = None, root: str | None = None,
               num_classes: int | None = None, num_workers: int | None = None, verify: bool = False, **kwargs):
    self._annotation_dir = annotation_dir
    self._root = root
    self._num_classes = num_classes
    self._num_workers = num_workers or min(8, os.cpu_count() or 1)
    self._verify = verify
    self.build_errors: list[dict[str, Any]] = []
    self.packed: dict[str, int] = {}   # split → examples written
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=('Videos from a VideoMAE-style annotation list. `video` holds the encoded container bytes '
                     '(storage=video) or all JPEG frames concatenated (storage=jpeg, frame i is '
                     'video[jpeg_offsets[i]:jpeg_offsets[i+1]]).'),
        features=tfds.features.FeaturesDict({
            # Tensor(object) and Scalar/Text/Tensor(int64) serialise without TF; Video/Image need it.
            'video': tfds.features.Tensor(shape=(), dtype=np.object_),
            'jpeg_offsets': tfds.features.Tensor(shape=(None,), dtype=np.int64),
            'label': tfds.features.Scalar(dtype=np.int64),
            'path': tfds.features.Text(),
            'num_frames': tfds.features.Scalar(dtype=np.int64),
            'fps': tfds.features.Scalar(dtype=np.float32),
            'height': tfds.features.Scalar(dtype=np.int64),
            'width': tfds.features.Scalar(dtype=np.int64),
            'storage': tfds.features.Text(),
        }),
        # Keep the list order (minus skipped videos): record i is easy to match against the csv.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    if not self._annotation_dir or self._root is None:
      raise BuildError('VmaeVideos needs annotation_dir= and root= to build (reading a built dataset does not)')
    splits = available_splits(self._annotation_dir)
    if not splits:
      raise BuildError(f'{self._annotation_dir}: no non-empty train.csv, val.csv or test.csv')
    return {split: self._generate_examples(split) for split in splits}

  def _generate_examples(self, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    list_file = os.path.join(self._annotation_dir, SPLIT_FILES[split])
    items = read_list(list_file, self._num_classes)
    config: VmaeVideosConfig = self.builder_config
    skipped = 0

    def work(item):
      lineno, rel, label = item
      try:
        return item, _pack_one(os.path.join(self._root, rel), config, self._verify), None
      except Exception as e:  # any failure of one video is a recorded skip, never a failed build
        return item, None, f'{type(e).__name__}: {e}'

    # Threads: PyAV/libav decode and encode release the GIL. A bounded window keeps memory flat on huge lists
    # and the output in list order.
    with concurrent.futures.ThreadPoolExecutor(self._num_workers) as pool:
      window: collections.deque = collections.deque()
      pending = iter(items)
      def fill():
        while len(window) < 4 * self._num_workers:
          nxt = next(pending, None)
          if nxt is None:
            return
          window.append(pool.submit(work, nxt))
      fill()
      while window:
        (lineno, rel, label), fields, error = window.popleft().result()
        fill()
        if error is not None:
          skipped += 1
          record = dict(split=split, line=lineno, path=rel, reason=error)
          self.build_errors.append(record)
          log.warning('vmae_videos: skipping %s (%s:%d): %s', rel, list_file, lineno, error)
          continue
        self.packed[split] = self.packed.get(split, 0) + 1
        yield f'{lineno:010d}', dict(fields, label=label, path=rel, storage=config.storage)
    if skipped:
      log.warning('vmae_videos: %s: skipped %d of %d videos (see %s)', split, skipped, len(items), ERRORS_FILE)


# ---------------------------------------------------------------------------------------------------------------
# Build and read


def _write_errors(path: str, errors: list[dict[str, Any]]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    for record in errors:
      f.write(json.dumps(record) + '\n')


def build(annotation_dir: str, root: str, data_dir: str, storage: str = 'video', short_side: int | None = None,
          gop: int | None = None, jpeg_quality: int = 90, num_classes: int | None = None, crf: int = 23,
          num_workers: int | None = None, verify: bool = False, fast_decode: bool = False) -> str:
  """Pack the lists in `annotation_dir` (paths relative to `root`) into `<data_dir>/vmae_videos/<config>/1.0.0`.

  Returns that folder (pass it, or `data_dir` when it holds one packing, to `load_source`). A finished packing is
  reused as it is. Skipped videos go to `<folder>/build_errors.jsonl`; `classes.txt` is copied when present.
  `verify=True` decodes every video fully (exact frame count, catches corruption past the first frame).
  """
  if not os.path.isdir(annotation_dir):
    raise BuildError(f'annotation_dir={annotation_dir!r} is not a folder')
  if not os.path.isdir(root):
    raise BuildError(f'root={root!r} is not a folder')
  config = make_config(storage, short_side, gop, crf, jpeg_quality, fast_decode)
  # tfds refuses a config object that shares a predefined config's name: pass those by name.
  predefined = {c.name for c in VmaeVideos.BUILDER_CONFIGS}
  builder = VmaeVideos(annotation_dir=annotation_dir, root=root, num_classes=num_classes, num_workers=num_workers,
                       verify=verify, data_dir=data_dir, config=config.name if config.name in predefined else config,
                       file_format='array_record')
  out = os.fspath(builder.data_dir)
  try:
    builder.download_and_prepare()
  except Exception as e:
    # tfds cannot write an empty split. That is not one bad file but a whole list that fails (a wrong root, a
    # missing mount): stop, and keep the reasons next to where the dataset would have been.
    empty = [split for split in available_splits(annotation_dir) if builder.build_errors
             and any(r['split'] == split for r in builder.build_errors) and not builder.packed.get(split)]
    if not empty:
      raise
    errors_at = os.path.join(os.path.dirname(out), ERRORS_FILE)
    _write_errors(errors_at, builder.build_errors)
    first = next(r for r in builder.build_errors if r['split'] == empty[0])
    raise BuildError(f'{os.path.join(annotation_dir, empty[0] + ".csv")}: no video of split {empty[0]!r} could be '
                     f'read (root={root!r}); first: {first["path"]}: {first["reason"]}; all skips in {errors_at}'
                     ) from e
  store_uncompressed(out)
  if builder.build_errors:
    _write_errors(os.path.join(out, ERRORS_FILE), builder.build_errors)
  classes = os.path.join(annotation_dir, 'classes.txt')
  if os.path.isfile(classes) and not os.path.exists(os.path.join(out, 'classes.txt')):
    shutil.copyfile(classes, os.path.join(out, 'classes.txt'))
  counts = {name: split.num_examples for name, split in builder.info.splits.items()}
  log.info('vmae_videos: %s ready: %s examples, %d skipped', out, counts, len(builder.build_errors))
  return out


UNCOMPRESSED = 'group_size:1,uncompressed'


def store_uncompressed(folder: str) -> None:
  """Rewrite the shards without array_record's default zstd: video and JPEG bytes barely compress (measured 7%),
  and decompressing every record on read cost ~3x the read itself. Readers detect the options from the file."""
  from array_record.python import array_record_module
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if '.array_record' not in name or name.endswith('.tmp'):
      continue
    reader = array_record_module.ArrayRecordReader(path)
    try:
      if 'uncompressed' in reader.writer_options_string():
        continue
      tmp = path + '.tmp'
      writer = array_record_module.ArrayRecordWriter(tmp, UNCOMPRESSED)
      for i in range(reader.num_records()):
        writer.write(reader.read([i])[0])
      writer.close()
    finally:
      reader.close()
    os.replace(tmp, path)  # atomic: a killed rewrite leaves the compressed shard, still valid


def find_dataset_dir(data_dir: str) -> str:
  """The version folder (holding dataset_info.json) under `data_dir`: data_dir itself, or the only
  `vmae_videos/<config>/<version>` / `<config>/<version>` below it."""
  if os.path.isfile(os.path.join(data_dir, 'dataset_info.json')):
    return data_dir
  found = []
  for base in (os.path.join(data_dir, VmaeVideos.name), data_dir):
    if not os.path.isdir(base):
      continue
    for config in sorted(os.listdir(base)):
      config_dir = os.path.join(base, config)
      if config.startswith('.') or not os.path.isdir(config_dir):   # tfds keeps .config/ metadata here
        continue
      for version in sorted(os.listdir(config_dir)):
        if os.path.isfile(os.path.join(config_dir, version, 'dataset_info.json')):
          found.append(os.path.join(config_dir, version))
    if found:
      break
  if not found:
    raise BuildError(f'{data_dir}: no packed dataset (dataset_info.json) here or under vmae_videos/<config>/<version>')
  if len(found) > 1:
    raise BuildError(f'{data_dir}: holds several packings {found}; pass the one to use')
  return found[0]


class TfdsVideoSource:
  """Random access (`__len__`, `__getitem__`) to a packed split, returning plain dicts for the decode stage:

  storage=video: `{'path', 'label', 'video_bytes', 'num_frames', 'fps', 'height', 'width'}`;
  storage=jpeg:  `{'path', 'label', 'jpeg_frames': list[bytes], 'num_frames', 'fps', 'height', 'width'}`.
  Picklable (Grain worker processes re-open the shards).
  """

  def __init__(self, data_dir: str, split: str):
    self.dataset_dir = find_dataset_dir(os.fspath(data_dir))
    self.split = split
    builder = tfds.builder_from_directory(self.dataset_dir)
    if split not in builder.info.splits:
      raise BuildError(f'{self.dataset_dir}: no split {split!r}; it has {sorted(builder.info.splits.keys())}')
    self._source = builder.as_data_source(split)

  def __len__(self) -> int:
    return len(self._source)

  @staticmethod
  def _record(example: dict[str, Any]) -> dict[str, Any]:
    text = lambda v: v.decode('utf-8') if isinstance(v, bytes) else str(v)
    record = {'path': text(example['path']), 'label': int(example['label']),
              'num_frames': int(example['num_frames']), 'fps': float(example['fps']),
              'height': int(example['height']), 'width': int(example['width'])}
    data = example['video']
    if text(example['storage']) == 'jpeg':
      bounds = [int(o) for o in example['jpeg_offsets']] + [len(data)]
      record['jpeg_frames'] = [data[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    else:
      record['video_bytes'] = data
    return record

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    n = len(self)
    if not -n <= index < n:
      raise IndexError(f'{self.dataset_dir} [{self.split}]: index {index} outside [0, {n})')
    return self._record(self._source[index % n])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self._record(e) for e in self._source.__getitems__([int(i) for i in indices])]

  def __repr__(self) -> str:
    return f'TfdsVideoSource({self.dataset_dir!r}, split={self.split!r}, len={len(self)})'


def load_source(data_dir: str, split: str) -> TfdsVideoSource:
  """The packed `split` ('train' | 'val' | 'test') under `data_dir` (see find_dataset_dir) as a random-access
  source of decode-stage records."""
  return TfdsVideoSource(data_dir, split)


def main(argv: Sequence[str] | None = None) -> None:
  """`python -m vmae_jax.data.tfds_builder --annotation_dir=… --root=… --data_dir=… [--storage=jpeg]`."""
  import argparse
  parser = argparse.ArgumentParser(description='Pack an annotation list into TFDS array_record shards (no TF).')
  parser.add_argument('--annotation_dir', required=True, help='folder with train.csv / val.csv / test.csv')
  parser.add_argument('--root', required=True, help='folder the csv paths are relative to')
  parser.add_argument('--data_dir', required=True, help='TFDS data_dir to write into')
  parser.add_argument('--storage', choices=STORAGES, default='video')
  parser.add_argument('--short_side', type=int, default=None)
  parser.add_argument('--gop', type=int, default=None)
  parser.add_argument('--crf', type=int, default=23)
  parser.add_argument('--fast_decode', action='store_true', help='x264 without CABAC/deblocking (faster decode)')
  parser.add_argument('--jpeg_quality', type=int, default=90)
  parser.add_argument('--num_classes', type=int, default=None)
  parser.add_argument('--num_workers', type=int, default=None)
  parser.add_argument('--verify', action='store_true')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format='%(message)s')
  print(build(**vars(args)))


if __name__ == '__main__':
  main()
