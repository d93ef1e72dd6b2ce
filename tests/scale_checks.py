"""Multi-device checks, run as subprocesses by tests/test_scale.py (the device count is fixed when jax starts):

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/scale_checks.py train CONFIG MESH WORKDIR [k=v ...]
    ... scale_checks.py state_bytes CONFIG MESH              → JSON: bytes per device, total, replicated leftovers
    ... scale_checks.py lower CONFIG MESH VIDEOS_PER_DEVICE  → JSON: compile seconds, memory_analysis per device

CONFIG is a configs/*.py name with its argument (`vitb_pretrain:dataset=k400`, `:smoke` allowed); MESH a tuple
literal such as "(2,4,1)"; k=v are config overrides (dotted paths, Python literals).
"""
import ast
import json
import os
import sys
import time

import jax
import numpy as np
import recipes

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def load_config(spec: str, mesh: str, overrides=()):
  name, _, arg = spec.partition(':')
  c = recipes.load_config(name, arg)
  c.mesh_shape = ast.literal_eval(mesh)
  for item in overrides:
    key, _, value = item.partition('=')
    *parents, leaf = key.split('.')
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = ast.literal_eval(value)
  return c


def train(spec, mesh, workdir, *overrides):
  from vmae_jax import main
  main.run(load_config(spec, mesh, overrides), workdir)
  print(json.dumps({'devices': jax.device_count(), 'processes': jax.process_count()}))


def state_bytes(spec, mesh, *overrides):
  from vmae_jax.parallel import sharding
  from vmae_jax.tasks import TASKS, Context
  from vmae_jax.train.trainer import Trainer
  t = Trainer(load_config(spec, mesh, overrides), '/tmp/unused')
  task = TASKS[t.config.task](Context(t.config, t.model_config, t.data_config, t.workdir, t.mesh))
  tx, _, abstract = t.layout(100, 10)
  state = t.initial_state(task, tx, abstract)
  leaves = jax.tree_util.tree_leaves(state)
  leftover = sum(x.nbytes for x in leaves if x.sharding.is_fully_replicated)
  per_device = sharding.bytes_per_device(state)
  params_per_device = sharding.bytes_per_device(state['params'])
  print(json.dumps({
      'total': sum(x.nbytes for x in leaves), 'replicated': leftover, 'per_device': list(per_device.values()),
      'params_total': sum(x.nbytes for x in jax.tree_util.tree_leaves(state['params'])),
      'params_replicated': sum(x.nbytes for x in jax.tree_util.tree_leaves(state['params'])
                               if x.sharding.is_fully_replicated),
      'params_per_device': list(params_per_device.values())}))


def abstract_batch(config, model_config, clips: int) -> dict:
  """Global pretraining batch shapes from one host-drawn mask (uint8 video, int32 indices, float32 weights)."""
  from vmae_jax.data import masking
  d = config.data
  m = masking.sample_masks(np.random.default_rng(0), model_config.token_grid(), d.mask_type, d.mask_ratio,
                           d.decoder_mask_type or None, d.decoder_mask_ratio)
  batch = {'video': jax.ShapeDtypeStruct((clips, d.num_frames, d.input_size, d.input_size, 3), np.uint8)}
  for key in ('visible_idx', 'pred_idx', 'loss_weight'):
    batch[key] = jax.ShapeDtypeStruct((clips,) + np.shape(m[key]), np.asarray(m[key]).dtype)
  return batch


def lower(spec, mesh, videos_per_device, *overrides):
  from vmae_jax.train.trainer import Trainer
  c = load_config(spec, mesh, overrides)
  videos_per_device = int(videos_per_device)
  c.batch_size = videos_per_device * jax.device_count()
  t = Trainer(c, '/tmp/unused')
  clips = c.batch_size * c.data.num_sample
  t0 = time.perf_counter()
  lowered = t.lower_step(abstract_batch(c, t.model_config, clips))
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  ma = compiled.memory_analysis()
  fields = ('argument_size_in_bytes', 'output_size_in_bytes', 'alias_size_in_bytes', 'temp_size_in_bytes',
            'generated_code_size_in_bytes')
  print(json.dumps({'mesh': list(t.mesh.shape.values()), 'devices': jax.device_count(),
                    'videos_per_device': videos_per_device, 'clips_per_device': clips // jax.device_count(),
                    'remat_policy': t.model_config.remat_policy, 'dtype': t.model_config.dtype,
                    'lower_s': round(t1 - t0, 1), 'compile_s': round(t2 - t1, 1),
                    'memory': {f: int(getattr(ma, f)) for f in fields}}))


if __name__ == '__main__':
  command, *args = sys.argv[1:]
  {'train': train, 'state_bytes': state_bytes, 'lower': lower}[command](*args)
