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
from repro.models._checks import check_int_at_least


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


def _check_counts(**counts: Any) -> None:
    """ValueError naming the first setting that is not an integer >= 1 (the engine prefixes
    the hook's config key, `diagnostics.<name>`)."""
    for name, value in counts.items():
        check_int_at_least(name, value, 1)


def _subset(data: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
    return {k: v[:n] for k, v in data.items()}


def _padded_chunks(
    data: Mapping[str, jax.Array], n: int, chunk: int
) -> tuple[dict[str, jax.Array], jax.Array]:
    """The first n examples of `data` as [n_chunks, chunk, ...] and their weights (1 = real,
    0 = padding); the last chunk is padded with copies of the first examples, so that every
    padding example is one the model can evaluate (finite loss and gradient)."""
    num_chunks = -(-n // chunk)
    pad = num_chunks * chunk - n  # < chunk <= n
    chunks = {
        k: jnp.concatenate([v[:n], v[:pad]]).reshape(num_chunks, chunk, *v.shape[1:])
        for k, v in data.items()
    }
    weights = (jnp.arange(num_chunks * chunk) < n).astype(jnp.float32)
    return chunks, weights.reshape(num_chunks, chunk)


class GradientNoiseStrength:
    """SGD noise strength N = mean_i |grad l_i|^2 - |grad L|^2 on the first n train examples.

    n = min(num_examples, the train examples the hook is given); L = mean_i l_i over the same
    examples (also returned, as ``loss``), the quantity Mori et al. (2022) find proportional
    to N late in training. Per-example gradients are summed in chunks of `chunk` examples
    (the last chunk padded with zero-weight examples) and replicas are processed one after
    another (`lax.map`), so memory stays at chunk x parameters.
    """

    def __init__(self, num_examples: int = 256, chunk: int = 32, every_epochs: int = 1) -> None:
        _check_counts(num_examples=num_examples, chunk=chunk, every_epochs=every_epochs)
        self.num_examples = int(num_examples)
        self.chunk = int(chunk)
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Any, weights: jax.Array) -> Any:
            def example_loss(p: Any, example: Mapping[str, jax.Array]) -> jax.Array:
                batch = {k: v[None] for k, v in example.items()}
                out, _ = program.apply(p, model_state, batch, train=False)
                return program.task.loss(out, batch)[0]

            grad_fn = jax.vmap(jax.value_and_grad(example_loss), in_axes=(None, 0))

            def body(carry: Any, chunk: Any) -> Any:
                sq, total, loss = carry
                examples, w = chunk
                losses, grads = grad_fn(params, examples)
                # w_i in {0, 1}: w_i |g_i|^2 and w_i g_i drop the padding examples
                sq = sq + sum(
                    jnp.sum(w * jnp.sum(g.astype(jnp.float32) ** 2, axis=tuple(range(1, g.ndim))))
                    for g in jax.tree.leaves(grads)
                )
                total = jax.tree.map(lambda t, g: t + jnp.tensordot(w, g, axes=1), total, grads)
                return (sq, total, loss + jnp.sum(w * losses)), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (jnp.zeros(()), zeros, jnp.zeros(()))
            (sq, total, loss), _ = jax.lax.scan(body, init, (data, weights))
            n = jnp.sum(weights)
            grad_sq = sum(jnp.sum((t / n) ** 2) for t in jax.tree.leaves(total))
            return {"noise_strength": sq / n - grad_sq, "loss": loss / n}

        def run(replicas: ReplicaState, data: Any, weights: jax.Array) -> Any:
            return jax.lax.map(
                lambda pm: per_replica(pm[0], pm[1], data, weights),
                (replicas.params, replicas.model_state),
            )

        return jax.jit(run)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        n = min(self.num_examples, int(ctx.train_data["x"].shape[0]))
        data, weights = _padded_chunks(ctx.train_data, n, min(self.chunk, n))
        return self._fn(ctx.replicas, data, weights)


def _power_iteration(matvec: Any, start: Any, iterations: int) -> jax.Array:
    """Rayleigh quotient v^T A v after `iterations` steps v <- A v / |A v| from `start`: the
    eigenvalue of A largest in magnitude, up to a relative error ~ |lambda_2 / lambda_1|^(2k)."""

    def normalize(t: Any) -> Any:
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(t)))
        return jax.tree.map(lambda x: x / (norm + 1e-30), t)

    v = jax.lax.fori_loop(0, iterations, lambda _, u: normalize(matvec(u)), normalize(start))
    av = matvec(v)
    return sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(av), strict=True))


class HessianTopEigenvalue:
    """Largest (algebraic) Hessian eigenvalue lambda_max of L = mean_i l_i on the first n
    train examples, per replica (the sharpness; negative only if H is negative definite).

    Power iteration on Hessian-vector products (forward-over-reverse), `iterations` steps from
    a random start drawn from the hook's key, finds the eigenvalue largest in magnitude,
    lambda_dom. If lambda_dom < 0 (a direction of negative curvature dominates, as near a
    saddle), a second power iteration on H - lambda_dom I, whose eigenvalues are >= 0, finds
    lambda_max - lambda_dom. Each converges like |lambda_2 / lambda_1|^(2 iterations), from
    below: raise `iterations` when the top eigenvalues are close (least squares on
    x ~ N(0, I_3), 256 examples: ratio 0.963, 20 iterations 0.6% low, 300 within 1e-3).
    """

    def __init__(self, num_examples: int = 512, iterations: int = 20, every_epochs: int = 1):
        _check_counts(num_examples=num_examples, iterations=iterations, every_epochs=every_epochs)
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
            start = treedef.unflatten(
                [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
            )
            dominant = _power_iteration(hvp, start, self.iterations)

            def shifted() -> jax.Array:
                def matvec(v: Any) -> Any:
                    return jax.tree.map(lambda hv, x: hv - dominant * x, hvp(v), v)

                return dominant + _power_iteration(matvec, start, self.iterations)

            # lax.map runs replicas one by one, so this is a real branch, not both sides
            return jax.lax.cond(dominant >= 0, lambda: dominant, shifted)

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
