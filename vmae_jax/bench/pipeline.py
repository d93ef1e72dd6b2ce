"""`python -m vmae_jax.bench pipeline`: host pipeline throughput against the official loading path.

All paths do the same work per clip: sample 16 frames at stride 4 (the pretraining sampler), multi-scale crop
(scales 1, .875, .75, .66) and resize to 224, tube mask 0.9 + running-cell decoder mask 0.5, `num_sample` clips per
decoded video. They differ only in how: (a) this pipeline on the original files (PyAV seek-decode of only the
needed span, RGB conversion of the kept frames only, uint8 out, normalisation left to the device); (b) the same
pipeline on videos packed by the TFDS builder (re-encoded to short side 320 with keyframe interval 16 or 1, and as
JPEG frames); (c) the official path: decord `VideoReader.get_batch`, PIL images, per-frame crop + resize, stacked
into a float tensor /255, normalised with ImageNet mean/std (VideoMAE's pretraining transform; docs/data.md).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import tempfile
import time

import ml_collections
import numpy as np

from vmae_jax.data import augment, geometry, masking, pipeline, sampling
from vmae_jax.data.videogen import write_video
from vmae_jax.train import schema

NUM_FRAMES, RATE, SIZE = 16, 4, 224
GRID = (NUM_FRAMES // 2, SIZE // 16, SIZE // 16)


def generate_videos(folder: str, count: int) -> list[str]:
  """Realistic inputs: 340×256, 30 fps, 10 s, H.264 with the encoder's default keyframe interval."""
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i in range(count):
    path = os.path.join(folder, f'video_{i:03d}.mp4')
    if not os.path.exists(path):
      write_video(path + '.tmp.mp4', num_frames=300, width=340, height=256, fps=30, codec='libx264', seed=i)
      os.replace(path + '.tmp.mp4', path)
    paths.append(path)
  return paths


def write_lists(folder: str, rel_paths: list[str]) -> None:
  with open(os.path.join(folder, 'train.csv'), 'w') as f:
    for i, rel in enumerate(rel_paths):
      f.write(f'{rel} {i % 2}\n')


def data_config(source: str, path: str, root: str, workers: int, num_sample: int) -> ml_collections.ConfigDict:
  cfg = schema.default_data_config()
  cfg.update(dict(source=source, path=path, root=root, num_frames=NUM_FRAMES, sampling_rate=RATE, input_size=SIZE,
                  num_sample=num_sample, mask_type='tube', mask_ratio=0.9, decoder_mask_type='run_cell',
                  decoder_mask_ratio=0.5, workers=workers, decode_threads=1))
  return cfg


