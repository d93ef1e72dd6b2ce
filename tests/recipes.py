"""The configs/*.py recipes as tests load them (by file, as `--config=configs/NAME.py:ARG` does)."""
import importlib.util
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def load_config(name: str, arg: str = ''):
  """`name` is a configs/ file name, with its own argument as the command line writes it where the file is a family
  ('vitb_pretrain:dataset=ssv2'); `arg` is added to that argument ('smoke' → 'dataset=ssv2,smoke')."""
  name, _, own = name.partition(':')
  arg = ','.join(a for a in (own, arg) if a)
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, 'configs', name + '.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)
