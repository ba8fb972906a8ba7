"""Random123's Threefry-2x32 block function as unrolled ``jnp`` integer ops.

With 20 rounds it is bit-for-bit the hash behind ``jax.random`` (``threefry2x32_p``; tested).
jax lowers that primitive on CPU as a rolled ``while`` loop (5 iterations of 4 rounds) that
fuses with nothing; written as straight-line ``uint32`` ops it fuses into its consumers, so
the key derivation and the Gaussian generator of :mod:`repro.optim.normals` run as one kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["THREEFRY_IMPL", "threefry2x32"]

THREEFRY_IMPL = "threefry2x32"
"""The ``impl`` name of jax's Threefry keys (``jax.random.key(seed, impl=THREEFRY_IMPL)``)."""

_UINT32 = jnp.uint32
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, distance: int) -> jax.Array:
    return (x << _UINT32(distance)) | (x >> _UINT32(32 - distance))


def threefry2x32(
    k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array, rounds: int = 20
) -> tuple[jax.Array, jax.Array]:
    """Random123 Threefry-2x32 (key ``(k0, k1)``, counter ``(x0, x1)``) as unrolled ops.

    With the default 20 rounds this is the function of jax's ``threefry2x32_p`` (whose CPU
    lowering is a rolled loop that XLA cannot fuse); the key is injected every 4 rounds as
    in Random123. All four arguments broadcast against each other.
    """
    k0, k1, x0, x1 = (jnp.asarray(v, _UINT32) for v in (k0, k1, x0, x1))
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(rounds):
        x0 = x0 + x1
        x1 = _rotate_left(x1, _ROTATIONS[i % 8])
        x1 = x0 ^ x1
        if i % 4 == 3:
            s = i // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + _UINT32(s)
    return x0, x1
