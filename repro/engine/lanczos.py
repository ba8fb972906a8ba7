"""Lanczos with full reorthogonalisation: the largest (algebraic) eigenvalues of a symmetric
operator given only as a matrix-vector product on flat vectors (e.g. a Hessian-vector product).

After m steps from a unit start v_1, the orthonormal Krylov basis V = [v_1..v_m] and the
tridiagonal T = V^T A V (alpha on the diagonal, beta beside it) are built; the Ritz values
(eigenvalues of T) approximate the extreme eigenvalues of A, the largest ones from below, and
are exact once the Krylov space is A-invariant (at the latest after m = dim A steps). Each new
vector is orthogonalised against every stored one, twice ("twice is enough"), so the basis
stays orthogonal in float32 and no spurious copies of converged eigenvalues appear. On a
breakdown (the new residual vanishes: an invariant subspace was found, e.g. A has fewer
distinct eigenvalues than m) the iteration restarts from a random vector orthogonal to V with
beta = 0, so T stays block tridiagonal and its eigenvalues stay eigenvalues of A.

Cost: m matvecs and O(m^2 P) flops, memory m x P for P = dim A.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# A residual this small relative to the largest |alpha|, |beta| seen is a breakdown.
BREAKDOWN_TOLERANCE = 1e-5


def _orthogonalize(w: jax.Array, basis: jax.Array) -> jax.Array:
    """w minus its projection on the rows of `basis` (rows not yet filled are zero), twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _unit(w: jax.Array) -> jax.Array:
    return w / jnp.maximum(jnp.linalg.norm(w), 1e-30)


def lanczos_tridiagonal(
    matvec: Callable[[jax.Array], jax.Array], start: jax.Array, iterations: int, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(alpha [m], beta [m - 1]) of T after m = min(iterations, dim) steps from `start`.

    `key` draws the restart vectors used after a breakdown.
    """
    size = start.shape[0]
    steps = min(int(iterations), size)
    dtype = start.dtype

    def body(i: jax.Array, carry: tuple) -> tuple:
        basis, alpha, beta, v, scale = carry
        basis = basis.at[i].set(v)
        av = matvec(v)
        a = jnp.vdot(v, av)
        w = _orthogonalize(av, basis)
        b = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        broke = b <= BREAKDOWN_TOLERANCE * scale
        fresh = jax.random.normal(jax.random.fold_in(key, i), (size,), dtype)
        v_next = jnp.where(broke, _unit(_orthogonalize(fresh, basis)), w / jnp.maximum(b, 1e-30))
        alpha = alpha.at[i].set(a)
        beta = beta.at[i].set(jnp.where(broke, 0.0, b))
        return basis, alpha, beta, v_next, scale

    init = (
        jnp.zeros((steps, size), dtype),
        jnp.zeros(steps, dtype),
        jnp.zeros(steps, dtype),
        _unit(start),
        jnp.zeros((), dtype),
    )
    _, alpha, beta, _, _ = jax.lax.fori_loop(0, steps, body, init)
    return alpha, beta[: steps - 1]


def lanczos_top_eigenvalues(
    matvec: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    iterations: int,
    k: int,
    key: jax.Array,
) -> jax.Array:
    """The k largest (algebraic, not in magnitude) Ritz values, in descending order [k].

    Requires k <= min(iterations, dim); the caller checks (hooks: a ConfigError naming the key).
    """
    alpha, beta = lanczos_tridiagonal(matvec, start, iterations, key)
    tridiagonal = jnp.diag(alpha) + jnp.diag(beta, 1) + jnp.diag(beta, -1)
    return jnp.linalg.eigvalsh(tridiagonal)[::-1][:k]
