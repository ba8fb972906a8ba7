"""float32 ``ln``, ``sqrt``, ``sin`` and ``cos`` from integer ops, multiplies and adds.

They exist for the Gaussian generator (:mod:`repro.optim.normals`): XLA treats
sqrt/log/divide as "expensive" and refuses to fuse them into a consumer that reads each
value twice, which would split the generator into two kernels that each recompute the
Threefry block. Each function states its domain and its measured accuracy (tested in
``tests/optim/test_prng.py``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "cos_poly",
    "log_positive",
    "log_reduce",
    "log_reduced",
    "sin_poly",
    "sqrt_nonnegative",
    "to_float",
]

_F32 = jnp.float32


def sin_poly(y: jax.Array) -> jax.Array:
    """``sin(y)`` for ``|y| <= pi/2``: Taylor polynomial to ``y^11`` (error < 6e-8)."""
    y2 = y * y
    poly = _F32(-1.0 / 39916800.0)
    for coeff in (1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0):
        poly = poly * y2 + _F32(coeff)
    return y * poly


def cos_poly(y: jax.Array) -> jax.Array:
    """``cos(y)`` for ``|y| <= pi/2``: Taylor polynomial to ``y^12`` (error < 7e-9)."""
    y2 = y * y
    poly = _F32(1.0 / 479001600.0)
    for coeff in (-1.0 / 3628800.0, 1.0 / 40320.0, -1.0 / 720.0, 1.0 / 24.0, -0.5, 1.0):
        poly = poly * y2 + _F32(coeff)
    return poly


# ln(1 + f) = f * P(f) on [sqrt(1/2) - 1, sqrt(2) - 1]: Chebyshev fit, relative error < 3e-7.
_LOG1P_COEFFS = (
    0.9999999403953552,
    -0.5000036358833313,
    0.33335113525390625,
    -0.24970071017742157,
    0.19898565113544464,
    -0.17247013747692108,
    0.1623418927192688,
    -0.10134056955575943,
)
_SQRT_HALF_BITS = 0x3F3504F3  # float32 bits of sqrt(1/2)


def log_reduce(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(k, f)`` with ``x = 2^k (1 + f)`` and ``1 + f`` in ``[sqrt(1/2), sqrt(2))``, exactly.

    For normal, positive, finite float32 ``x``: integer range reduction as in musl's
    ``logf`` (``k`` int32; ``f = m - 1`` is exact by Sterbenz's lemma).
    """
    shifted = lax.bitcast_convert_type(x, jnp.int32) - _SQRT_HALF_BITS
    exponent = shifted >> 23  # arithmetic shift: floor division by 2^23
    mantissa = lax.bitcast_convert_type((shifted & 0x007FFFFF) + _SQRT_HALF_BITS, _F32)
    return exponent, mantissa - _F32(1.0)


def log_reduced(exponent: jax.Array, f: jax.Array) -> jax.Array:
    """``k ln 2 + ln(1 + f)`` for int32 ``k`` and ``f`` in ``[sqrt(1/2) - 1, sqrt(2) - 1]``.

    ``ln(1 + f) = f P(f)`` (Chebyshev fit, relative error < 3e-7 for every such ``f``,
    including ``|f|`` far below float32 epsilon, where a ``log`` of ``1 + f`` would round).
    """
    poly = _F32(_LOG1P_COEFFS[-1])
    for coeff in reversed(_LOG1P_COEFFS[:-1]):
        poly = poly * f + _F32(coeff)
    return f * poly + to_float(exponent) * _F32(math.log(2.0))


def log_positive(x: jax.Array) -> jax.Array:
    """``ln x`` for normal, positive, finite float32 ``x`` (relative error < 3e-7).

    ``x = 2^k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` (:func:`log_reduce`) and
    ``ln x = k ln 2 + ln m`` (:func:`log_reduced`).
    """
    return log_reduced(*log_reduce(x))


def sqrt_nonnegative(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for finite ``x >= 0`` (relative error < 2e-7; ``sqrt(0) = 0``).

    ``x * rsqrt(x)`` with the classic bit-level first guess and three Newton steps.
    """
    guess = lax.bitcast_convert_type(
        jnp.int32(0x5F3759DF) - (lax.bitcast_convert_type(x, jnp.int32) >> 1), _F32
    )
    half_x = _F32(0.5) * x
    for _ in range(3):
        guess = guess * (_F32(1.5) - half_x * guess * guess)
    return x * guess


def to_float(x: jax.Array) -> jax.Array:
    """``x`` converted to float32 (one instruction for int32)."""
    return lax.convert_element_type(x, _F32)
