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
  from vmae_jax.train import schema
  c = _load('vitg_dual')
  cfg = schema.model_config(c)
  assert cfg == models.get_config('pretrain_videomae_giant_patch14_224', version='v2', dtype='bfloat16',
                                  remat_policy='nothing_saveable')
  assert models.count_params(cfg) == 1_026_306_560
  assert c.optim.base_lr * c.batch_size / 256 == pytest.approx(4.8e-3)
  assert (c.data.mask_ratio, c.data.decoder_mask_type, c.data.decoder_mask_ratio, c.optim.clip_grad) == (
      0.9, 'run_cell', 0.5, 0.02)
  assert (c.optim.b1, c.optim.b2, c.data.num_sample, c.warmup_epochs, c.num_epochs) == (0.9, 0.95, 4, 30, 300)


@pytest.mark.parametrize('name, lr, params', [
    ('vitb_k400_pretrain', 1.2e-3, None), ('vitb_ssv2_pretrain', 1.2e-3, None), ('vitb_ucf101_pretrain', 2.25e-4, None),
    ('vitb_k400_finetune', 2e-3, 86_534_800), ('vitb_ssv2_finetune', 1e-3, None),
    ('vitb_ucf101_finetune', 2.5e-4, None), ('vitg_k710_postpretrain', 3.75e-4, None),
    ('vitg_k400_finetune', 3.75e-6, None), ('distill_g_to_b', 1.4e-3, None)])
def test_recipe_learning_rates_match_the_spec(name, lr, params):
  """spec/videomae.md §5.2 / §6.3: the effective lr = base × global batch / 256."""
  from vmae_jax.train import schema
  c = _load(name)
  assert c.optim.base_lr * c.batch_size / 256 == pytest.approx(lr)
  if params:
    assert models.count_params(schema.model_config(c)) == params
