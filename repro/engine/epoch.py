"""Epochs as compiled loops: data order, and chunks of steps run without Python in between.

Data order. Epoch e visits the training set in the order of a permutation drawn from
``fold_in(data_key, e)``; step s of the epoch takes examples ``perm[s*n:(s+1)*n]`` with
n = examples per step (the last N mod n examples of each epoch are dropped). With a shared
data order (default) every replica sees the same batches: the batch is not vmapped, so the
first layer of all replicas is one matmul [B, D] x [D, R*H]. With a per-replica order each
replica's permutation comes from its own seed.

Chunks. ``run_chunk(state, hparams, data, order, stop)`` advances all replicas from
``state.step`` to global step ``stop`` inside one `lax.while_loop`; the bounds are traced,
so one compiled program serves every chunk size, the epoch's last chunk, and a run resumed
mid-epoch. The state buffer is donated. ``chunk_stops`` places the chunk ends of an epoch
(progress updates and mid-epoch checkpoints happen there); ``ResidentFeed`` runs the
resident chunks behind the interface the loop shares with host-fed streams (feeding.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax

from repro.data.streaming import epoch_order
from repro.engine.steps import ReplicaModel
from repro.engine.train_state import TrainState

ChunkFn = Callable[
    [TrainState, Mapping[str, jax.Array], Mapping[str, jax.Array], jax.Array, int], TrainState
]


def make_order_fn(
    num_train: int, steps_per_epoch: int, examples_per_step: int, shared: bool
) -> Callable[[jax.Array, int], jax.Array]:
    """jit((key or keys [R], epoch) -> int32 [S, n] shared, or [R, S, n] per replica)."""

    def order(key: jax.Array, epoch: jax.Array) -> jax.Array:
        return epoch_order(key, epoch, num_train, steps_per_epoch, examples_per_step)

    return jax.jit(order if shared else jax.vmap(order, in_axes=(0, None)))


def chunk_stops(epoch: int, steps_per_epoch: int, chunks: int) -> list[int]:
    """Global steps at which the chunks of `epoch` end (`chunks` near-equal parts)."""
    base = epoch * steps_per_epoch
    return sorted({base + math.ceil(k * steps_per_epoch / chunks) for k in range(1, chunks + 1)})


def make_step_all(
    program: ReplicaModel, shared: bool = True
) -> Callable[[TrainState, Mapping[str, jax.Array], Mapping[str, jax.Array]], TrainState]:
    """(state, hparams, batch) -> state one step later: every replica's step, vmapped, with the
    batch shared by all replicas (or, `shared=False`, one batch per replica)."""
    step_all = jax.vmap(program.replica_step, in_axes=(0, 0, None if shared else 0, None))

    def step(
        st: TrainState, hparams: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]
    ) -> TrainState:
        replicas = step_all(st.replicas, hparams, batch, st.step)
        return TrainState(step=st.step + 1, replicas=replicas)

    return step


def make_chunk_fn(
    program: ReplicaModel,
    steps_per_epoch: int,
    shared: bool,
    batch_sharding: jax.sharding.Sharding | None = None,
    gather: Callable[[Mapping[str, jax.Array], jax.Array], dict[str, jax.Array]] | None = None,
) -> ChunkFn:
    """jit of the chunk runner described in the module docstring; `batch_sharding` (data
    parallelism, sharding.py) constrains the gathered shared batch's example axis; `gather`
    (data, indices) -> batch replaces the local gather of a set split over the data devices
    (split_data.py)."""
    step_all = make_step_all(program, shared)

    def run_chunk(
        state: TrainState,
        hparams: Mapping[str, jax.Array],
        data: Mapping[str, jax.Array],
        order: jax.Array,
        stop: jax.Array,
    ) -> TrainState:
        def body(st: TrainState) -> TrainState:
            position = st.step % steps_per_epoch
            if shared:
                indices = order[position]
                if gather is not None:
                    batch = gather(data, indices)
                else:
                    batch = {k: v[indices] for k, v in data.items()}
                if batch_sharding is not None:
                    batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            else:
                indices = order[:, position]  # [R, n]
                batch = {k: v[indices] for k, v in data.items()}
            return step_all(st, hparams, batch)

        return jax.lax.while_loop(lambda st: st.step < stop, body, state)

    return jax.jit(run_chunk, donate_argnums=0)


class ResidentFeed:
    """Training set on the device: `advance` runs the chunk from `start` to `stop` (global
    steps) on the epoch's order, computed once per epoch from the data key."""

    def __init__(
        self,
        chunk_fn: ChunkFn,
        order_fn: Callable[[jax.Array, int], jax.Array],
        data_key: jax.Array,
        train_data: Mapping[str, jax.Array],
        steps_per_epoch: int,
    ) -> None:
        self.chunk_fn, self.order_fn, self.data_key = chunk_fn, order_fn, data_key
        self.train_data, self.steps_per_epoch = train_data, steps_per_epoch
        self._epoch: int | None = None
        self._order: jax.Array | None = None

    def advance(
        self, state: TrainState, hparams: Mapping[str, jax.Array], start: int, stop: int
    ) -> TrainState:
        epoch = start // self.steps_per_epoch
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self.order_fn(self.data_key, epoch)
        return self.chunk_fn(state, hparams, self.train_data, self._order, stop)

    def close(self) -> None:
        """Nothing to release (the interface of host-fed streams)."""
