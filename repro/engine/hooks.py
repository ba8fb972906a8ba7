"""Per-epoch diagnostics hooks: measurements on the current parameters of every replica.

A hook is any object with ``every_epochs: int`` and ``__call__(ctx: HookContext) ->
Mapping[str, array [R] | scalar]``; its values go into that epoch's `metrics.jsonl` record
under ``<hook name>/<value name>``. Hooks are configured as a mapping under `diagnostics:`
(name -> `_target_` node with `every_epochs`), so experiments add them without touching the
engine. Hooks run after evaluation, outside the scanned training loop, and must not change
the training state or draw from the training randomness (they get their own key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from repro.engine.steps import ReplicaModel
from repro.engine.train_state import ReplicaState


@dataclasses.dataclass(frozen=True)
class HookContext:
    epoch: int  # epochs completed
    step: int  # global optimizer step
    program: ReplicaModel
    replicas: ReplicaState  # every leaf has a leading replica axis R
    # Training examples on the device: every per-example array of a batch ("x", "y", and
    # extras such as padding masks); the whole set, or the first examples of a stream.
    train_data: Mapping[str, jax.Array]
    key: jax.Array  # typed key for the hook's own randomness (fixed per epoch)


class EpochHook(Protocol):
    every_epochs: int

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]: ...


def _subset(data: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
    return {k: v[:n] for k, v in data.items()}


class GradientNoiseStrength:
    """SGD noise strength N = mean_i |grad l_i|^2 - |grad L|^2 on the first n train examples.

    L = mean_i l_i over the same examples (also returned, as ``loss``), the quantity Mori et
    al. (2022) find proportional to N late in training. Per-example gradients are summed in
    chunks of `chunk` examples and replicas are processed one after another (`lax.map`), so
    memory stays at chunk x parameters.
    """

    def __init__(self, num_examples: int = 256, chunk: int = 32, every_epochs: int = 1) -> None:
        if num_examples < 1 or chunk < 1 or every_epochs < 1:
            raise ValueError(
                "diagnostics noise strength: num_examples, chunk and every_epochs must be >= 1, "
                f"got {num_examples}, {chunk}, {every_epochs}"
            )
        self.num_examples = int(num_examples)
        self.chunk = int(min(chunk, num_examples))
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Mapping[str, jax.Array]) -> Any:
            def example_loss(p: Any, example: Mapping[str, jax.Array]) -> jax.Array:
                batch = {k: v[None] for k, v in example.items()}
                out, _ = program.apply(p, model_state, batch, train=False)
                return program.task.loss(out, batch)[0]

            grad_fn = jax.vmap(jax.value_and_grad(example_loss), in_axes=(None, 0))

            def body(carry: Any, chunk: Mapping[str, jax.Array]) -> Any:
                sq, total, loss = carry
                losses, grads = grad_fn(params, chunk)
                sq = sq + sum(jnp.sum(g.astype(jnp.float32) ** 2) for g in jax.tree.leaves(grads))
                total = jax.tree.map(lambda t, g: t + g.sum(0), total, grads)
                return (sq, total, loss + losses.sum()), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (jnp.zeros(()), zeros, jnp.zeros(()))
            (sq, total, loss), _ = jax.lax.scan(body, init, data)
            n = self.num_examples
            mean_sq = sq / n
            grad_sq = sum(jnp.sum((t / n) ** 2) for t in jax.tree.leaves(total))
            return {"noise_strength": mean_sq - grad_sq, "loss": loss / n}

        def run(replicas: ReplicaState, data: Mapping[str, jax.Array]) -> Any:
            return jax.lax.map(
                lambda pm: per_replica(pm[0], pm[1], data),
                (replicas.params, replicas.model_state),
            )

        return jax.jit(run)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        n = min(self.num_examples, int(ctx.train_data["x"].shape[0]))
        n -= n % self.chunk
        self.num_examples = n
        data = {
            k: v.reshape(n // self.chunk, self.chunk, *v.shape[1:])
            for k, v in _subset(ctx.train_data, n).items()
        }
        return self._fn(ctx.replicas, data)


class HessianTopEigenvalue:
    """Largest Hessian eigenvalue of L = mean_i l_i (first n train examples), per replica.

    Power iteration on Hessian-vector products (forward-over-reverse), `iterations` steps from
    a random start drawn from the hook's key; returns the Rayleigh quotient v^T H v.
    """

    def __init__(self, num_examples: int = 512, iterations: int = 20, every_epochs: int = 1):
        if num_examples < 1 or iterations < 1 or every_epochs < 1:
            raise ValueError(
                "diagnostics hessian: num_examples, iterations and every_epochs must be >= 1, "
                f"got {num_examples}, {iterations}, {every_epochs}"
            )
        self.num_examples = int(num_examples)
        self.iterations = int(iterations)
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Any, key: jax.Array) -> Any:
            def loss(p: Any) -> jax.Array:
                out, _ = program.apply(p, model_state, data, train=False)
                return jnp.mean(program.task.loss(out, data))

            def hvp(v: Any) -> Any:
                return jax.jvp(jax.grad(loss), (params,), (v,))[1]

            leaves, treedef = jax.tree.flatten(params)
            keys = jax.random.split(key, len(leaves))
            v = treedef.unflatten(
                [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
            )

            def normalize(t: Any) -> Any:
                norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(t)))
                return jax.tree.map(lambda x: x / (norm + 1e-30), t)

            v = jax.lax.fori_loop(0, self.iterations, lambda _, u: normalize(hvp(u)), normalize(v))
            hv = hvp(v)
            return sum(
                jnp.sum(a * b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hv), strict=True)
            )

        def run(replicas: ReplicaState, data: Any, key: jax.Array) -> Any:
            return {
                "top_eigenvalue": jax.lax.map(
                    lambda pm: per_replica(pm[0], pm[1], data, key),
                    (replicas.params, replicas.model_state),
                )
            }

        return jax.jit(run)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        return self._fn(ctx.replicas, _subset(ctx.train_data, self.num_examples), ctx.key)
