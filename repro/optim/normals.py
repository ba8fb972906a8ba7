r"""Standard normals from Threefry bits: Box-Muller on two ``uint32`` words.

For a leaf with key words :math:`k_\ell` (:func:`repro.optim.keys.leaf_key_words`) and every
block index :math:`i`,

.. math::

   (a_i, b_i) = \mathrm{Threefry2x32}_{20}(k_\ell;\ (0, i)),\qquad
   (z_{2i}, z_{2i+1}) = \mathrm{BoxMuller}(a_i, b_i)

gives elements :math:`2i` and :math:`2i+1` (row-major) of the leaf's standard normals (see
:func:`box_muller` for the exact map). The block function is the hash behind ``jax.random``
(:mod:`repro.optim.threefry`), so the bits have jax's statistical quality; the counter layout
and the map from bits to normals differ from ``jax.random.normal`` (which spends one 32-bit
word per normal through ``erf_inv``), so the numbers differ. It costs about a third of
``jax.random.normal`` on CPU because:

* the 20 rounds are unrolled integer ops that fuse with their consumer (jax's CPU lowering is
  a rolled loop per leaf), and every leaf's normals can come from one vectorized kernel
  (``layout="chunked"``, :data:`repro.optim.noise_tree.LAYOUTS`);
* each 64-bit Threefry block yields two normals (jax spends a block per normal), and the
  ``log``/``sqrt``/``sin``/``cos`` of Box-Muller are short polynomial/Newton sequences of
  multiply-adds (:mod:`repro.optim.elementary`; XLA's ``erf_inv`` costs about twice as much
  per normal).

Measured and rejected (``scripts/benchmark_optim.py``, XLA:CPU): ``rbg``/``unsafe_rbg`` keys
and ``lax.rng_bit_generator`` (Philox or Threefry) are *slower* than jax's Threefry (XLA
expands RngBitGenerator into a scalar loop) and are not vmap-invariant (below); Philox written
with ``lax.mulhi`` costs more per word than Threefry because the 32x32->64 multiply is not a
native vector op; ``erf_inv`` costs about twice the polynomial Box-Muller; Threefry with 13
rounds (Random123's documented minimum for 2x32) would save about 20% but would no longer be
jax's function.

Everything is elementwise on ``uint32``/``float32`` with the key as an operand, so under
``jax.vmap`` over replicas with different keys each replica's noise is a function of its own
key only (unlike ``lax.rng_bit_generator``/``rbg`` keys, whose batching rule draws every
replica's bits from the first replica's key).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from repro.optim.elementary import (
    cos_poly,
    log_reduce,
    log_reduced,
    sin_poly,
    sqrt_nonnegative,
    to_float,
)
from repro.optim.threefry import threefry2x32

__all__ = [
    "MAX_LEAF_SIZE",
    "box_muller",
    "check_leaf_size",
    "leaf_normal",
    "pairs_to_normals",
]

MAX_LEAF_SIZE = 2**32
"""Most elements a leaf may have: its normals use 32-bit block counters (two per block)."""

_UINT32 = jnp.uint32
_F32 = jnp.float32


def _log_uniform(a31: jax.Array) -> jax.Array:
    r"""``ln u`` for :math:`u = (a_{31} + \tfrac12)\,2^{-31}`, int32 ``a31`` in ``[0, 2^31)``.

    float32 ``u`` keeps 24 significant bits, so near ``u = 1`` it would keep only the top
    bits of ``1 - u`` (spacing ``2^-24``): radii ``sqrt(-2 ln u)`` near 0 would be quantized
    (absolute error up to 2.4e-4). There ``1 - u`` is instead computed from the exact
    integer ``2^31 - 1 - a31`` and ``ln u = ln(1 - (1 - u))`` from the ``log1p`` polynomial.
    """
    u = to_float(a31) * _F32(2.0**-31) + _F32(2.0**-32)
    exponent, f = log_reduce(u)
    one_minus_u = to_float(jnp.int32(2**31 - 1) - a31) * _F32(2.0**-31) + _F32(2.0**-32)
    near_one = one_minus_u <= _F32(1.0 - math.sqrt(0.5))
    exponent = jnp.where(near_one, jnp.int32(0), exponent)
    return log_reduced(exponent, jnp.where(near_one, -one_minus_u, f))


def box_muller(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Two independent standard normals (``float32``) from two uniform ``uint32`` words.

    .. math::

       u = (\lfloor a/2 \rfloor + \tfrac12)\,2^{-31} \in (0, 1),\quad
       \phi = \pi(\lfloor b/2^8 \rfloor 2^{-24} - \tfrac12) \in [-\tfrac\pi2, \tfrac\pi2),
       \quad \sigma = (-1)^{a \bmod 2},

    .. math::

       z_0 = \sqrt{-2 \ln u}\,\sin\phi,\qquad z_1 = \sigma \sqrt{-2 \ln u}\,\cos\phi .

    :math:`(\sin\phi, \sigma\cos\phi)` is uniform on the circle, so this is exactly the
    Box-Muller transform; ``|z| <= sqrt(64 ln 2) = 6.66``. ``ln``, ``sqrt``, ``sin`` and
    ``cos`` are polynomial/Newton approximations (:mod:`repro.optim.elementary`), and
    ``ln u`` near ``u = 1`` is taken from the exact ``1 - u`` (:func:`_log_uniform`).
    **Accuracy** against this formula in float64 on the same bits: ``|z - z_exact| <=
    8e-7 max(1, |z_exact|)`` (measured worst case 6.3e-7, at ``|z| = 3.95``, over 3.4e7
    samples; 1e-8 over every ``a`` with ``u`` within ``2^-11`` of 1, i.e. radii below 0.032;
    ``tests/optim/test_prng.py``).
    """
    # Shifting keeps the values below 2**31 so the signed conversion (one instruction) is exact.
    a31 = lax.bitcast_convert_type(a >> _UINT32(1), jnp.int32)
    b24 = to_float(lax.bitcast_convert_type(b >> _UINT32(8), jnp.int32))
    phi = b24 * _F32(math.pi * 2.0**-24) - _F32(math.pi / 2)
    radius = sqrt_nonnegative(_F32(-2.0) * _log_uniform(a31))
    sign = (a & _UINT32(1)) << _UINT32(31)
    cos = lax.bitcast_convert_type(lax.bitcast_convert_type(cos_poly(phi), _UINT32) ^ sign, _F32)
    return radius * sin_poly(phi), radius * cos


