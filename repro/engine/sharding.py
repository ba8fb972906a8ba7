"""Replica parallelism over devices: the R replicas are independent, so the replica axis of
the train state is sharded over a 1-D device mesh ("replicas") and nothing is communicated
during training (data, data order and evaluation sets are replicated, unless resident sets
are split over the data devices: split_data.py).

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

from repro.engine.train_state import is_prng_key

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


def put(value: Any, sharding: NamedSharding) -> Any:
    """`jax.device_put`, also of typed PRNG keys onto devices of other processes (JAX puts
    their key data there, not the keys): every process must pass the same value."""
    if is_prng_key(value) and jax.process_count() > 1:
        data = jax.device_put(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    return jax.device_put(value, sharding)


def shard_replica_axis(tree: Any, mesh: Mesh | None) -> Any:
    """Place leaves with a leading replica axis sharded over the mesh; scalars replicated."""
    if mesh is None:
        return tree
    sharded = NamedSharding(mesh, PartitionSpec(REPLICA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(
        lambda x: put(x, sharded if getattr(x, "ndim", 0) >= 1 else replicated), tree
    )


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Place every leaf whole on every device of the mesh."""
    if mesh is None:
        return tree
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: put(x, replicated), tree)


def to_devices(tree: Any, mesh: Mesh | None, example_axis: int | None = None) -> Any:
    """Place every leaf on the device(s): whole on every device of the mesh, or with axis
    `example_axis` sharded over "data" when the mesh has that axis, else on the default
    device (host-fed batches are put there by the feeding thread, not by the call)."""
    if mesh is None:
        return jax.device_put(tree)
    sharding = None if example_axis is None else batch_sharding(mesh, example_axis)
    if sharding is None:
        return replicate(tree, mesh)
    return jax.tree.map(lambda x: put(x, sharding), tree)


def to_host(value: Any) -> np.ndarray:
    """A device value as a NumPy array on this host. With several processes a value sharded
    over the replicas spans devices of other processes: its shards are gathered from every
    process (a collective: every process must make the same calls in the same order)."""
    if isinstance(value, jax.Array) and not (
        value.is_fully_addressable or value.is_fully_replicated
    ):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def local_span(sharding: NamedSharding, shape: tuple[int, ...], axis: int) -> tuple[int, int]:
    """The indices (lo, hi) of `axis` that this process's devices hold of an array of `shape`
    placed by `sharding`; ValueError unless they are one contiguous block (by mesh order)."""
    indices = sharding.addressable_devices_indices_map(shape).values()
    spans = sorted({index[axis].indices(shape[axis])[:2] for index in indices})
    lo, hi = spans[0][0], spans[-1][1]
    if sum(stop - start for start, stop in spans) != hi - lo:
        raise ValueError(
            f"this process's devices hold indices {spans} of axis {axis}, not one block"
        )
    return lo, hi


def process_part(sharding: NamedSharding | None, batch_size: int) -> tuple[int, int] | None:
    """The examples (lo, hi) of a batch that this process's devices hold when the batch's
    example axis (axis 1 of stacked [rows, B, ...] batches) is sharded over "data"; None when
    they hold all of it (one process, or a "data" axis inside each process)."""
    if sharding is None or jax.process_count() == 1:
        return None
    lo, hi = local_span(sharding, (1, batch_size), 1)
    return None if (lo, hi) == (0, batch_size) else (lo, hi)


def put_process_part(
    batches: Any, sharding: NamedSharding, batch_size: int, example_axis: int = 1
) -> Any:
    """The global batch [.., B, ..] sharded by `sharding`, from this process's part of it
    (`jax.make_array_from_process_local_data`): each process passes only its examples."""

    def assemble(local: np.ndarray) -> jax.Array:
        shape = list(local.shape)
        shape[example_axis] = batch_size
        return jax.make_array_from_process_local_data(sharding, local, tuple(shape))

    return jax.tree.map(assemble, batches)
