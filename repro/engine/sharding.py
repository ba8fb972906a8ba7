"""Replica parallelism over devices: the R replicas are independent, so the replica axis of
the train state is sharded over a 1-D device mesh ("replicas") and nothing is communicated
during training (data, data order and evaluation sets are replicated).

On a CPU the devices are XLA host devices: `python -m repro.train` starts the XLA CPU client
with one device per usable core (`trainer.cpu_devices`, see runtime.py), and each
device runs its shard of the replicas on its own thread. XLA:CPU runs a batched matmul of
the replicas on one core otherwise, so this is what lets R replicas use both cores of a
2-core machine. GPU/TPU devices are used as they are.

Data parallelism (sharding each replica's batch over a "data" mesh axis, gradients
all-reduced by GSPMD, gradient noise added after the reduction with the replicated key)
plugs in at the same place: a 2-D mesh ("replicas", "data") and the batch gathered with its
example axis sharded; the compiled programs do not change.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

REPLICA_AXIS = "replicas"


def replica_mesh(num_replicas: int, max_devices: int | None = None) -> Mesh | None:
    """The largest 1-D mesh whose size divides `num_replicas` (None if that is 1 device)."""
    devices = jax.devices()
    count = min(len(devices), max_devices or len(devices))
    while count > 1 and num_replicas % count:
        count -= 1
    if count <= 1:
        return None
    return Mesh(devices[:count], (REPLICA_AXIS,))


def shard_replica_axis(tree: Any, mesh: Mesh | None) -> Any:
    """Place leaves with a leading replica axis sharded over the mesh; scalars replicated."""
    if mesh is None:
        return tree
    sharded = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda x: jax.device_put(x, sharded if getattr(x, "ndim", 0) >= 1 else replicated), tree
    )


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf whole on every device of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def to_devices(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf on the device(s): whole on every device of the mesh, else on the
    default device (host-fed batches are put there by the feeding thread, not by the call)."""
    return jax.device_put(tree) if mesh is None else replicate(tree, mesh)
