"""Replica parallelism over devices: the R replicas are independent, so the replica axis of
the train state is sharded over a 1-D device mesh ("replicas") and nothing is communicated
during training (data, data order and evaluation sets are replicated).

On a CPU the devices are XLA host devices: `python -m repro.train` starts the XLA CPU client
with one device per usable core (`trainer.cpu_devices`, see runtime.py), and each
device runs its shard of the replicas on its own thread. XLA:CPU runs a batched matmul of
the replicas on one core otherwise, so this is what lets R replicas use both cores of a
2-core machine. GPU/TPU devices are used as they are.

Data parallelism (`trainer.data_devices` = d > 1): a 2-D mesh ("replicas", "data"). The
train state keeps its replica axis sharded over "replicas" and is replicated over "data";
each step's batch (shared by the replicas) is constrained inside the compiled chunk to have
its example axis sharded over "data" (`with_sharding_constraint`), so every device computes
the per-example losses of B/d examples and GSPMD all-reduces what is reduced over examples:
the mean loss, hence the gradient. Everything after the gradient -- clipping, the gradient
noise, the optimizer -- sees the reduced gradient and the replica's key, which are
replicated over "data", so every data shard draws the same noise and applies the same
update (noise after the mean, as in conventions.md). Results equal d = 1 up to the
reordering of the example sums (float32 rounding). With d = 1 the mesh stays 1-D and the
programs are exactly those without data parallelism.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

REPLICA_AXIS = "replicas"
DATA_AXIS = "data"


def check_data_devices(data_devices: Any, batch_size: int, examples_per_step: int) -> None:
    """ValueError (one line naming trainer.data_devices) unless it is an integer >= 1 that
    divides the batch and is at most the number of devices."""
    available = len(jax.devices())
    if not isinstance(data_devices, int) or isinstance(data_devices, bool) or data_devices < 1:
        raise ValueError(f"trainer.data_devices must be an integer >= 1, got {data_devices!r}")
    if data_devices > available:
        raise ValueError(
            f"trainer.data_devices={data_devices} is more than the {available} devices available"
        )
    if batch_size % data_devices or examples_per_step % data_devices:
        raise ValueError(
            f"trainer.data_devices={data_devices} must divide trainer.batch_size={batch_size} "
            f"(examples per step {examples_per_step})"
        )


def replica_mesh(
    num_replicas: int, max_devices: int | None = None, data_devices: int = 1
) -> Mesh | None:
    """The largest 1-D mesh whose size divides `num_replicas` (None if that is 1 device);
    with `data_devices` d > 1, the 2-D mesh (r, d) with the largest such r that fits."""
    devices = jax.devices()
    count = min(len(devices) // data_devices, max_devices or len(devices))
    while count > 1 and num_replicas % count:
        count -= 1
    if data_devices > 1:
        grid = np.asarray(devices[: count * data_devices]).reshape(count, data_devices)
        return Mesh(grid, (REPLICA_AXIS, DATA_AXIS))
    if count <= 1:
        return None
    return Mesh(devices[:count], (REPLICA_AXIS,))


def batch_sharding(mesh: Mesh | None, example_axis: int = 0) -> NamedSharding | None:
    """Sharding of a batch with its example axis over "data" (None without data parallelism)."""
    if mesh is None or DATA_AXIS not in mesh.axis_names:
        return None
    return NamedSharding(mesh, PartitionSpec(*([None] * example_axis), DATA_AXIS))


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


def to_devices(tree: Any, mesh: Mesh | None, example_axis: int | None = None) -> Any:
    """Place every leaf on the device(s): whole on every device of the mesh, or with axis
    `example_axis` sharded over "data" when the mesh has that axis, else on the default
    device (host-fed batches are put there by the feeding thread, not by the call)."""
    if mesh is None:
        return jax.device_put(tree)
    sharding = None if example_axis is None else batch_sharding(mesh, example_axis)
    return replicate(tree, mesh) if sharding is None else jax.device_put(tree, sharding)
