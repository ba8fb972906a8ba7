"""Train state of R replicas trained in one program.

Every leaf of `ReplicaState` carries a leading replica axis R; `TrainState.step` is the one
global optimizer step shared by all replicas (they take their steps together). The state is
everything a resumed run needs besides the config: parameters, model state (batch
statistics), optimizer state (including the gradient-noise key and step count), divergence
flags, and running sums of the current epoch's training metrics so a run can be checkpointed
and resumed mid-epoch. Dropout, example-weight and data-order randomness are derived from
``key`` and the step/epoch number, never stored as advancing state, so a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplicaState:
    params: Any
    model_state: Any  # non-parameter collections (e.g. {"batch_stats": ...}); {} for an MLP
    opt_state: Any
    key: jax.Array  # typed PRNG key of the replica's seed
    diverged: jax.Array  # bool: loss or gradient turned NaN/inf; replica frozen since
    diverged_step: jax.Array  # int32: global step at which it diverged, -1 if never
    sums: dict[str, jax.Array]  # float32 running sums of per-step training metrics


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken so far
    replicas: ReplicaState


def is_prng_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def select_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise `where(pred, on_true, on_false)` for a scalar predicate, typed keys included."""

    def select(a: Any, b: Any) -> Any:
        if is_prng_key(a):
            data = jnp.where(pred, jax.random.key_data(a), jax.random.key_data(b))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
        return jnp.where(pred, a, b)

    return jax.tree.map(select, on_true, on_false)


def to_storable(tree: Any) -> Any:
    """Replace typed PRNG keys by their uint32 key data (what checkpoints can store)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_prng_key(x) else x, tree)


def from_storable(template: Any, stored: Any) -> Any:
    """Inverse of `to_storable`, taking key implementations from `template`."""

    def restore(t: Any, s: Any) -> Any:
        if is_prng_key(t):
            return jax.random.wrap_key_data(jnp.asarray(s), impl=jax.random.key_impl(t))
        return s

    return jax.tree.map(restore, template, stored)


def reset_sums(state: TrainState) -> TrainState:
    """Zero the running training-metric sums at the start of an epoch."""
    sums = jax.tree.map(jnp.zeros_like, state.replicas.sums)
    return state.replace(replicas=state.replicas.replace(sums=sums))
