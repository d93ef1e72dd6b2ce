"""Recipe configs: their model sections are valid registered architectures with the spec's parameter counts."""
import importlib.util
import os

import pytest

from vmae_jax import models

CONFIG_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _load(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIG_DIR, name + '.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config('')


def test_vitg_dual_recipe():
  c = _load('vitg_dual')
  fields = dict(c.model)
  name, version = fields.pop('name'), fields.pop('version')
  cfg = models.get_config(name, version=version, num_frames=c.data.num_frames, **fields)
  assert cfg == models.get_config(name, version=version, dtype='bfloat16', remat_policy='nothing_saveable')
  assert models.count_params(cfg) == 1_026_306_560
  assert c.optim.base_lr * c.batch_size / 256 == pytest.approx(4.8e-3)
  assert (c.data.mask_ratio, c.data.decoder_mask_type, c.data.decoder_mask_ratio, c.optim.clip_grad) == (
      0.9, 'run_cell', 0.5, 0.02)
