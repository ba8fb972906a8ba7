"""Per-epoch diagnostics hooks: measurements on the current parameters of every replica.

A hook is any object with ``every_epochs: int`` and ``__call__(ctx: HookContext) ->
Mapping[str, array [R] | scalar]``; its values go into that epoch's `metrics.jsonl` record
under ``<hook name>/<value name>``. Hooks are configured as a mapping under `diagnostics:`
(name -> `_target_` node with `every_epochs`), so experiments add them without touching the
engine. A hook runs on every ``every_epochs``-th epoch and on the last one, after
evaluation, outside the scanned training loop; it must not change the training state or draw
from the training randomness (it gets its own key).

A hook may also define ``check(num_examples: int, num_params: int, task: str) -> None``: the
engine calls it before the first compilation with the training examples the hooks are given,
the parameter count of one replica and the task name, and a ValueError becomes a ConfigError
naming ``diagnostics.<name>`` (a probe subset larger than the data, k above the parameter
count, a task the measurement's theory does not cover).

Default settings keep the hooks cheap (scripts/benchmark_diagnostics.py: cost per call
against one epoch of the 20 x 50 MLP on MNIST, batch 128, measured side by side; README):
the noise strength on 128 examples every epoch, the sharpness and the Lanczos top-k every 50
epochs, the optional exact-vs-decoupled spectrum every 100. Per-example gradients dominate
the noise hook's cost (XLA:CPU runs the vmapped per-example backward as many small matmuls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from repro.engine.lanczos import lanczos_top_eigenvalues
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
    # Resident evaluation sets (test, validation, train_eval) as the evaluator holds them:
    # padded batches, every entry [n_batches, eval_batch_size, ...] with a 0/1 "mask".
    eval_data: Mapping[str, Mapping[str, jax.Array]] = dataclasses.field(default_factory=dict)


class EpochHook(Protocol):
    every_epochs: int

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]: ...


def _check_counts(**counts: Any) -> None:
    """ValueError naming the first setting that is not an integer >= 1 (the engine prefixes
    the hook's config key, `diagnostics.<name>`)."""
    for name, value in counts.items():
        check_int_at_least(name, value, 1)


def _check_probe(num_examples: int, available: int) -> None:
    if num_examples > available:
        raise ValueError(
            f"num_examples must be <= the {available} training examples the hooks are given, "
            f"got {num_examples}"
        )


def _jit_over_replicas(per_replica: Callable[..., Any]) -> Callable[..., Any]:
    """jit((replicas, *args) -> per_replica(params, model_state, *args) of every replica,
    stacked): `lax.map` runs the replicas one after another, so a diagnostic holds one
    replica's intermediates at a time (and a `lax.cond` inside is a real branch)."""

    def run(replicas: ReplicaState, *args: Any) -> Any:
        return jax.lax.map(
            lambda pm: per_replica(pm[0], pm[1], *args), (replicas.params, replicas.model_state)
        )

    return jax.jit(run)


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

    N is the trace of the per-example gradient covariance Sigma = mean_i (g_i - g)(g_i - g)^T.
    n = min(num_examples, the train examples the hook is given; the engine refuses a larger
    num_examples); L = mean_i l_i over the same examples (``loss``), the quantity Mori et al.
    (2022) find proportional to N late in training, and ``noise_to_loss`` = N / L. With
    `batch_size` B set, also ``minibatch_covariance_trace``: the trace of the covariance of
    the mean gradient of B of the n examples drawn without replacement (as the engine's
    epochs draw them), N / B * (n - B) / (n - 1). With `requires_task` set (e.g. "mse": N ~ L
    is a mean-square-loss prediction) a run of another task is refused. Per-example gradients
    are summed in chunks of `chunk` examples (the last chunk padded with zero-weight examples)
    and replicas are processed one after another (`lax.map`), so memory stays at chunk x
    parameters.
    """

    def __init__(
        self,
        num_examples: int = 128,
        chunk: int = 128,
        every_epochs: int = 1,
        batch_size: int | None = None,
        requires_task: str | None = None,
    ) -> None:
        _check_counts(num_examples=num_examples, chunk=chunk, every_epochs=every_epochs)
        if batch_size is not None:
            check_int_at_least("batch_size", batch_size, 1)
            if batch_size > num_examples:
                raise ValueError(
                    f"batch_size must be <= num_examples={num_examples}, got {batch_size}"
                )
        self.num_examples = int(num_examples)
        self.chunk = int(chunk)
        self.every_epochs = int(every_epochs)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.requires_task = requires_task
        self._fn: Any = None

    def check(self, num_examples: int, num_params: int, task: str) -> None:
        _check_probe(self.num_examples, num_examples)
        if self.requires_task is not None and task != self.requires_task:
            raise ValueError(
                f"requires_task={self.requires_task!r} (the theory of this measurement needs "
                f"that loss), got task={task!r}"
            )

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
            strength, mean_loss = sq / n - grad_sq, loss / n
            values = {
                "noise_strength": strength,
                "loss": mean_loss,
                "noise_to_loss": strength / mean_loss,
            }
            if self.batch_size is not None:
                b = self.batch_size
                # finite-population factor of drawing b of n without replacement
                factor = jnp.maximum(n - b, 0.0) / jnp.maximum(n - 1, 1.0)
                values["minibatch_covariance_trace"] = strength / b * factor
            return values

        return _jit_over_replicas(per_replica)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        n = min(self.num_examples, int(ctx.train_data["x"].shape[0]))
        data, weights = _padded_chunks(ctx.train_data, n, min(self.chunk, n))
        return self._fn(ctx.replicas, data, weights)


def _mean_loss(program: ReplicaModel, model_state: Any, data: Mapping[str, jax.Array]) -> Any:
    """params -> L = mean_i l_i over `data` (evaluation mode)."""

    def loss(params: Any) -> jax.Array:
        out, _ = program.apply(params, model_state, data, train=False)
        return jnp.mean(program.task.loss(out, data))

    return loss


def _flat_hvp(loss: Any, params: Any) -> tuple[Any, jax.Array]:
    """(v -> H v on flat vectors, the flat parameters) for H the Hessian of `loss` at `params`
    (forward-over-reverse)."""
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda f: loss(unravel(f)))

    def hvp(v: jax.Array) -> jax.Array:
        return jax.jvp(grad, (flat,), (v.astype(flat.dtype),))[1]

    return hvp, flat


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

    def __init__(self, num_examples: int = 512, iterations: int = 20, every_epochs: int = 50):
        _check_counts(num_examples=num_examples, iterations=iterations, every_epochs=every_epochs)
        self.num_examples = int(num_examples)
        self.iterations = int(iterations)
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Any, key: jax.Array) -> Any:
            loss = _mean_loss(program, model_state, data)

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

        return _jit_over_replicas(lambda *a: {"top_eigenvalue": per_replica(*a)})

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        return self._fn(ctx.replicas, _subset(ctx.train_data, self.num_examples), ctx.key)


def _check_lanczos(k: int, iterations: int) -> None:
    if iterations < k:
        raise ValueError(f"iterations must be >= k={k}, got {iterations}")


def _check_k(k: int, num_params: int) -> None:
    if k > num_params:
        raise ValueError(f"k must be <= the {num_params} parameters of the model, got {k}")


def _hessian_top(
    program: ReplicaModel, params: Any, model_state: Any, data: Any, key: jax.Array, k: int, m: int
) -> tuple[jax.Array, jax.Array]:
    """(the k largest Hessian eigenvalues of L on `data` by m Lanczos steps, L)."""
    loss = _mean_loss(program, model_state, data)
    hvp, flat = _flat_hvp(loss, params)
    start_key, restart_key = jax.random.split(key)
    start = jax.random.normal(start_key, flat.shape, flat.dtype)
    return lanczos_top_eigenvalues(hvp, start, m, k, restart_key), loss(params)


class HessianTopEigenvalues:
    """The k largest (algebraic) Hessian eigenvalues of L = mean_i l_i on the first
    `num_examples` train examples, per replica, by `iterations` Lanczos steps with full
    reorthogonalisation (repro/engine/lanczos.py) on Hessian-vector products: ``eigenvalues``
    [R, k], descending. Exact once iterations >= the number of parameters; otherwise the top
    Ritz values converge from below, fast for well separated outliers (the Hessian of a
    network: a few outliers above a bulk), e.g. 30 steps for the top 5. Memory: iterations x
    parameters per replica (replicas one after another). Cost: `iterations` HVPs, each about
    two gradient evaluations on the probe set.
    """

    def __init__(
        self, num_examples: int = 512, k: int = 5, iterations: int = 30, every_epochs: int = 50
    ) -> None:
        _check_counts(num_examples=num_examples, k=k, iterations=iterations)
        _check_counts(every_epochs=every_epochs)
        _check_lanczos(int(k), int(iterations))
        self.num_examples = int(num_examples)
        self.k = int(k)
        self.iterations = int(iterations)
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def check(self, num_examples: int, num_params: int, task: str) -> None:
        _check_probe(self.num_examples, num_examples)
        _check_k(self.k, num_params)

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Any, key: jax.Array) -> Any:
            top = _hessian_top(program, params, model_state, data, key, self.k, self.iterations)
            return {"eigenvalues": top[0]}

        return _jit_over_replicas(per_replica)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        return self._fn(ctx.replicas, _subset(ctx.train_data, self.num_examples), ctx.key)


class NoiseCovarianceSpectrum:
    """The top-k spectrum of the exact SGD noise covariance against its decoupled
    approximation (Mori et al. 2022): ``exact`` = the k largest eigenvalues of the per-example
    gradient covariance Sigma = mean_i (g_i - g)(g_i - g)^T on the first n train examples, and
    ``decoupled`` = 2 L x the k largest eigenvalues of the Hessian H of L = mean_i l_i on the
    same examples (Lanczos, `iterations` steps), each [R, k], descending. A minibatch of B
    divides both by B. For l_i = r_i^2 / 2, Sigma ~ mean_i r_i^2 J_i J_i^T ~ 2 L H when the
    residuals decouple from the Jacobians.

    Sigma's nonzero eigenvalues are those of the n x n Gram matrix G_c G_c^T / n of the
    centred per-example gradients, so memory is n x parameters: a diagnostic for small nets.
    """

    def __init__(
        self,
        num_examples: int = 256,
        k: int = 10,
        iterations: int = 40,
        chunk: int = 32,
        every_epochs: int = 100,
    ) -> None:
        _check_counts(num_examples=num_examples, k=k, iterations=iterations, chunk=chunk)
        _check_counts(every_epochs=every_epochs)
        _check_lanczos(int(k), int(iterations))
        if k > num_examples:
            raise ValueError(f"k must be <= num_examples={num_examples}, got {k}")
        self.num_examples = int(num_examples)
        self.k = int(k)
        self.iterations = int(iterations)
        self.chunk = int(chunk)
        self.every_epochs = int(every_epochs)
        self._fn: Any = None

    def check(self, num_examples: int, num_params: int, task: str) -> None:
        _check_probe(self.num_examples, num_examples)
        _check_k(self.k, num_params)

    def _build(self, program: ReplicaModel) -> Any:
        def per_replica(params: Any, model_state: Any, data: Any, key: jax.Array) -> Any:
            def example_grad(example: Mapping[str, jax.Array]) -> jax.Array:
                batch = {k: v[None] for k, v in example.items()}
                grad = jax.grad(lambda p: _mean_loss(program, model_state, batch)(p))(params)
                return ravel_pytree(grad)[0].astype(jnp.float32)

            grads = jax.lax.map(example_grad, data, batch_size=self.chunk)  # [n, P]
            centred = grads - jnp.mean(grads, axis=0)
            n = grads.shape[0]
            exact = jnp.linalg.eigvalsh(centred @ centred.T / n)[::-1][: self.k]
            top, loss = _hessian_top(
                program, params, model_state, data, key, self.k, self.iterations
            )
            return {"exact": exact, "decoupled": 2.0 * loss * top}

        return _jit_over_replicas(per_replica)

    def __call__(self, ctx: HookContext) -> Mapping[str, Any]:
        if self._fn is None:
            self._fn = self._build(ctx.program)
        return self._fn(ctx.replicas, _subset(ctx.train_data, self.num_examples), ctx.key)


def check_hooks(
    hooks: Mapping[str, EpochHook], num_examples: int, num_params: int, task: str
) -> None:
    """Every hook's `check` (if it has one); a ValueError names ``diagnostics.<name>``."""
    from repro.errors import ConfigError

    for name, hook in hooks.items():
        check = getattr(hook, "check", None)
        if check is None:
            continue
        try:
            check(num_examples, num_params, task)
        except ValueError as error:
            raise ConfigError(f"diagnostics.{name}: {error}") from None
