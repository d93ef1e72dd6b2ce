"""Restore anywhere: a training-style checkpoint written with parameters sharded fsdp over 8 devices restores onto
4 devices and onto 1 with the same outputs; only the `params` item is read; dtype casts on restore.

Each device count is its own process (XLA_FLAGS must be set before jax is imported).
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np

WORKER = textwrap.dedent('''
  import json, os, shutil, sys
  import jax, numpy as np, orbax.checkpoint as ocp
  import vmae_jax
  from vmae_jax import models
  from vmae_jax.parallel import sharding
  from vmae_jax.models.config import ModelConfig

  mode, workdir, out = sys.argv[1], sys.argv[2], sys.argv[3]
  n = jax.device_count()
  video = np.random.default_rng(0).standard_normal((8, 4, 32, 32, 3)).astype(np.float32)
  cfg = ModelConfig(kind='classifier', img_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=4,
                    num_classes=5)
  mesh = sharding.make_mesh((1, n, 1)) if n > 1 else None
  if mode == 'write':
    # The layout trainer.py writes: params + train_state (optimizer moments) + model_config, all sharded fsdp.
    shardings = sharding.tree_shardings(models.abstract_params(cfg), mesh)
    params = jax.device_put(models.init_params(cfg, jax.random.key(3)), shardings)
    moments = jax.tree_util.tree_map(lambda p: p * 0 + 1, params)
    kernel = params['encoder']['patch_embed']['kernel']
    assert len(kernel.sharding.device_set) == 8 and not kernel.sharding.is_fully_replicated
    with ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                               item_names=('params', 'train_state', 'model_config')) as mngr:
      mngr.save(7, args=ocp.args.Composite(
          params=ocp.args.StandardSave({'params': params}),
          train_state=ocp.args.StandardSave({'step': 7, 'opt_state': moments}),
          model_config=ocp.args.JsonSave(cfg.to_dict())))
      mngr.wait_until_finished()
  m = vmae_jax.load(workdir, mesh=mesh)
  kernel = m.variables['params']['encoder']['patch_embed']['kernel']
  placed = sorted(d.id for d in kernel.sharding.device_set)
  assert placed == list(range(n)), placed
  assert kernel.sharding.is_fully_replicated == (n == 1)
  np.save(os.path.join(out, f'logits_{n}.npy'), np.asarray(m.classify(video)))
  np.save(os.path.join(out, f'tokens_{n}.npy'), np.asarray(m.encode(video)))
  bf16 = vmae_jax.load(workdir, dtype='bfloat16', mesh=mesh)
  dtypes = {str(x.dtype) for x in jax.tree_util.tree_leaves(bf16.variables)}
  np.save(os.path.join(out, f'logits_bf16_{n}.npy'), np.asarray(bf16.classify(video), np.float32))
  if n == 4:  # 64-wide parameters cannot be split 3 ways: those dimensions stay whole, the outputs do not change
    three = vmae_jax.load(workdir, mesh=sharding.make_mesh((1, 3, 1), jax.devices()[:3]))
    np.save(os.path.join(out, 'logits_3.npy'), np.asarray(three.classify(video)))
  with open(os.path.join(out, f'info_{n}.json'), 'w') as f:
    json.dump({'bf16_param_dtypes': sorted(dtypes)}, f)
''')


def _run(devices: int, mode: str, workdir, out):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu')
  r = subprocess.run([sys.executable, '-c', WORKER, mode, str(workdir), str(out)], env=env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]


def test_restore_8_to_4_to_1(tmp_path):
  workdir, out = tmp_path / 'run', tmp_path / 'out'
  out.mkdir()
  _run(8, 'write', workdir, out)
  # The optimizer state is never read: restoring works with it gone.
  shutil.rmtree(workdir / 'checkpoints' / '7' / 'train_state')
  _run(4, 'read', workdir, out)
  _run(1, 'read', workdir, out)
  for name in ('logits', 'tokens'):
    ref = np.load(out / f'{name}_8.npy')
    for n in (4, 1):
      got = np.load(out / f'{name}_{n}.npy')
      print(f'  {name}: 8 -> {n} devices, max-abs diff {np.abs(got - ref).max():.2e}')
      np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0, err_msg=f'{name} {n}')
  np.testing.assert_allclose(np.load(out / 'logits_3.npy'), np.load(out / 'logits_8.npy'), atol=1e-6, rtol=0)
  for n in (8, 4, 1):
    assert json.loads((out / f'info_{n}.json').read_text())['bf16_param_dtypes'] == ['bfloat16']
    bf16 = np.load(out / f'logits_bf16_{n}.npy')
    ref = np.load(out / 'logits_8.npy')
    assert np.abs(bf16 - ref).max() <= 2e-2 * np.abs(ref).max() + 1e-3
