"""Resident data sets split by example over the "data" devices (`trainer.resident_split`).

Whole (the default within one process): every device holds the whole training and evaluation
sets, and a step gathers its batch by index on each device. That costs each process the whole
set in device memory, which stops scaling once the batch is split over several processes
(hosts). Split: the example axis of the training set is sharded over the "data" mesh axis (and
replicated over "replicas"), so each data device holds N/d examples and each process only the
shards of its devices; `auto` splits exactly when the batch is split across processes.

A step's batch is then gathered inside `shard_map`: each data device takes the batch's
examples that fall in its shard, zeros for the others, and one reduce-scatter over "data" sums
these and leaves each device its block of the batch (the block the batch sharding gives it).
The collective moves a batch, never the set. Each example comes from exactly one device and
every other device adds zeros, so the batch equals the whole-set gather exactly (x + 0 = x
for finite x; only a -0.0 turns into +0.0).

Evaluation sets are padded batches [M, B, ...]; split, their B axis is sharded over "data"
(B rounded up to a multiple of d with masked padding), so each device evaluates B/d examples
per batch and GSPMD all-reduces the masked sums: equal to the whole-set evaluation up to the
order of the float32 sums.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from repro.engine.sharding import DATA_AXIS, batch_sharding, local_span, process_part

Batch = dict[str, jax.Array]


def is_split(setting: str, mesh: Mesh | None, batch_size: int) -> bool:
    """Whether resident sets are split: `split` (needs a "data" axis, checked with the
    config), `whole`, or `auto` = when this process holds only part of each batch."""
    if mesh is None or DATA_AXIS not in mesh.axis_names or setting == "whole":
        return False
    if setting == "split":
        return True
    return process_part(batch_sharding(mesh, example_axis=1), batch_size) is not None


def data_devices(mesh: Mesh) -> int:
    return int(mesh.shape[DATA_AXIS])


def place_split(
    arrays: Mapping[str, np.ndarray], mesh: Mesh, axis: int = 0
) -> dict[str, jax.Array]:
    """Host arrays as global arrays with `axis` sharded over "data" (padded with zeros to a
    multiple of the data devices); each process puts only the block its devices hold."""
    devices = data_devices(mesh)
    sharding = NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))
    placed = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        pad = -value.shape[axis] % devices
        if pad:
            widths = [(0, 0)] * value.ndim
            widths[axis] = (0, pad)
            value = np.pad(value, widths)
        lo, hi = local_span(sharding, value.shape, axis)
        local = value[(slice(None),) * axis + (slice(lo, hi),)]
        placed[key] = jax.make_array_from_process_local_data(sharding, local, value.shape)
    return placed


def make_split_gather(mesh: Mesh) -> Callable[[Mapping[str, jax.Array], jax.Array], Batch]:
    """(split set {k: [N_pad, ...]}, indices [n] replicated) -> the batch {k: [n, ...]} with
    its example axis sharded over "data" (module docstring); n divisible by the data devices."""
    spec, replicated = PartitionSpec(DATA_AXIS), PartitionSpec()

    def local(shard: jax.Array, indices: jax.Array) -> jax.Array:
        rows = shard.shape[0]
        position = indices - jax.lax.axis_index(DATA_AXIS) * rows
        inside = (position >= 0) & (position < rows)
        taken = shard[jnp.clip(position, 0, rows - 1)]
        inside = inside.reshape(inside.shape + (1,) * (taken.ndim - 1))
        dtype = taken.dtype
        if dtype == jnp.bool_:  # collectives do not sum booleans
            taken = taken.astype(jnp.uint8)
        taken = jnp.where(inside, taken, jnp.zeros_like(taken))
        part = jax.lax.psum_scatter(taken, DATA_AXIS, scatter_dimension=0, tiled=True)
        return part.astype(dtype)

    gather_one = jax.shard_map(local, mesh=mesh, in_specs=(spec, replicated), out_specs=spec)

    def gather(data: Mapping[str, jax.Array], indices: jax.Array) -> Batch:
        return {k: gather_one(v, indices) for k, v in data.items()}

    return gather


def eval_batch_multiple(mesh: Mesh | None, split: bool) -> int:
    """What an evaluation batch size is rounded up to: the data devices when split, else 1."""
    return data_devices(mesh) if split and mesh is not None else 1


def describe(mesh: Mesh, num_train: int) -> dict[str, int]:
    """summary.json metadata.data.resident_split: the set's size and the examples this process
    (process 0, which writes the summary) holds on its devices."""
    devices = data_devices(mesh)
    padded = num_train + (-num_train % devices)
    lo, hi = local_span(NamedSharding(mesh, PartitionSpec(DATA_AXIS)), (padded,), 0)
    return {
        "data_devices": devices,
        "train_examples": num_train,
        "train_examples_this_process": min(hi, num_train) - lo,
    }
