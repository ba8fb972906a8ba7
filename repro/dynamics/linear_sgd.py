"""Minibatch SGD on least squares, many replicas in one compiled program (Mori et al. 2022).

Model f(x) = theta . x (no bias), loss L(theta) = (1 / 2N) sum_i (theta . x_i - y_i)^2 on a
fixed training set; one step draws B indices uniformly with replacement (i.i.d. minibatches)
and moves theta <- theta - lr (1/B) sum_b x_b (theta . x_b - y_b). L is exactly quadratic,
L(theta) = L* + (theta - theta*)^T H (theta - theta*) / 2 with H = X^T X / N, so the loss of
every step is known without a pass over the data.

Replicas differ in learning rate, batch size and key. Batch sizes share one shape: every step
draws B_max indices and the first B of them carry weight 1/B (the others 0), so a grid over
(lr, B, run) is one vmapped program. Indices for a block of steps are drawn at once, and the
steps of a block run in a `lax.scan`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Problem:
    """A least-squares problem and its exact minimum (float64 numpy, from the float32 data)."""

    x: np.ndarray  # [N, d] float32
    y: np.ndarray  # [N] float32
    theta_star: np.ndarray  # [d]
    hessian: np.ndarray  # [d, d] = X^T X / N
    loss_star: float

    @classmethod
    def from_data(cls, x: np.ndarray, y: np.ndarray) -> Problem:
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        theta, *_ = np.linalg.lstsq(x64, y64, rcond=None)
        residual = x64 @ theta - y64
        return cls(
            x=np.asarray(x, np.float32),
            y=np.asarray(y, np.float32).reshape(-1),
            theta_star=theta,
            hessian=x64.T @ x64 / x64.shape[0],
            loss_star=float(0.5 * np.mean(residual**2)),
        )

    @property
    def typical_eigenvalue(self) -> float:
        """h*: the mean Hessian eigenvalue trace(H) / d. Every direction of least squares on
        x ~ N(0, I_d) is a large-eigenvalue one (n = d, all eigenvalues ~ 1, the paper's
        h* = 1); the largest eigenvalue of the sample H would overstate h* (1.06 for d = 10,
        N = 1e4) and shift the predicted escape slope by ~0.5."""
        return float(np.trace(self.hessian) / self.hessian.shape[0])

    def relative_excess(self, theta: np.ndarray) -> np.ndarray:
        """u = (L(theta) - L*) / L* for theta [..., d], exactly (float64)."""
        delta = np.asarray(theta, np.float64) - self.theta_star
        return 0.5 * np.einsum("...i,ij,...j->...", delta, self.hessian, delta) / self.loss_star


def batch_weights(batch_sizes: np.ndarray, max_batch: int) -> jnp.ndarray:
    """[R, B_max]: 1/B on the first B slots of each replica, 0 after."""
    slots = np.arange(max_batch)[None, :]
    sizes = np.asarray(batch_sizes)[:, None]
    return jnp.asarray((slots < sizes) / sizes, jnp.float32)


def _block(x: jax.Array, y: jax.Array, lr: jax.Array, weights: jax.Array, steps: int) -> Any:
    """theta, key -> theta after `steps` SGD steps (one replica), and the steps' thetas."""

    def run(theta: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        indices = jax.random.randint(key, (steps, weights.shape[0]), 0, x.shape[0])

        def step(theta: jax.Array, idx: jax.Array) -> tuple[jax.Array, jax.Array]:
            xb, yb = x[idx], y[idx]
            grad = (weights * (xb @ theta - yb)) @ xb
            theta = theta - lr * grad
            return theta, theta

        return jax.lax.scan(step, theta, indices)

    return run


def stationary_samples(
    problem: Problem,
    learning_rates: np.ndarray,
    batch_sizes: np.ndarray,
    keys: jax.Array,
    *,
    burn_in: int,
    sample_every: int,
    num_samples: int,
) -> np.ndarray:
    """theta every `sample_every` steps after `burn_in` steps from theta*, per replica:
    [R, num_samples, d]. Replica r runs at learning_rates[r], batch_sizes[r] with keys[r]."""
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    weights = batch_weights(batch_sizes, int(np.max(batch_sizes)))
    burn_blocks = -(-int(burn_in) // sample_every)

    def replica(lr: jax.Array, w: jax.Array, key: jax.Array) -> jax.Array:
        block = _block(x, y, lr, w, sample_every)
        burn_key, sample_key = jax.random.split(key)

        def advance(theta: jax.Array, block_key: jax.Array) -> tuple[jax.Array, jax.Array]:
            theta, _ = block(theta, block_key)
            return theta, theta

        theta0 = jnp.asarray(problem.theta_star, jnp.float32)
        theta, _ = jax.lax.scan(advance, theta0, jax.random.split(burn_key, burn_blocks))
        _, samples = jax.lax.scan(advance, theta, jax.random.split(sample_key, num_samples))
        return samples

    run = jax.jit(jax.vmap(replica))
    lrs = jnp.asarray(learning_rates, jnp.float32)
    return np.asarray(run(lrs, weights, keys), np.float64)


def first_passage_steps(
    problem: Problem,
    learning_rate: float,
    batch_size: int,
    keys: jax.Array,
    thresholds: np.ndarray,
    *,
    max_steps: int,
    block_steps: int = 1000,
) -> np.ndarray:
    """First step k >= 1 at which L(theta_k) > c L*, for each c of `thresholds`, per replica
    started at theta*: int64 [R, C]; -1 where L stayed <= c L* for `max_steps` steps (censored).
    Replicas stop stepping once every threshold is passed (or at max_steps)."""
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    weights = jnp.full((batch_size,), 1.0 / batch_size, jnp.float32)
    theta_star = jnp.asarray(problem.theta_star, jnp.float32)
    hessian = jnp.asarray(problem.hessian, jnp.float32)
    # excess (L - L*) / L* above which L > c L*
    levels = jnp.asarray(np.asarray(thresholds, np.float64) - 1.0, jnp.float32)
    blocks = -(-int(max_steps) // block_steps)
    block = _block(x, y, jnp.float32(learning_rate), weights, block_steps)

    def replica(key: jax.Array) -> jax.Array:
        def excess(thetas: jax.Array) -> jax.Array:
            delta = thetas - theta_star
            return 0.5 * jnp.einsum("ki,ij,kj->k", delta, hessian, delta) / problem.loss_star

        def body(carry: tuple) -> tuple:
            b, theta, first = carry
            theta, thetas = block(theta, jax.random.fold_in(key, b))
            above = excess(thetas)[:, None] > levels[None, :]  # [steps, C]
            hit = jnp.any(above, axis=0)
            step = b * block_steps + jnp.argmax(above, axis=0) + 1
            first = jnp.where((first < 0) & hit, step, first)
            return b + 1, theta, first

        def pending(carry: tuple) -> jax.Array:
            b, _, first = carry
            return (b < blocks) & jnp.any(first < 0)

        init = (jnp.int32(0), theta_star, jnp.full(levels.shape, -1, jnp.int32))
        return jax.lax.while_loop(pending, body, init)[2]

    first = np.asarray(jax.jit(jax.vmap(replica))(keys), np.int64)
    return np.where(first > max_steps, -1, first)