def time_pipeline(cfg, clips: int, num_sample: int) -> float:
  """clips/s through the Grain graph, after one warm-up batch (worker start-up excluded)."""
  batch = 4
  ds = pipeline.train_dataset(cfg, 'pretrain', batch_size=batch, seed=0)
  it = iter(ds)
  next(it)
  batches = max(clips // (batch * num_sample), 2)
  t0 = time.perf_counter()
  n = 0
  for _ in range(batches):
    b = next(it)
    n += b['video'].shape[0]
  return n / (time.perf_counter() - t0)


# --- (c) the official path ------------------------------------------------------------------------------------

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def official_example(args) -> int:
  """One video through the official steps; returns the number of clips produced."""
  import decord
  import torch
  from PIL import Image
  path, seed, num_sample = args
  rng = np.random.default_rng(seed)
  vr = decord.VideoReader(path, num_threads=1)
  idx = sampling.pretrain_indices(rng, len(vr), NUM_FRAMES, RATE)
  frames = vr.get_batch(list(idx)).asnumpy()
  images = [Image.fromarray(frames[i]).convert('RGB') for i in range(len(idx))]
  for _ in range(num_sample):
    w, h = images[0].size
    x, y, cw, ch = geometry.multi_scale_crop_box(rng, w, h, SIZE)
    crops = [im.crop((x, y, x + cw, y + ch)).resize((SIZE, SIZE), Image.BILINEAR) for im in images]
    tensor = torch.from_numpy(np.stack([np.asarray(c) for c in crops])).permute(3, 0, 1, 2).float().div(255)
    tensor = (tensor - torch.from_numpy(_MEAN)[:, None, None, None]) / torch.from_numpy(_STD)[:, None, None, None]
    masking.sample_masks(rng, GRID, 'tube', 0.9, 'run_cell', 0.5)
  return num_sample


def _one_torch_thread() -> None:
  import torch
  torch.set_num_threads(1)  # what torch's DataLoader does in each worker process


def time_official(paths: list[str], clips: int, workers: int, num_sample: int) -> float:
  _one_torch_thread()
  jobs = [(paths[i % len(paths)], i, num_sample) for i in range(max(clips // num_sample, 2))]
  official_example(jobs[0])  # warm-up (imports)
  t0 = time.perf_counter()
  if workers > 0:
    with multiprocessing.get_context('spawn').Pool(workers, initializer=_one_torch_thread) as pool:
      pool.map(official_example, jobs[:workers])  # start-up excluded, as for the Grain workers
      t0 = time.perf_counter()
      n = sum(pool.map(official_example, jobs, chunksize=1))
  else:
    n = sum(official_example(j) for j in jobs)
  return n / (time.perf_counter() - t0)


# --- where the time goes ---------------------------------------------------------------------------------------

def _ms(fn, repeats: int) -> float:
  fn()
  t0 = time.perf_counter()
  for _ in range(repeats):
    fn()
  return (time.perf_counter() - t0) / repeats * 1000


def stage_report(sources: dict, repeats: int = 24) -> dict[str, dict[str, float]]:
  """ms per clip of each stage, one core, for each source (name → random-access source of records)."""
  from vmae_jax.data import decode
  report = {}
  for name, source in sources.items():
    rng = np.random.default_rng(0)
    records = [source[i % len(source)] for i in range(repeats)]
    k = iter(range(10 ** 9))
    choose = lambda n: sampling.pretrain_indices(rng, n, NUM_FRAMES, RATE)
    clip = decode.read_clip(records[0], choose, threads=1)[0]
    row = {
        'read record': _ms(lambda: source[next(k) % len(source)], repeats),
        'open + count + decode 16 frames (RGB)': _ms(
            lambda: decode.read_clip(records[next(k) % repeats], choose, threads=1), repeats),
        'multi-scale crop + PIL resize (16 frames)': _ms(lambda: augment.pretrain_transform(rng, clip, SIZE), repeats),
        'masks (tube + running cell)': _ms(lambda: masking.sample_masks(rng, GRID, 'tube', 0.9, 'run_cell', 0.5),
                                           repeats),
    }
    report[name] = row
  for name, row in report.items():
    print(f'stages [{name}]: ' + '; '.join(f'{k} {v:.2f} ms' for k, v in row.items()), flush=True)
  return report


def shard_read_report(data_dir: str, repeats: int = 48) -> dict[str, float]:
  """ms per record read from a packed shard as stored (uncompressed) and re-written with array_record's default zstd."""
  from array_record.python import array_record_module as ar

  from vmae_jax.data import tfds_builder
  folder = tfds_builder.find_dataset_dir(data_dir)
  shard = os.path.join(folder, next(f for f in sorted(os.listdir(folder)) if '.array_record' in f))
  zstd = shard + '.zstd_copy'
  reader = ar.ArrayRecordReader(shard)
  writer = ar.ArrayRecordWriter(zstd, 'group_size:1')  # the TFDS default options: zstd:3
  for i in range(reader.num_records()):
    writer.write(reader.read([i])[0])
  writer.close()
  out = {}
  for name, path in (('uncompressed', shard), ('zstd (array_record default)', zstd)):
    r = ar.ArrayRecordReader(path)
    n = r.num_records()
    k = iter(range(10 ** 9))
    out[name] = _ms(lambda: r.read([next(k) % n]), repeats)
    r.close()
  os.remove(zstd)
  print('record read: ' + '; '.join(f'{k} {v:.2f} ms' for k, v in out.items()), flush=True)
  return out


# --- driver ---------------------------------------------------------------------------------------------------

def run(args) -> dict:
  if not args.workdir:
    with tempfile.TemporaryDirectory(prefix='vmae_bench_') as work:
      args.workdir = work
      return run(args)
  work = args.workdir
  if args.videos:
    root = os.path.abspath(args.videos)
    rel = sorted(f for f in os.listdir(root) if f.lower().endswith(('.mp4', '.webm', '.avi', '.mkv', '.mov')))
  else:
    root = os.path.join(work, 'videos')
    rel = [os.path.basename(p) for p in generate_videos(root, args.num_videos)]
  lists = os.path.join(work, 'lists')
  os.makedirs(lists, exist_ok=True)
  write_lists(lists, rel)
  paths = [os.path.join(root, r) for r in rel]
  print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(paths)} videos; '
        f'workers={args.workers}; num_sample={args.num_sample}; {args.clips} clips per path', flush=True)

  from vmae_jax.data import tfds_builder
  packings = {'video_gop16': ('video', dict(short_side=320, gop=16)),
              'video_intra': ('video', dict(short_side=320, gop=1)),
              'video_intra_fast': ('video', dict(short_side=320, gop=1, fast_decode=True)),
              'jpeg': ('jpeg', dict(short_side=320))}
  paths_to_time = {'a_pipeline_original': lambda: time_pipeline(
      data_config('list', lists, root, args.workers, args.num_sample), args.clips, args.num_sample)}
  for name, (storage, kw) in packings.items():
    data_dir = os.path.join(work, f'tfds_{name}')
    t0 = time.perf_counter()
    tfds_builder.build(lists, root, data_dir, storage=storage, **kw)  # reuses a finished packing
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data_dir) for f in fs) / len(paths)
    print(f'packed {name}: {storage} {kw}, {time.perf_counter() - t0:.0f} s, {size / 1e6:.2f} MB/video', flush=True)
    paths_to_time[f'b_pipeline_tfds_{name}'] = (lambda d=data_dir: time_pipeline(
        data_config('tfds', d, '', args.workers, args.num_sample), args.clips, args.num_sample))
  paths_to_time['c_official_decord_pil'] = lambda: time_official(paths, args.clips, args.workers, args.num_sample)

  # The machine is shared and noisy: every path is timed `repeats` times, interleaved, and its best run kept.
  results: dict[str, float] = {}
  for r in range(args.repeats):
    for name, fn in paths_to_time.items():
      value = fn()
      results[name] = max(results.get(name, 0.0), value)
      print(f'  run {r + 1}: {name}: {value:.1f} clips/s', flush=True)
  for name, value in results.items():
    print(f'{name}: {value:.1f} clips/s (best of {args.repeats})', flush=True)

  from vmae_jax.data.sources import ListSource
  stage_report({'original files': ListSource(lists, 'train', root),
                'TFDS intra + fast_decode': tfds_builder.load_source(os.path.join(work, 'tfds_video_intra_fast'),
                                                                     'train')})
  shard_read_report(os.path.join(work, 'tfds_video_intra_fast'))

  best = max(v for k, v in results.items() if k.startswith(('a_', 'b_')))
  summary = {'clips_per_s': round(best, 2), 'decord_clips_per_s': round(results['c_official_decord_pil'], 2),
             'ratio': round(best / results['c_official_decord_pil'], 2),
             'same_files_ratio': round(results['a_pipeline_original'] / results['c_official_decord_pil'], 2),
             'workers': args.workers, 'num_sample': args.num_sample,
             **{k: round(v, 2) for k, v in results.items()}}
  if args.json:
    print(json.dumps(summary))
  return summary
