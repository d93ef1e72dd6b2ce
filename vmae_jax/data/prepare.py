"""Turn a folder of class sub-folders into the official annotation lists: `python -m vmae_jax.data.prepare`.

    python -m vmae_jax.data.prepare --videos=/data/my_videos --out=/data/my_lists [--classes=classes.txt]
        [--val_fraction=0.1] [--test_fraction=0.1] [--seed=0] [--short_side=320 [--gop=16]] [--workers=N]

`--videos` holds one sub-folder per class (videos may sit in nested folders below it). Labels follow `--classes`
(one name per line; line i = label i) or else the sorted sub-folder names; the order used is written to
`<out>/classes.txt`. Each class is split on its own (seeded), so train/val/test keep the class balance, and
`<out>/{train,val,test}.csv` get one `relative/path label` line per video — the layout VideoMAE's `--data_path`
and this project's list source read (the "my own dataset" recipe; docs/data.md, "Preparing lists").

`--short_side` (and/or `--gop`) also writes H.264 copies under `<out>/videos/` with `reencode()` (short side scaled
down, never up; fixed keyframe interval): the official recipe trains on 320p copies, and short GOPs make clip
seeking cheap. The lists then point into that copy, and the command prints the `root` to use. Copies already
there are kept, so an interrupted run resumes; a file that cannot be re-encoded is reported and left out.
"""
from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
from typing import Sequence

import numpy as np

from vmae_jax.constants import SPLITS
from vmae_jax.data import reencode
from vmae_jax.data.annotations import SPLIT_FILES, read_class_names
from vmae_jax.train.errors import ArgumentParser, at_least, cli

VIDEO_EXTENSIONS = ('.mp4', '.webm', '.mkv', '.avi', '.mov', '.m4v', '.mpg', '.mpeg', '.flv', '.ogv', '.wmv',
                    '.3gp', '.ts')
COPY_SETTINGS = '.prepare_settings.json'   # in <out>/videos: the settings its copies were made with


class PrepareError(ValueError):
  """The folder tree, the class list or an argument is unusable; the message names the file or folder."""


def scan(videos_dir: str, classes: Sequence[str] | None = None) -> tuple[list[str], dict[str, list[str]], list[str]]:
  """(class names in label order, class → sorted video paths relative to `videos_dir`, notes for the summary).

  Sub-folders not in `classes` are an error naming them. Hidden entries are ignored; files that do not look like
  videos (by extension) are counted in the notes.
  """
  if not os.path.isdir(videos_dir):
    raise PrepareError(f'--videos={videos_dir!r} is not a folder')
  folders = sorted(e for e in os.listdir(videos_dir)
                   if not e.startswith('.') and os.path.isdir(os.path.join(videos_dir, e)))
  notes = []
  stray = sorted(e for e in os.listdir(videos_dir)
                 if not e.startswith('.') and os.path.isfile(os.path.join(videos_dir, e)))
  if stray:
    notes.append(f'{len(stray)} file(s) directly in {videos_dir} (not in a class folder) ignored, e.g. {stray[0]}')
  if classes is None:
    if not folders:
      raise PrepareError(f'{videos_dir}: no class sub-folders')
    names = folders
  else:
    names = list(classes)
    unknown = [f for f in folders if f not in names]
    if unknown:
      raise PrepareError(f'{videos_dir}: sub-folder(s) {unknown} are not in the class list; add them to the list '
                         'or move them out')
    missing = [n for n in names if n not in folders]
    if missing:
      notes.append(f'class(es) {missing} have no folder in {videos_dir}: no videos (labels kept)')
  files: dict[str, list[str]] = {}
  ignored = 0
  for name in names:
    found = []
    class_dir = os.path.join(videos_dir, name)
    for dirpath, dirnames, filenames in os.walk(class_dir):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
      for fname in filenames:
        if fname.startswith('.'):
          continue
        if os.path.splitext(fname)[1].lower() in VIDEO_EXTENSIONS:
          found.append(os.path.relpath(os.path.join(dirpath, fname), videos_dir).replace(os.sep, '/'))
        else:
          ignored += 1
    files[name] = sorted(found)
    if not found and os.path.isdir(class_dir):
      notes.append(f'class {name!r}: folder {class_dir} holds no videos')
  if ignored:
    notes.append(f'{ignored} non-video file(s) ignored (extensions other than {" ".join(VIDEO_EXTENSIONS)})')
  odd = [p for paths in files.values() for p in paths if any(c.isspace() for c in p)]
  if odd:
    notes.append(f'{len(odd)} path(s) contain whitespace (readable here: the label is the last field; the official '
                 f'PyTorch loader splits on spaces), e.g. {odd[0]!r}')
  return names, files, notes


