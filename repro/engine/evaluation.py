"""Evaluation of all replicas on a fixed data set (test set, or a train subset).

The set is padded to a whole number of batches of `eval_batch_size` once, on the host; the
mask removes the padding: metric = sum_i(mask_i * m_i) / sum_i(mask_i). The pass is one
jitted loop over the batches, vmapped over replicas with the batch shared (not vmapped).

A streamed evaluation set (feeding.py) is never whole on the device: it runs the same jitted
program over a few host-fed padded batches at a time, carrying the masked sums from call to
call. Both paths are bit-identical, on any CPU: (1) one per-batch body in a loop whose trip
count is traced, so no call's code depends on how many batches it is given; (2) the sums are
added batch after batch in the same order; (3) the metric is the float32 sums divided by the
count of real examples on the host (`metric_means`), not in compiled code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.engine.sharding import to_host
from repro.engine.steps import ReplicaModel
from repro.engine.train_state import ReplicaState


def pad_to_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int, multiple: int = 1
) -> dict[str, np.ndarray]:
    """{k: [num_batches, batch_size, ...]} plus a float32 "mask" of real examples; the batch
    size (at most the set's size) is rounded up to a multiple of `multiple`."""
    n = len(next(iter(arrays.values())))
    batch_size = max(1, min(int(batch_size), n))
    batch_size += -batch_size % multiple
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
    return ("loss", *program.task.metric_names)


def _masked_sums(
    program: ReplicaModel,
    params: Any,
    model_state: Any,
    data: Mapping[str, jax.Array],
    num_batches: jax.Array,
    sums: dict[str, jax.Array],
) -> dict[str, jax.Array]:
    """`sums` plus sum_i mask_i * m_i over batches 0 .. num_batches-1 of `data` [M, B, ...].

    A `while_loop` with a traced bound, not a `scan` over M: the compiler sees neither M nor
    the trip count, so it cannot unroll or inline the body, and every call -- the whole
    resident set, or a few streamed batches -- runs the same per-batch code.
    """

    def body(carry: tuple[jax.Array, dict[str, jax.Array]]) -> Any:
        i, sums = carry
        batch = {k: v[i] for k, v in data.items()}
        outputs, _ = program.apply(params, model_state, batch, train=False)
        values = program.task.per_example(outputs, batch)
        mask = batch["mask"]
        return i + 1, {k: sums[k] + jnp.sum(mask * values[k]) for k in sums}

    start = jnp.zeros((), jnp.int32)
    _, sums = jax.lax.while_loop(lambda c: c[0] < num_batches, body, (start, sums))
    return sums


EvalSumsFn = Callable[
    [ReplicaState, Mapping[str, jax.Array], int, dict[str, jax.Array]], dict[str, jax.Array]
]


def make_eval_sums_fn(program: ReplicaModel) -> EvalSumsFn:
    """jit((replicas, padded batches [M, B, ...], num_batches, sums {name: [R]}) -> sums plus
    the masked sums of batches 0 .. num_batches-1), vmapped over replicas with the batches
    shared; the sums buffer is donated."""

    def accumulate(
        replicas: ReplicaState,
        data: Mapping[str, jax.Array],
        num_batches: jax.Array,
        sums: dict[str, jax.Array],
    ) -> dict[str, jax.Array]:
        return jax.vmap(lambda p, m, s: _masked_sums(program, p, m, data, num_batches, s))(
            replicas.params, replicas.model_state, sums
        )

    return jax.jit(accumulate, donate_argnums=3)


def zero_sums(program: ReplicaModel, replicas: ReplicaState) -> dict[str, jax.Array]:
    """{name: float32 zeros [R]}: the start of an evaluation's sums."""
    num_replicas = replicas.diverged.shape[0]
    return {k: jnp.zeros((num_replicas,), jnp.float32) for k in metric_names(program)}


def metric_means(sums: Mapping[str, Any], count: int) -> dict[str, np.ndarray]:
    """{name: float32 sums / count}, divided on the host: IEEE float32 division, correctly
    rounded. (Compiled, XLA rewrites a division by a broadcast scalar into a multiplication
    by its reciprocal, which can be 1 ulp off; the resident and streamed paths must not
    depend on which form the compiler picked.)"""
    return {k: to_host(v).astype(np.float32) / np.float32(count) for k, v in sums.items()}


def make_eval_fn(
    program: ReplicaModel,
) -> Callable[[ReplicaState, Mapping[str, jax.Array]], dict[str, np.ndarray]]:
    """(replicas, padded data [M, B, ...] with "mask") -> {"loss": [R], **task metrics: [R]}:
    one call of the `make_eval_sums_fn` program over all M batches, then `metric_means`."""
    sums_fn = make_eval_sums_fn(program)

    def evaluate(replicas: ReplicaState, data: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
        num_batches = int(data["mask"].shape[0])
        sums = sums_fn(replicas, data, num_batches, zero_sums(program, replicas))
        return metric_means(sums, int(np.count_nonzero(to_host(data["mask"]))))

    return evaluate
