"""The device mesh and where every array lives on it.

Mesh axes ('data', 'fsdp', 'tensor') with Auto axis types (linen/GSPMD code fails on the Explicit default of
`jax.make_mesh`; docs/scaling.md, "Mesh"). One rule table maps the logical axis names the models declare to mesh
axes:

  * batches are split over ('data', 'fsdp'): every device of those two axes holds different examples;
  * parameters (and the optimizer moments and EMA that mirror them) are split over 'fsdp' on their embedding side
    (ZeRO-3 style: gathered per layer inside the step) and over 'tensor' on attention heads and MLP hidden units
    (Megatron style: whole heads per device);
  * activations: 'act_batch' over the batch axes, heads / MLP hidden over 'tensor', the residual stream whole.

With fsdp = tensor = 1 everything but the batch is replicated: plain data parallelism.

Initialisation is sharded from the start (`init_sharded`): the initialiser is jitted with `out_shardings`, so no
device ever holds the whole ViT-g. The step is traced under `activate(mesh)` (the mesh and the rules in context) so
that `nn.with_logical_constraint` in the models takes effect; outside it those constraints are no-ops.
"""
from __future__ import annotations

import contextlib
import math

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')

# logical axis (declared in models/*.py) → mesh axis; one table for parameters and activations.
RULES = (
    # parameters
    ('embed', 'fsdp'), ('decoder_embed', 'fsdp'),
    ('heads', 'tensor'), ('mlp', 'tensor'),
    ('layers', None), ('kv', None), ('classes', None), ('pixels', None),
    # activations (their own names, so the batch can take 'fsdp' while the weights' embed side also does)
    ('act_batch', BATCH_AXES), ('act_tokens', None), ('act_embed', None),
    ('act_heads', 'tensor'), ('act_mlp', 'tensor'),
)


def make_mesh(shape: tuple[int, int, int], devices=None) -> Mesh:
  """A ('data', 'fsdp', 'tensor') mesh of `shape` over `devices` (default: all devices of all processes).

  `mesh_utils.create_device_mesh` orders the devices by the physical topology (TPU ICI rings, GPUs of one host
  together), so the innermost axis ('tensor') stays within the fastest links.
  """
  devices = list(jax.devices() if devices is None else devices)
  if math.prod(shape) != len(devices):
    raise ValueError(f'mesh shape {shape} needs {math.prod(shape)} devices, got {len(devices)}')
  return Mesh(mesh_utils.create_device_mesh(shape, devices), AXES, axis_types=(AxisType.Auto,) * len(AXES))


@contextlib.contextmanager
def activate(mesh: Mesh):
  """Mesh and logical rules in context, for tracing the step (activation constraints resolve against them)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(RULES):
    yield


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def tree_shardings(boxed_tree, mesh: Mesh):
  """NamedShardings for a tree whose leaves carry logical axis names (flax LogicallyPartitioned boxes, e.g. from
  `models.abstract_params`); unboxed leaves are replicated.

  A dimension that the rules would split over mesh axes whose size does not divide it stays whole on that
  dimension (ViT-g's decoder MLP has 2234 = 2 x 1117 hidden units: tensor = 4 cannot split it), so any mesh works
  for any model; `unsplit_dims` lists where that happened.
  """
  specs = nn.get_partition_spec(boxed_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, RULES)
  values = nn.unbox(boxed_tree)
  return jax.tree_util.tree_map(lambda v, s: _divisible(v.shape, s), values, shardings)


def _axis_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  return math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes))


def _divisible(shape, s: NamedSharding) -> NamedSharding:
  spec = tuple(s.spec)
  fixed = tuple(None if axes is not None and shape[i] % _axis_size(s.mesh, axes) else axes
                for i, axes in enumerate(spec))
  return s if fixed == spec else NamedSharding(s.mesh, PartitionSpec(*fixed))


def unsplit_dims(boxed_tree, mesh: Mesh) -> list[str]:
  """'path: dim d (size n) not split over axes' for every dimension the rules could not split on `mesh`."""
  specs = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_tree), mesh, RULES)
  out = []
  for (path, v), s in zip(jax.tree_util.tree_flatten_with_path(nn.unbox(boxed_tree))[0],
                          jax.tree_util.tree_leaves(specs)):
    for i, axes in enumerate(tuple(s.spec)):
      if axes is not None and v.shape[i] % _axis_size(mesh, axes):
        out.append(f'{"/".join(_key(k) for k in path)}: dim {i} (size {v.shape[i]}) not split over {axes}')
  return out


def mirror_shardings(abstract_tree, params_abstract, mesh: Mesh):
  """Shardings for a tree whose parts mirror the parameters (optimizer moments, accumulated gradients, EMA).

  `params_abstract` holds ShapeDtypeStructs with shardings. A leaf whose key path ends with a parameter's path and
  has that parameter's shape takes its sharding; every other leaf (step counters, scalars) is replicated.
  """
  by_path = {tuple(_key(k) for k in path): p
             for path, p in jax.tree_util.tree_flatten_with_path(params_abstract)[0]}
  rep = replicated(mesh)

  def pick(path, leaf):
    keys = tuple(_key(k) for k in path)
    for start in range(len(keys)):
      p = by_path.get(keys[start:])
      if p is not None and tuple(p.shape) == tuple(leaf.shape):
        return p.sharding
    return rep
  return jax.tree_util.tree_map_with_path(pick, abstract_tree)


def _key(k) -> str:
  return str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))


def init_sharded(init_fn, rng: jax.Array, shardings):
  """`init_fn(rng)` computed directly into `shardings`: each device materialises only its own shards."""
  return jax.jit(init_fn, out_shardings=shardings)(rng)


def with_shardings(abstract, shardings):
  """ShapeDtypeStructs carrying shardings: what orbax restores onto and what `jit(...).lower` takes."""
  return jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def bytes_per_device(tree) -> dict[int, int]:
  """Bytes each device holds of a tree of jax.Arrays (its addressable shards), by device id."""
  out: dict[int, int] = {}
  for leaf in jax.tree_util.tree_leaves(tree):
    for shard in leaf.addressable_shards:
      out[shard.device.id] = out.get(shard.device.id, 0) + shard.data.nbytes
  return out


def per_example(fn):
  """`fn` (batch-leading arrays → batch-leading arrays, no mixing across examples) as a per-shard program.

  Under a mesh whose batch axes split the batch (the train step runs under `activate`), `fn` runs through
  `jax.shard_map` on each device's own examples; elsewhere (one device, notebooks, eval programs traced outside
  the mesh) it is called as is. Used for the per-example token gathers and the pixel target. GSPMD partitions
  those gathers without communication too (the compiled step has the same collectives either way, checked on
  (8,1,1) and (2,4,1)); the per-shard form makes "no communication" hold by construction instead of by the
  partitioner's recognition of the batch dimension, which would otherwise all-gather the B×N×D operand.
  """
  def wrapped(*args):
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or any(a not in mesh.axis_names for a in BATCH_AXES):
      return fn(*args)
    shards = math.prod(mesh.shape[a] for a in BATCH_AXES)
    if shards == 1 or any(x.shape[0] % shards for x in args):
      return fn(*args)
    spec = PartitionSpec(BATCH_AXES)
    return jax.shard_map(fn, mesh=mesh, in_specs=(spec,) * len(args), out_specs=spec)(*args)
  return wrapped
