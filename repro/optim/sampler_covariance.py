r"""Trace of the minibatch-gradient covariance of an example-weight sampler, on a real model.

A sampler of :mod:`repro.optim.example_weights` turns ``k = sampler.num_examples(B)``
examples drawn uniformly without replacement from the ``n`` training examples into the
gradient estimate

.. math:: g = \nabla_\theta\, \frac1k \sum_{i=1}^k w_i\, \ell_i(\theta),
          \qquad \mathbb E[g] = \mu = \nabla_\theta \frac1n \sum_{j=1}^n \ell_j(\theta),

at a fixed parameter point :math:`\theta`. This module measures
:math:`\mathrm{tr}\,\mathrm{Cov}(g)` two ways:

* :func:`monte_carlo_trace`: ``num_draws`` independent draws (indices and weights),
  :math:`t_d = \lVert g_d - \mu\rVert^2` with the exact full-data mean :math:`\mu`, so
  :math:`\hat T = \frac1D \sum_d t_d` is unbiased and its standard error is
  :math:`\mathrm{sd}(t) / \sqrt D`; the mean of the draws is kept too, to check
  :math:`\mathbb E[g] = \mu`;
* :func:`population_trace`: :math:`\mathrm{tr}\,\Sigma` of the ``n`` per-example gradients
  (:math:`\Sigma = \frac1n \sum_j (\nabla\ell_j - \mu)(\nabla\ell_j - \mu)^\top`), from which
  the closed form of plain SGD without replacement at batch ``b`` is
  :math:`\mathrm{tr}\,\Sigma\,\frac{n - b}{b\,(n - 1)}` (:func:`sgd_trace`).

Every gradient is one ordinary backward pass of the weighted mean loss; draws are vmapped in
chunks of ``chunk`` so memory stays ``chunk`` gradients.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from repro.validation import check_int

__all__ = [
    "PerExampleLoss",
    "TraceEstimate",
    "full_gradient",
    "monte_carlo_trace",
    "population_trace",
    "sgd_trace",
]

# (params, x [k, ...], y [k, ...]) -> per-example losses float32[k]
PerExampleLoss = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TraceEstimate:
    """Monte-Carlo :math:`\\mathrm{tr}\\,\\mathrm{Cov}(g)` with its standard error.

    ``mean_error``: :math:`\\lVert \\bar g - \\mu\\rVert^2 \\cdot D / \\hat T`, which is
    about 1 (chi-square over its dimension, in units of :math:`\\hat T / D`) for an unbiased
    sampler and grows with ``D`` for a biased one.
    """

    trace: float
    se: float
    num_draws: int
    num_examples: int
    mean_error: float

    def ratio_to(self, other: TraceEstimate) -> tuple[float, float]:
        """``(self / other, its standard error)`` (delta method, independent estimates)."""
        ratio = self.trace / other.trace
        relative = math.hypot(self.se / self.trace, other.se / other.trace)
        return ratio, ratio * relative

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _flat_gradient(loss: PerExampleLoss, params: Any, x: Any, y: Any, w: Any) -> jax.Array:
    grads = jax.grad(lambda p: jnp.mean(w * loss(p, x, y)))(params)
    return ravel_pytree(grads)[0]


def full_gradient(
    loss: PerExampleLoss, params: Any, x: Any, y: Any, chunk: int = 1024
) -> jax.Array:
    r""":math:`\mu = \nabla \frac1n \sum_j \ell_j`, flattened, accumulated over chunks."""
    n = int(x.shape[0])
    grad = jax.jit(lambda p, xs, ys: _flat_gradient(loss, p, xs, ys, 1.0) * xs.shape[0])
    total = sum(grad(params, x[i : i + chunk], y[i : i + chunk]) for i in range(0, n, chunk))
    return total / n


def population_trace(loss: PerExampleLoss, params: Any, x: Any, y: Any, chunk: int = 256) -> float:
    r""":math:`\mathrm{tr}\,\Sigma = \frac1n\sum_j \lVert\nabla\ell_j\rVert^2 - \lVert\mu
    \rVert^2` from per-example gradients (vmapped over chunks of ``chunk`` examples)."""
    n = int(x.shape[0])

    def squared_norms(p: Any, xs: jax.Array, ys: jax.Array) -> jax.Array:
        one = lambda xi, yi: _flat_gradient(loss, p, xi[None], yi[None], 1.0)
        return jnp.sum(jax.vmap(one)(xs, ys) ** 2, axis=1)

    fn = jax.jit(squared_norms)
    second = sum(
        float(jnp.sum(fn(params, x[i : i + chunk], y[i : i + chunk]))) for i in range(0, n, chunk)
    )
    mean = full_gradient(loss, params, x, y)
    return second / n - float(jnp.sum(mean**2))


def sgd_trace(population: float, batch_size: int, num_data: int) -> float:
    r"""Plain SGD at batch ``b`` without replacement: :math:`\mathrm{tr}\Sigma\,(n-b)/(b(n-1))`."""
    b, n = int(batch_size), int(num_data)
    return population * (n - b) / (b * (n - 1))


def monte_carlo_trace(
    loss: PerExampleLoss,
    params: Any,
    x: Any,
    y: Any,
    sampler: Any,
    batch_size: int,
    key: jax.Array,
    num_draws: int,
    *,
    chunk: int = 25,
    mean: jax.Array | None = None,
) -> TraceEstimate:
    """Monte-Carlo trace of ``Cov(g)`` for ``sampler`` at ``batch_size`` (module docstring).

    Draw ``d`` uses ``fold_in(key, d)``: its indices (``k`` of ``n`` without replacement) and
    its weights from two independent subkeys. ``mean``: the full-data gradient if already
    computed (:func:`full_gradient`).
    """
    num_draws = check_int("num_draws", num_draws, low=2)
    chunk = check_int("chunk", chunk, low=1)
    n = int(x.shape[0])
    k = int(sampler.num_examples(int(batch_size)))
    if k > n:
        raise ValueError(f"the sampler needs {k} examples per draw, more than the {n} given")
    mu = full_gradient(loss, params, x, y) if mean is None else mean

    def one_draw(draw_key: jax.Array) -> jax.Array:
        index_key, weight_key = jax.random.split(draw_key)
        index = jax.random.choice(index_key, n, (k,), replace=False)
        return _flat_gradient(loss, params, x[index], y[index], sampler(weight_key, k))

    @jax.jit
    def draws(keys: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        g = jax.vmap(one_draw)(keys)
        return jnp.sum((g - mu) ** 2, axis=1), jnp.sum(g * valid[:, None], axis=0)

    squared, total = [], jnp.zeros_like(mu)
    for start in range(0, num_draws, chunk):
        # The last chunk is padded to the compiled shape (repeating a draw); padding is masked.
        ids = np.minimum(np.arange(start, start + chunk), num_draws - 1)
        valid = np.arange(start, start + chunk) < num_draws
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(ids))
        part, part_sum = draws(keys, jnp.asarray(valid, jnp.float32))
        squared.append(np.asarray(part, np.float64)[valid])
        total = total + part_sum
    t = np.concatenate(squared)
    trace = float(t.mean())
    mean_error = float(jnp.sum((total / num_draws - mu) ** 2)) * num_draws / trace
    return TraceEstimate(
        trace=trace,
        se=float(t.std(ddof=1) / math.sqrt(t.size)),
        num_draws=int(t.size),
        num_examples=k,
        mean_error=mean_error,
    )
