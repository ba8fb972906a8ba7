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
mid-epoch. The state buffer is donated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

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
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), num_train)
        used = steps_per_epoch * examples_per_step
        return perm[:used].reshape(steps_per_epoch, examples_per_step).astype(jnp.int32)

    return jax.jit(order if shared else jax.vmap(order, in_axes=(0, None)))


def make_chunk_fn(program: ReplicaModel, steps_per_epoch: int, shared: bool) -> ChunkFn:
    """jit of the chunk runner described in the module docstring."""
    step_all = jax.vmap(program.replica_step, in_axes=(0, 0, None if shared else 0, None))

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
                batch = {k: v[indices] for k, v in data.items()}
            else:
                indices = order[:, position]  # [R, n]
                batch = {k: v[indices] for k, v in data.items()}
            replicas = step_all(st.replicas, hparams, batch, st.step)
            return TrainState(step=st.step + 1, replicas=replicas)

        return jax.lax.while_loop(lambda st: st.step < stop, body, state)

    return jax.jit(run_chunk, donate_argnums=0)
