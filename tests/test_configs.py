"""Recipe configs: their model sections are valid registered architectures with the official parameter counts."""
import importlib.util
import os

import pytest

from vmae_jax import models

CONFIG_DIR = os.path.join(os.path.dirname(__file__), '..', 'configs')


def _module(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIG_DIR, name + '.py'))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _load(name):
  """`name` as --config spells it after configs/ and before .py, a family's argument after ':'."""
  name, _, arg = name.partition(':')
  return _module(name).get_config(arg)


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
    ('vitb_pretrain:dataset=k400', 1.2e-3, None), ('vitb_pretrain:dataset=ssv2', 1.2e-3, None),
    ('vitb_pretrain:dataset=ucf101', 2.25e-4, None),
    ('vitb_finetune:dataset=k400', 2e-3, 86_534_800), ('vitb_finetune:dataset=ssv2', 1e-3, None),
    ('vitb_finetune:dataset=ucf101', 2.5e-4, None), ('vitg_k710_postpretrain', 3.75e-4, None),
    ('vitg_k400_finetune', 3.75e-6, None), ('distill_g_to_b', 1.4e-3, None)])
def test_recipe_learning_rates_match_the_spec(name, lr, params):
  """docs/fidelity.md, "Recipes": the effective lr = base × global batch / 256."""
  from vmae_jax.train import schema
  c = _load(name)
  assert c.optim.base_lr * c.batch_size / 256 == pytest.approx(lr)
  if params:
    assert models.count_params(schema.model_config(c)) == params


@pytest.mark.parametrize('family', ['vitb_pretrain', 'vitb_finetune'])
def test_recipe_family_takes_each_dataset_and_refuses_the_rest(family):
  """`configs/FAMILY.py:dataset=D[,smoke]`: every dataset with and without smoke (k400 by default); an unknown
  dataset or key is a ConfigError (exit code 2 in vmae_jax.main) naming the allowed values."""
  from vmae_jax.models.config import ConfigError
  from vmae_jax.train import schema
  mod = _module(family)
  assert tuple(mod.RECIPES) == ('k400', 'ssv2', 'ucf101')
  classes = {'k400': 400, 'ssv2': 174, 'ucf101': 101}
  for dataset in mod.RECIPES:
    full, tiny = mod.get_config(f'dataset={dataset}'), mod.get_config(f'dataset={dataset},smoke')
    assert tiny.to_dict() == mod.get_config(f'smoke,dataset={dataset}').to_dict()
    assert full.batch_size > 8 and full.data.source == 'list' and full.model.dtype == 'bfloat16'
    assert tiny.batch_size == 8 and tiny.data.source == 'synthetic' and tiny.num_train_steps == 4
    if family == 'vitb_finetune':
      assert full.model.num_classes == tiny.model.num_classes == classes[dataset]
    for c in (full, tiny):
      schema.check(c, num_devices=8)
  assert mod.get_config('').to_dict() == mod.get_config('dataset=k400').to_dict()
  assert mod.get_config('smoke').to_dict() == mod.get_config('dataset=k400,smoke').to_dict()
  for bad in ('dataset=foo', 'dataset=foo,smoke', 'dataset=', 'dataset=K400', 'dataset=ssv2:smoke'):
    with pytest.raises(ConfigError, match=r'dataset must be one of k400\|ssv2\|ucf101'):
      mod.get_config(bad)
  for bad in ('datset=ssv2', 'dataset=ssv2,smok', 'big', 'smoke=1', 'dataset', 'smoke,smoke'):
    with pytest.raises(ConfigError, match=r'use a comma-separated subset of: dataset=k400\|ssv2\|ucf101, smoke'):
      mod.get_config(bad)