def split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
  """(n_val, n_test) for a class of n videos: rounded shares; a non-zero fraction gets at least one video as long
  as train keeps one."""
  n_val = max(int(round(n * val_fraction)), int(val_fraction > 0)) if n else 0
  n_test = max(int(round(n * test_fraction)), int(test_fraction > 0)) if n else 0
  while n_val + n_test >= n and (n_val or n_test):
    if n_test >= n_val and n_test:
      n_test -= 1
    else:
      n_val -= 1
  return n_val, n_test


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
  if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
    raise PrepareError(f'--val_fraction={val_fraction}, --test_fraction={test_fraction}: each in [0, 1), sum < 1')


def split(files: dict[str, list[str]], names: Sequence[str], val_fraction: float, test_fraction: float,
          seed: int) -> dict[str, list[tuple[str, int]]]:
  """Per-class seeded split → {'train'|'val'|'test': [(relative path, label), …]} in class, then path order."""
  _check_fractions(val_fraction, test_fraction)
  out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
  for label, name in enumerate(names):
    paths = files.get(name, [])
    # The permutation depends on (seed, label) only: adding videos to one class leaves the others' splits alone.
    order = np.random.default_rng((seed, label)).permutation(len(paths))
    n_val, n_test = split_counts(len(paths), val_fraction, test_fraction)
    parts = {'val': order[:n_val], 'test': order[n_val:n_val + n_test], 'train': order[n_val + n_test:]}
    for split_name, idx in parts.items():
      out[split_name].extend((paths[i], label) for i in sorted(int(i) for i in idx))
  return out


def _copy_path(rel: str) -> str:
  return os.path.splitext(rel)[0] + '.mp4'


def _reencode_job(job: tuple[str, str, int | None, int | None, int]) -> tuple[str, str | None]:
  src, dst, short_side, gop, crf = job
  if os.path.exists(dst):       # written atomically by an earlier run: complete
    return dst, None
  try:
    reencode.reencode(src, dst, short_side=short_side, gop=gop, crf=crf, threads=1)
    return dst, None
  except Exception as e:  # one bad video is a reported skip
    return dst, f'{type(e).__name__}: {e}'


def make_copies(videos_dir: str, rel_paths: Sequence[str], copy_root: str, short_side: int | None,
                gop: int | None, crf: int = 23, workers: int | None = None,
                log=print) -> tuple[dict[str, str], dict[str, str]]:
  """Re-encode every video under `copy_root` (same relative path, `.mp4`). Returns (original rel → copy rel for
  the ones that worked, original rel → reason for the ones that failed)."""
  settings = {'short_side': short_side, 'gop': gop, 'crf': crf}
  os.makedirs(copy_root, exist_ok=True)
  settings_file = os.path.join(copy_root, COPY_SETTINGS)
  if os.path.exists(settings_file):
    with open(settings_file) as f:
      previous = json.load(f)
    if previous != settings:
      raise PrepareError(f'{copy_root} holds copies made with {previous}, not {settings}; choose another --out or '
                         'delete that folder')
  else:
    with open(settings_file, 'w') as f:
      json.dump(settings, f)
  copies: dict[str, str] = {}
  for rel in rel_paths:
    target = _copy_path(rel)
    if target in copies.values():
      other = next(k for k, v in copies.items() if v == target)
      raise PrepareError(f'{os.path.join(videos_dir, rel)} and {os.path.join(videos_dir, other)} would both be '
                         f'copied to {os.path.join(copy_root, target)}; rename one')
    copies[rel] = target
  jobs = [(os.path.join(videos_dir, rel), os.path.join(copy_root, copies[rel]), short_side, gop, crf)
          for rel in rel_paths]
  workers = workers or os.cpu_count() or 1
  failed: dict[str, str] = {}
  by_dst = {os.path.join(copy_root, copies[rel]): rel for rel in rel_paths}
  if workers <= 1 or len(jobs) <= 1:
    results = map(_reencode_job, jobs)
    pool = None
  else:
    # 'spawn': safe even when the caller already runs threads (JAX, PyAV).
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn'))
    results = pool.map(_reencode_job, jobs, chunksize=4)
  try:
    for done, (dst, error) in enumerate(results, 1):
      if error is not None:
        failed[by_dst[dst]] = error
        log(f'  skipped {by_dst[dst]}: {error}')
      if done % 500 == 0:
        log(f'  re-encoded {done}/{len(jobs)}')
  finally:
    if pool is not None:
      pool.shutdown()
  return {rel: c for rel, c in copies.items() if rel not in failed}, failed


def _write_lines(path: str, lines: Sequence[str]) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(lines)
  os.replace(tmp, path)


