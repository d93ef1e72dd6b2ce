"""A host batch on its way into the jitted step: placed on the mesh as one global array, then normalised on device.

Clips cross the host boundary as uint8 (4× fewer bytes than float32) and are normalised inside the jitted step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vmae_jax.constants import IMAGENET_MEAN, IMAGENET_STD
from vmae_jax.parallel.sharding import BATCH_AXES


def normalize_on_device(video, mean=IMAGENET_MEAN, std=IMAGENET_STD):
  """uint8 clips → float32 normalised, inside the jitted step."""
  return (video.astype(jnp.float32) / 255.0 - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def global_batch(local_batch: dict, mesh, batch_axes=BATCH_AXES) -> dict:
  """Assemble the global jax.Array batch from each process's share, sharded over the mesh's batch axes."""
  sharding = NamedSharding(mesh, PartitionSpec(batch_axes))
  return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                                local_batch)
