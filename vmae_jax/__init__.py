"""vmae_jax: VideoMAE / VideoMAE V2 and temporal adapters in JAX/Flax."""
__version__ = '0.1.0'


def load(path, dtype=None, mesh=None, step=None):
  """Restore a checkpoint (written by `vmae_jax.convert` or by training) as a ready-to-call model, on one device or
  sharded over `mesh`, optionally cast to `dtype` (e.g. 'bfloat16').

  See `vmae_jax.weights.loaded.load`: `m.config`, `m.variables`, `m.encode`, `m.reconstruct`, `m.classify`.
  """
  from vmae_jax.weights.loaded import load as _load
  return _load(path, dtype=dtype, mesh=mesh, step=step)