def pairs_to_normals(a: jax.Array, b: jax.Array) -> jax.Array:
    """``[..., n]`` blocks -> ``[..., n, 2]`` normals, computed in ONE kernel.

    Writing both outputs through a ``select`` on a size-2 minor axis (not ``stack``, whose
    emitter branches per operand) lets LLVM unroll that axis and compute each Threefry
    block and each ``log``/``sqrt`` once for the two normals.
    """
    z0, z1 = box_muller(a, b)
    lane = lax.broadcasted_iota(jnp.int32, (*z0.shape, 2), z0.ndim)
    return jnp.where(lane == 0, z0[..., None], z1[..., None])


def check_leaf_size(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple; ``ValueError`` if it has more than :data:`MAX_LEAF_SIZE` elements."""
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) > MAX_LEAF_SIZE:
        raise ValueError(f"a leaf must have at most 2**32 elements, got shape {shape}")
    return shape


def leaf_normal(k0: jax.Array, k1: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normals of ``shape`` (``float32``) for one leaf with key words ``(k0, k1)``.

    Elements ``2i`` and ``2i + 1`` (row-major) are the two :func:`box_muller` outputs of
    Threefry block ``(0, i)``; leaves may have up to 2**32 elements.
    """
    shape = check_leaf_size(shape)
    return _leaf_normal_jit(k0, k1, shape)


@functools.partial(jax.jit, static_argnums=2)
def _leaf_normal_jit(k0: jax.Array, k1: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    size = math.prod(shape)
    blocks = -(-size // 2)
    a, b = threefry2x32(k0[..., None], k1[..., None], 0, lax.iota(_UINT32, blocks))
    flat = pairs_to_normals(a, b).reshape(*a.shape[:-1], 2 * blocks)
    return flat[..., :size].reshape(*flat.shape[:-1], *shape)
