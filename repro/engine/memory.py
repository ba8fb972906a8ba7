"""Memory accounting of an optimizer: its state's bytes and a compiled train step's footprint.

- :func:`tree_bytes`: bytes of every array leaf of a pytree (shapes and dtypes only, so it
  works on ``jax.eval_shape`` results without allocating anything).
- :func:`optimizer_state_bytes`: bytes of ``tx.init(params)``, from shapes only. For Adam this
  is 2 P floats (first and second moments) plus a step counter; NovoGrad keeps one second
  moment per tensor, so about P floats plus one scalar per leaf.
- :func:`train_step_memory`: XLA's memory analysis of one compiled training step
  (forward, backward, optimizer update) on a batch: argument, output, temporary and peak bytes
  as the compiler planned them for the current backend.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def tree_bytes(tree: Any) -> int:
    """Sum of ``size * itemsize`` over the array leaves (arrays or ShapeDtypeStructs)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
            total += int(np.prod(leaf.shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total


def optimizer_state_bytes(tx: optax.GradientTransformation, params: Any) -> int:
    """Bytes of the optimizer state ``tx.init(params)``, computed from shapes only."""
    return tree_bytes(jax.eval_shape(tx.init, params))


@dataclasses.dataclass(frozen=True)
class StepMemory:
    """XLA's planned memory of one compiled train step, in bytes."""

    argument: int  # parameters, optimizer state and batch passed in
    output: int  # updated parameters and state
    temporary: int  # activations, gradients and other buffers live inside the step
    alias: int  # outputs written in place of donated arguments
    peak: int  # the compiler's peak estimate (argument + output + temporary - alias)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _cross_entropy_step(network: Any, tx: optax.GradientTransformation) -> Any:
    def step(params: Any, state: Any, batch: Mapping[str, jax.Array]) -> tuple[Any, Any]:
        def loss(p: Any) -> jax.Array:
            logits = network.apply({"params": p}, batch["x"], train=False)
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def train_step_memory(
    network: Any, tx: optax.GradientTransformation, params: Any, batch_size: int, input_shape
) -> StepMemory:
    """Memory analysis of one jitted cross-entropy step (parameters and state donated, as in
    a training loop) on a batch of ``batch_size`` inputs of ``input_shape`` (float32) with
    int32 labels. Shapes only: nothing is run."""
    state = jax.eval_shape(tx.init, params)
    batch = {
        "x": jax.ShapeDtypeStruct((int(batch_size), *input_shape), jnp.float32),
        "y": jax.ShapeDtypeStruct((int(batch_size),), jnp.int32),
    }
    step = jax.jit(_cross_entropy_step(network, tx), donate_argnums=(0, 1))
    stats = step.lower(params, state, batch).compile().memory_analysis()
    return StepMemory(
        argument=int(stats.argument_size_in_bytes),
        output=int(stats.output_size_in_bytes),
        temporary=int(stats.temp_size_in_bytes),
        alias=int(stats.alias_size_in_bytes),
        peak=int(getattr(stats, "peak_memory_in_bytes", 0))
        or int(
            stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            + stats.temp_size_in_bytes
            - stats.alias_size_in_bytes
        ),
    )
