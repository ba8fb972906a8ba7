"""Loss plug-ins: what a model's outputs are compared with, per example.

A task maps (outputs, batch) to per-example arrays. The engine trains on
``mean(weights * loss)`` (weights = 1 without an example-weight sampler) and averages every
metric over examples, so a task never sees replicas, weights or padding: evaluation passes a
0/1 mask and takes ``sum(mask * metric) / sum(mask)``. Sequence tasks (CTC for Jasper) plug in
the same way with their padding masks inside the batch dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

Batch = Mapping[str, jax.Array]
PerExample = Callable[[jax.Array, Batch], jax.Array]


@dataclasses.dataclass(frozen=True)
class Task:
    """A per-example loss plus per-example metrics (all float32[B])."""

    name: str
    loss: PerExample
    metrics: Mapping[str, PerExample]
    # Metric used as the default objective and its direction.
    default_objective: str
    default_mode: str  # "max" or "min"

    def per_example(self, outputs: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """{"loss": [B], **metrics: [B]}."""
        values = {"loss": self.loss(outputs, batch)}
        for name, fn in self.metrics.items():
            values[name] = fn(outputs, batch)
        return values


def _cross_entropy(logits: jax.Array, batch: Batch) -> jax.Array:
    """-log softmax(logits)[y], computed in float32."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["y"].astype(jnp.int32)
    )


def _accuracy(logits: jax.Array, batch: Batch) -> jax.Array:
    return (jnp.argmax(logits, axis=-1) == batch["y"]).astype(jnp.float32)


def _flat_outputs(outputs: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    y = batch["y"].astype(jnp.float32)
    out = outputs.astype(jnp.float32)
    if y.ndim == 1:
        out = out.reshape(out.shape[0], -1)[:, 0] if out.ndim > 1 else out
    return out, y


def _squared_error(outputs: jax.Array, batch: Batch) -> jax.Array:
    """0.5 * sum_k (f_k - y_k)^2: its gradient is the residual, as in Mori et al."""
    out, y = _flat_outputs(outputs, batch)
    err = (out - y) ** 2
    return 0.5 * (err if err.ndim == 1 else err.sum(axis=-1))


def _sign_accuracy(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Agreement of sign(f) with +-1 targets (parity-style labels)."""
    out, y = _flat_outputs(outputs, batch)
    return (jnp.sign(out) == jnp.sign(y)).astype(jnp.float32)


TASKS: dict[str, Task] = {
    "classification": Task(
        "classification", _cross_entropy, {"accuracy": _accuracy}, "test_accuracy", "max"
    ),
    "mse": Task("mse", _squared_error, {}, "test_loss", "min"),
    "binary_mse": Task(
        "binary_mse", _squared_error, {"accuracy": _sign_accuracy}, "test_accuracy", "max"
    ),
}


def get_task(name: str) -> Task:
    """The task registered as `name`; ValueError listing the known names otherwise."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]


def num_outputs_for(task: Task, num_classes: int, y_train: jax.Array) -> int:
    """Output width a model needs for `task` on a data set."""
    if task.name == "classification":
        if num_classes < 2:
            raise ValueError(
                f"task=classification needs a data set with num_classes >= 2, got {num_classes}"
            )
        return int(num_classes)
    return 1 if y_train.ndim == 1 else int(y_train.shape[-1])
