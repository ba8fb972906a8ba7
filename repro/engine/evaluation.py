"""Evaluation of all replicas on a fixed data set (test set, or a train subset).

The set is padded to a whole number of batches of `eval_batch_size` once, on the host; the
mask removes the padding: metric = sum_i(mask_i * m_i) / sum_i(mask_i). The whole pass is one
jitted `lax.scan` over batches, vmapped over replicas with the batch shared (not vmapped).

A streamed evaluation set (feeding.py) is never whole on the device: `make_eval_sums_fn`
runs the same scan over a few host-fed padded batches at a time, carrying the masked sums
from call to call, and the metric is the total sums divided by the count of real examples --
the same sums in the same order as the resident pass over the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.engine.steps import ReplicaModel
from repro.engine.train_state import ReplicaState


def pad_to_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """{k: [num_batches, batch_size, ...]} plus a float32 "mask" of real examples."""
    n = len(next(iter(arrays.values())))
    batch_size = max(1, min(int(batch_size), n))
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if pad:
            value = np.concatenate([value, np.zeros((pad, *value.shape[1:]), value.dtype)])
        out[key] = value.reshape(num_batches, batch_size, *value.shape[1:])
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    out["mask"] = mask.reshape(num_batches, batch_size)
    return out


def metric_names(program: ReplicaModel) -> tuple[str, ...]:
    """Names of the evaluated metrics: "loss" and the task's metrics."""
    return ("loss", *program.task.metrics)


def _masked_sums(
    program: ReplicaModel,
    params: Any,
    model_state: Any,
    data: Mapping[str, jax.Array],
    sums: dict[str, jax.Array],
) -> dict[str, jax.Array]:
    """`sums` plus sum_i mask_i * m_i over the batches [M, B, ...] of `data`, batch by batch."""

    def body(sums: dict[str, jax.Array], batch: Mapping[str, jax.Array]) -> Any:
        outputs, _ = program.apply(params, model_state, batch, train=False)
        values = program.task.per_example(outputs, batch)
        mask = batch["mask"]
        return {k: sums[k] + jnp.sum(mask * values[k]) for k in sums}, None

    sums, _ = jax.lax.scan(body, sums, data)
    return sums


def make_eval_fn(
    program: ReplicaModel,
) -> Callable[[ReplicaState, Mapping[str, jax.Array]], dict[str, jax.Array]]:
    """jit((replicas, padded data) -> {"loss": [R], **task metrics: [R]})."""

    def evaluate_one(params: Any, model_state: Any, data: Mapping[str, jax.Array]) -> Any:
        zeros = {k: jnp.zeros((), jnp.float32) for k in metric_names(program)}
        sums = _masked_sums(program, params, model_state, data, zeros)
        count = jnp.sum(data["mask"])
        return {k: v / count for k, v in sums.items()}

    def evaluate(replicas: ReplicaState, data: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        return jax.vmap(evaluate_one, in_axes=(0, 0, None))(
            replicas.params, replicas.model_state, data
        )

    return jax.jit(evaluate)


EvalSumsFn = Callable[
    [ReplicaState, Mapping[str, jax.Array], dict[str, jax.Array]], dict[str, jax.Array]
]


def make_eval_sums_fn(program: ReplicaModel) -> EvalSumsFn:
    """jit((replicas, padded batches [M, B, ...], sums {name: [R]}) -> sums + their masked
    sums), vmapped over replicas with the batches shared; the sums buffer is donated."""

    def accumulate(
        replicas: ReplicaState, data: Mapping[str, jax.Array], sums: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        return jax.vmap(lambda p, m, s: _masked_sums(program, p, m, data, s))(
            replicas.params, replicas.model_state, sums
        )

    return jax.jit(accumulate, donate_argnums=2)