def prepare(videos: str, out: str, classes: str | None = None, val_fraction: float = 0.1,
            test_fraction: float = 0.1, seed: int = 0, short_side: int | None = None, gop: int | None = None,
            crf: int = 23, workers: int | None = None, log=print) -> dict:
  """Write `<out>/{train,val,test}.csv` and `<out>/classes.txt` (and re-encoded copies when asked); return a
  summary dict: root, classes, counts per split, skipped files, notes."""
  _check_fractions(val_fraction, test_fraction)   # before any re-encoding
  names = read_class_names(classes) if classes else None
  names, files, notes = scan(videos, names)
  if not any(files.values()):
    raise PrepareError(f'{videos}: no video files in any class folder')
  os.makedirs(out, exist_ok=True)
  root = os.path.abspath(videos)
  skipped: dict[str, str] = {}
  if short_side is not None or gop is not None:
    if short_side is not None and short_side < 2:
      raise PrepareError(f'--short_side={short_side}: must be ≥ 2')
    if gop is not None and gop < 1:
      raise PrepareError(f'--gop={gop}: must be ≥ 1')
    root = os.path.abspath(os.path.join(out, 'videos'))
    if os.path.abspath(videos) == root:
      raise PrepareError(f'--out={out}: its videos/ folder is the input folder; choose another --out')
    all_rel = [p for name in names for p in files[name]]
    log(f're-encoding {len(all_rel)} videos into {root} (short_side={short_side}, gop={gop}, crf={crf})')
    copies, skipped = make_copies(videos, all_rel, root, short_side, gop, crf, workers, log)
    files = {name: [copies[p] for p in paths if p in copies] for name, paths in files.items()}
    if skipped:
      with open(os.path.join(out, 'prepare_errors.jsonl'), 'w') as f:
        for rel, reason in skipped.items():
          f.write(json.dumps({'path': rel, 'reason': reason}) + '\n')
  splits = split(files, names, val_fraction, test_fraction, seed)
  for split_name, items in splits.items():
    _write_lines(os.path.join(out, SPLIT_FILES[split_name]), [f'{rel} {label}\n' for rel, label in items])
  _write_lines(os.path.join(out, 'classes.txt'), [f'{n}\n' for n in names])
  summary = {'root': root, 'lists': os.path.abspath(out), 'classes': names,
             'counts': {s: len(v) for s, v in splits.items()},
             'per_class': {n: len(files.get(n, [])) for n in names}, 'skipped': skipped, 'notes': notes}
  with open(os.path.join(out, 'prepare_summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  return summary


@cli('python -m vmae_jax.data.prepare')
def main(argv: Sequence[str] | None = None) -> int:
  parser = ArgumentParser(prog='python -m vmae_jax.data.prepare',
                          description='Class-folder tree → train.csv / val.csv / test.csv (+ classes.txt).')
  parser.add_argument('--videos', required=True, help='folder of class sub-folders holding videos')
  parser.add_argument('--out', required=True, help='where train.csv / val.csv / test.csv / classes.txt go')
  parser.add_argument('--classes', default=None, help='class-name list, one per line (label order); default: '
                      'sorted sub-folder names')
  parser.add_argument('--val_fraction', type=float, default=0.1)
  parser.add_argument('--test_fraction', type=float, default=0.1)
  parser.add_argument('--seed', type=at_least(0), default=0)
  parser.add_argument('--short_side', type=at_least(2), default=None,
                      help='re-encode copies under <out>/videos with this short side (never upscaled)')
  parser.add_argument('--gop', type=at_least(1), default=None,
                      help='keyframe interval of the re-encoded copies (frames)')
  parser.add_argument('--crf', type=at_least(0, 51), default=23, help='x264 quality of the re-encoded copies (0..51)')
  parser.add_argument('--workers', type=at_least(1), default=None, help='re-encoding processes (default: all CPUs)')
  args = parser.parse_args(argv)
  if args.classes is not None and not os.path.isfile(args.classes):
    raise PrepareError(f'--classes={args.classes}: no such file')
  if os.path.isfile(args.out):
    raise PrepareError(f'--out={args.out}: is a file; give a folder for the lists')
  options = vars(args)
  del options['debug']
  summary = prepare(**options)   # PrepareError / SourceError: one line, exit code 2 (vmae_jax/train/errors.py)
  width = max(len(n) for n in summary['classes'])
  print(f"{len(summary['classes'])} classes, {sum(summary['per_class'].values())} videos "
        f"(train {summary['counts']['train']}, val {summary['counts']['val']}, test {summary['counts']['test']})")
  for label, name in enumerate(summary['classes']):
    print(f'  {label:4d}  {name:<{width}}  {summary["per_class"][name]}')
  for note in summary['notes']:
    print(f'note: {note}')
  if summary['skipped']:
    print(f"skipped {len(summary['skipped'])} video(s) that could not be re-encoded "
          f"(see {os.path.join(summary['lists'], 'prepare_errors.jsonl')})")
  print(f"lists: {summary['lists']}/{{train,val,test}}.csv, classes.txt")
  print(f"root:  {summary['root']}    (use data.path={summary['lists']} data.root={summary['root']})")
  return 0


if __name__ == '__main__':
  sys.exit(main())
