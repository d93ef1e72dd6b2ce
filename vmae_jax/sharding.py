"""The device mesh and where arrays live on it.

Axes ('data', 'fsdp', 'tensor'), Auto axis types (linen/GSPMD code fails on the Explicit default of
`jax.make_mesh`, spec/jax-stack.md §0.1). Batches are split over ('data', 'fsdp'); parameters and optimizer state
follow the logical-axis rules below (with fsdp = tensor = 1 everything is replicated: plain data parallelism).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')
# logical axis (models/*.py) → mesh axis. Parameters are sharded over fsdp on their embedding side and over
# tensor on heads / mlp; layers, kv, classes, pixels stay whole.
RULES = (
    ('embed', 'fsdp'), ('decoder_embed', 'fsdp'),
    ('heads', 'tensor'), ('mlp', 'tensor'),
    ('layers', None), ('kv', None), ('classes', None), ('pixels', None),
)


def make_mesh(shape: tuple[int, int, int], devices=None) -> Mesh:
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(shape), AXES, axis_types=(AxisType.Auto,) * len(AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def tree_shardings(boxed_tree, mesh: Mesh):
  """NamedShardings for a tree whose leaves carry logical axis names (flax LogicallyPartitioned boxes);
  unboxed leaves are replicated."""
  import flax.linen as nn
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, RULES)
