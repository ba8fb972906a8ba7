r"""Keys and Gaussian noise for parameter trees.

Three things live here:

1. **Key normalisation** (:func:`as_key`). An ``int`` seed, a typed key
   (``jax.random.key``) or a legacy raw key (``jax.random.PRNGKey``, ``uint32[2]``) all
   become a typed Threefry key. optax 0.2.8 raises ``TypeError`` on the legacy form; here it
   is accepted because it is exactly the data of a Threefry key. Typed keys of another
   implementation (``rbg``, ``philox4x32``...) are folded into a Threefry key with the
   Threefry hash, so every generator below sees the same kind of key.

2. **Per-leaf keys from the leaf's path** (:func:`leaf_key_words`). optax gives leaf ``i`` the
   ``i``-th key of ``split(key, num_leaves)``, so adding or removing any parameter changes
   the noise of every other leaf. Here a leaf's key is the Threefry hash of the step key with
   a 64-bit hash (BLAKE2b) of the leaf's path (``['params']['Dense_0']['kernel']``): a leaf
   draws the same noise whatever else is in the tree.

3. **A fast Gaussian generator** (:func:`leaf_normal`, :func:`box_muller`). For the leaf
   with key :math:`k_\ell` (from 2.) and every block index :math:`i`,

   .. math::

      (a_i, b_i) = \mathrm{Threefry2x32}_{20}(k_\ell;\ (0, i)),\qquad
      (z_{2i}, z_{2i+1}) = \mathrm{BoxMuller}(a_i, b_i)

   gives elements :math:`2i` and :math:`2i+1` (row-major) of the leaf's standard normals
   (see :func:`box_muller` for the exact map). The block function is Random123's
   Threefry-2x32 with 20 rounds, bit-for-bit the hash behind ``jax.random`` (tested), so
   the bits have jax's statistical quality; only the way they become normals differs. It
   costs about a third of ``jax.random.normal`` on CPU because:

   * jax lowers Threefry on CPU as a rolled ``while`` loop (5 iterations of 4 rounds) that
     fuses with nothing, one small loop per leaf; here the 20 rounds are unrolled ``jnp``
     integer ops and every leaf's normals come from ONE vectorized kernel
     (``layout="chunked"``, :data:`LAYOUTS`);
   * each 64-bit Threefry block yields two normals (jax spends a block per normal), and the
     ``log``/``sqrt``/``sin``/``cos`` of Box-Muller are short polynomial/Newton sequences of
     multiply-adds (XLA's ``erf_inv`` costs about twice as much per normal);
   * XLA would re-run the generator inside every leaf's update loop, with the leaf's awkward
     shape; a ``cond`` XLA cannot fold makes it write the normals once instead.

   Quality: :math:`|z| \le \sqrt{64 \ln 2} = 6.66` (``jax.random.normal`` float32 stops at
   5.42); the elementary functions are accurate to a few 1e-7 relative. Tests check
   moments, a Kolmogorov-Smirnov test, tail frequencies, and independence across elements,
   the two normals of a block, leaves, steps and vmapped replicas
   (``tests/optim/test_prng.py``).

   Measured and rejected (``scripts/benchmark_optim.py``, XLA:CPU): ``rbg``/``unsafe_rbg``
   keys and ``lax.rng_bit_generator`` (Philox or Threefry) are *slower* than jax's Threefry
   (XLA expands RngBitGenerator into a scalar loop) and are not vmap-invariant (below);
   Philox written with ``lax.mulhi`` costs more per word than Threefry because the
   32x32->64 multiply is not a native vector op; ``erf_inv`` costs about twice the
   polynomial Box-Muller; Threefry with 13 rounds (Random123's documented minimum for
   2x32) would save about 20% but would no longer be jax's function.

   Everything is elementwise on ``uint32``/``float32`` with the key as an operand, so under
   ``jax.vmap`` over replicas with different keys each replica's noise is a function of
   its own key only (unlike ``lax.rng_bit_generator``/``rbg`` keys, whose batching rule
   draws every replica's bits from the first replica's key).
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "GENERATORS",
    "LAYOUTS",
    "as_key",
    "box_muller",
    "fold_in",
    "key_words",
    "leaf_key_words",
    "leaf_normal",
    "path_hash",
    "path_string",
    "split_key",
    "threefry2x32",
    "tree_normal_like",
]

GENERATORS = ("threefry_boxmuller", "jax", "optax")
"""Names accepted by ``generator=``:

* ``"threefry_boxmuller"`` (default): :func:`leaf_normal`, keys from leaf paths.
* ``"jax"``: ``jax.random.normal`` (erf_inv of a uniform) with the same per-path leaf keys;
  the reference sampler, slower on CPU.
* ``"optax"``: optax 0.2.8's stream exactly (positional leaf keys, ``jax.random.normal``),
  for reproducing optax runs; it lacks the per-path independence.
"""

_UINT32 = jnp.uint32
_THREEFRY_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_THREEFRY_PARITY = np.uint32(0x1BD11BDA)
_THREEFRY_IMPL = "threefry2x32"


# ----------------------------------------------------------------------------- threefry


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
    ks = (k0, k1, k0 ^ k1 ^ _THREEFRY_PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(rounds):
        x0 = x0 + x1
        x1 = _rotate_left(x1, _THREEFRY_ROTATIONS[i % 8])
        x1 = x0 ^ x1
        if i % 4 == 3:
            s = i // 4 + 1
            x0 = x0 + ks[s % 3]
            x1 = x1 + ks[(s + 1) % 3] + _UINT32(s)
    return x0, x1


# ----------------------------------------------------------------------------- keys


def _is_typed_key(key: Any) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def _fold_words_to_threefry(words: jax.Array) -> jax.Array:
    """Hash any number of uint32 key words into Threefry key data ``uint32[2]``."""
    words = jnp.asarray(words, _UINT32).reshape(-1)
    if words.shape[0] % 2:
        words = jnp.concatenate([words, jnp.zeros((1,), _UINT32)])
    k0, k1 = words[0], words[1]
    for j in range(2, words.shape[0], 2):
        k0, k1 = threefry2x32(k0, k1, words[j], words[j + 1])
    return jnp.stack([k0, k1])


_KEY_HELP = (
    "pass an int seed, a typed key from jax.random.key(seed), or a legacy "
    "jax.random.PRNGKey(seed) (uint32[2])"
)


def as_key(key: Any = None, seed: Any = None, *, default_seed: int = 0) -> jax.Array:
    """Normalise ``key``/``seed`` into a typed Threefry key (shape ``()``).

    Accepts an ``int`` (or integer array of shape ``()``, possibly traced) seed, a typed key
    of any implementation, or a legacy ``uint32[2]`` key (possibly traced). ``seed=`` is
    optax's deprecated spelling (``DeprecationWarning``); passing both raises ``ValueError``.
    With neither, optax warns and uses seed 0; so does this (``UserWarning``).
    """
    if seed is not None:
        warnings.warn('"seed" is deprecated, use "key"', DeprecationWarning, stacklevel=3)
        if key is not None:
            raise ValueError("only one of seed or key can be specified, got both")
        key = seed
    if key is None:
        warnings.warn(
            f"no key given, using seed {default_seed}; {_KEY_HELP}", UserWarning, stacklevel=3
        )
        key = default_seed
    if _is_typed_key(key):
        if key.shape != ():
            raise ValueError(f"key must be a single key, got a key array of shape {key.shape}")
        if str(jax.random.key_impl(key)) == _THREEFRY_IMPL:
            return key
        return jax.random.wrap_key_data(
            _fold_words_to_threefry(jax.random.key_data(key)), impl=_THREEFRY_IMPL
        )
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"key must be a PRNG key or an int seed, got {key!r}; {_KEY_HELP}")
    if isinstance(key, (int, np.integer)):
        return jax.random.key(key, impl=_THREEFRY_IMPL)
    if isinstance(key, (np.ndarray, jax.Array)):
        dtype = key.dtype
        if key.shape == () and jnp.issubdtype(dtype, jnp.integer):
            return jax.random.key(key, impl=_THREEFRY_IMPL)
        if key.shape == (2,) and dtype == np.uint32:
            return jax.random.wrap_key_data(key, impl=_THREEFRY_IMPL)
        raise TypeError(
            f"key must be a single PRNG key, got an array of dtype {dtype} and shape "
            f"{key.shape}; {_KEY_HELP}"
        )
    raise TypeError(f"key must be a PRNG key or an int seed, got {key!r}; {_KEY_HELP}")


def key_words(key: Any) -> tuple[jax.Array, jax.Array]:
    """The two ``uint32`` Threefry key words of any key :func:`as_key` accepts.

    Unlike :func:`as_key` it never warns and accepts no ``None``: it is meant for keys
    passed at every step (possibly traced, e.g. a per-replica key inside ``jax.vmap``).
    """
    if key is None:
        raise TypeError(f"key must be a PRNG key, got None; {_KEY_HELP}")
    data = jax.random.key_data(as_key(key))
    return data[..., 0], data[..., 1]


def split_key(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``jax.random.split(key)`` for a Threefry key, without jax's rolled CPU loop.

    Bit-for-bit equal to ``tuple(jax.random.split(key))`` (both values of
    ``jax_threefry_partitionable``; tested).
    """
    new, sub = _split_key_data(
        jax.random.key_data(key), bool(jax.config.jax_threefry_partitionable)
    )
    return (
        jax.random.wrap_key_data(new, impl=_THREEFRY_IMPL),
        jax.random.wrap_key_data(sub, impl=_THREEFRY_IMPL),
    )


def fold_in(key: jax.Array, data: Any) -> jax.Array:
    """``jax.random.fold_in(key, data)`` for a Threefry key, without jax's rolled CPU loop.

    Bit-for-bit equal to ``jax.random.fold_in`` for 32-bit ``data`` (tested): the new key is
    ``threefry2x32(key; (0, data))``. Useful for per-step keys inside a jitted train step
    (``fold_in(fold_in(seed_key, stream), step)``), where jax's version costs two small
    ``while`` loops per call on CPU.
    """
    return jax.random.wrap_key_data(
        _fold_in_data(jax.random.key_data(as_key(key)), jnp.asarray(data, _UINT32)),
        impl=_THREEFRY_IMPL,
    )


@jax.jit
def _fold_in_data(data: jax.Array, value: jax.Array) -> jax.Array:
    new0, new1 = threefry2x32(data[..., 0], data[..., 1], 0, value)
    return jnp.stack([new0, new1], -1)


# jit-wrapped so that eager callers run one compiled kernel, not ~100 dispatched ops;
# inside an outer jit it is simply inlined.
@functools.partial(jax.jit, static_argnums=1)
def _split_key_data(data: jax.Array, partitionable: bool) -> tuple[jax.Array, jax.Array]:
    k0, k1 = data[..., 0], data[..., 1]
    if partitionable:
        new0, new1 = threefry2x32(k0, k1, 0, 0)
        sub0, sub1 = threefry2x32(k0, k1, 0, 1)
        return jnp.stack([new0, new1], -1), jnp.stack([sub0, sub1], -1)
    y0_0, y1_0 = threefry2x32(k0, k1, 0, 2)
    y0_1, y1_1 = threefry2x32(k0, k1, 1, 3)
    return jnp.stack([y0_0, y0_1], -1), jnp.stack([y1_0, y1_1], -1)


# ----------------------------------------------------------------------------- paths


def path_string(path: Sequence[Any]) -> str:
    """A stable text form of a pytree path, e.g. ``['params']['Dense_0']['kernel']``.

    Written here rather than taken from ``jax.tree_util.keystr`` so that a change of jax's
    formatting cannot change anyone's noise.
    """
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(f"[{entry.key!r}]")
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(f"[{entry.idx}]")
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(f".{entry.name}")
        elif isinstance(entry, jax.tree_util.FlattenedIndexKey):
            parts.append(f"[<flat {entry.key}>]")
        else:
            parts.append(f"[{entry!s}]")
    return "".join(parts)


def path_hash(path: Sequence[Any]) -> tuple[int, int]:
    """64-bit BLAKE2b hash of :func:`path_string`, as two ``uint32`` words (hi, lo)."""
    digest = hashlib.blake2b(path_string(path).encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value >> 32, value & 0xFFFFFFFF


def leaf_key_words(key: jax.Array, paths: Sequence[Sequence[Any]]) -> tuple[jax.Array, jax.Array]:
    """Per-leaf Threefry key words ``(k0[L], k1[L])``: ``threefry(key; path_hash(path))``.

    Raises ``ValueError`` if two paths share a 64-bit hash (never seen; checked because
    two leaves with one key would draw identical noise).
    """
    hashes = [path_hash(p) for p in paths]
    if len(set(hashes)) != len(hashes):
        raise ValueError("two leaf paths have the same 64-bit hash; rename a parameter")
    data = jax.random.key_data(key)
    if not hashes:
        empty = jnp.zeros((0,), _UINT32)
        return empty, empty
    hi = np.array([h for h, _ in hashes], np.uint32)
    lo = np.array([lo for _, lo in hashes], np.uint32)
    k0 = data[..., 0][..., None]
    k1 = data[..., 1][..., None]
    return threefry2x32(k0, k1, hi, lo)


# ----------------------------------------------------------------------------- normals
#
# Everything below uses only integer ops, multiplies and adds: XLA treats sqrt/log/divide as
# "expensive" and refuses to fuse them into a consumer that reads each value twice, which
# would split the generator into two kernels that each recompute the Threefry block.

_F32 = jnp.float32


def _sin_poly(y: jax.Array) -> jax.Array:
    """``sin(y)`` for ``|y| <= pi/2``: Taylor polynomial to ``y^11`` (error < 6e-8)."""
    y2 = y * y
    poly = _F32(-1.0 / 39916800.0)
    for coeff in (1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0):
        poly = poly * y2 + _F32(coeff)
    return y * poly


def _cos_poly(y: jax.Array) -> jax.Array:
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


def _log_positive(x: jax.Array) -> jax.Array:
    """``ln x`` for normal, positive, finite float32 ``x`` (relative error < 3e-7).

    ``x = 2^k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` (integer range reduction, as in
    musl's ``logf``) and ``ln x = k ln 2 + ln m``.
    """
    shifted = lax.bitcast_convert_type(x, jnp.int32) - _SQRT_HALF_BITS
    exponent = shifted >> 23  # arithmetic shift: floor division by 2^23
    mantissa = lax.bitcast_convert_type((shifted & 0x007FFFFF) + _SQRT_HALF_BITS, _F32)
    f = mantissa - _F32(1.0)
    poly = _F32(_LOG1P_COEFFS[-1])
    for coeff in reversed(_LOG1P_COEFFS[:-1]):
        poly = poly * f + _F32(coeff)
    return f * poly + _to_float(exponent) * _F32(math.log(2.0))


def _sqrt_nonnegative(x: jax.Array) -> jax.Array:
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


def _to_float(x: jax.Array) -> jax.Array:
    return lax.convert_element_type(x, _F32)


def box_muller(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Two independent standard normals (``float32``) from two uniform ``uint32`` words.

    .. math::

       u = (\lfloor a/2 \rfloor + \tfrac12)\,2^{-31} \in (0, 1],\quad
       \phi = \pi(\lfloor b/2^8 \rfloor 2^{-24} - \tfrac12) \in [-\tfrac\pi2, \tfrac\pi2),
       \quad \sigma = (-1)^{a \bmod 2},

    .. math::

       z_0 = \sqrt{-2 \ln u}\,\sin\phi,\qquad z_1 = \sigma \sqrt{-2 \ln u}\,\cos\phi .

    :math:`(\sin\phi, \sigma\cos\phi)` is uniform on the circle, so this is exactly the
    Box-Muller transform. ``ln``, ``sqrt``, ``sin`` and ``cos`` are polynomial/Newton
    approximations accurate to a few 1e-7 relative; ``|z| <= sqrt(64 ln 2) = 6.66``.
    """
    # Shifting keeps the values below 2**31 so the signed conversion (one instruction) is exact.
    a31 = _to_float(lax.bitcast_convert_type(a >> _UINT32(1), jnp.int32))
    b24 = _to_float(lax.bitcast_convert_type(b >> _UINT32(8), jnp.int32))
    u = a31 * _F32(2.0**-31) + _F32(2.0**-32)
    phi = b24 * _F32(math.pi * 2.0**-24) - _F32(math.pi / 2)
    radius = _sqrt_nonnegative(_F32(-2.0) * _log_positive(u))
    sign = (a & _UINT32(1)) << _UINT32(31)
    cos = lax.bitcast_convert_type(lax.bitcast_convert_type(_cos_poly(phi), _UINT32) ^ sign, _F32)
    return radius * _sin_poly(phi), radius * cos


def _pairs_to_normals(a: jax.Array, b: jax.Array) -> jax.Array:
    """``[..., n]`` blocks -> ``[..., n, 2]`` normals, computed in ONE kernel.

    Writing both outputs through a ``select`` on a size-2 minor axis (not ``stack``, whose
    emitter branches per operand) lets LLVM unroll that axis and compute each Threefry
    block and each ``log``/``sqrt`` once for the two normals.
    """
    z0, z1 = box_muller(a, b)
    lane = lax.broadcasted_iota(jnp.int32, (*z0.shape, 2), z0.ndim)
    return jnp.where(lane == 0, z0[..., None], z1[..., None])


def leaf_normal(k0: jax.Array, k1: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normals of ``shape`` (``float32``) for one leaf with key words ``(k0, k1)``.

    Elements ``2i`` and ``2i + 1`` (row-major) are the two :func:`box_muller` outputs of
    Threefry block ``(0, i)``; leaves may have up to 2**32 elements.
    """
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) > 2**32:
        raise ValueError(f"a leaf must have at most 2**32 elements, got shape {shape}")
    return _leaf_normal_jit(k0, k1, shape)


@functools.partial(jax.jit, static_argnums=2)
def _leaf_normal_jit(k0: jax.Array, k1: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    size = math.prod(shape)
    blocks = -(-size // 2)
    a, b = threefry2x32(k0[..., None], k1[..., None], 0, lax.iota(_UINT32, blocks))
    flat = _pairs_to_normals(a, b).reshape(*a.shape[:-1], 2 * blocks)
    return flat[..., :size].reshape(*flat.shape[:-1], *shape)


LAYOUTS = ("chunked", "per_leaf")
"""How the ``threefry_boxmuller`` generator is computed (the numbers are the same):

* ``"chunked"`` (default): every leaf's normals in one kernel over a ``[chunks, 64, 2]``
  array (each leaf padded to whole chunks of 128 normals), then sliced per leaf. XLA:CPU
  vectorizes a loop only when its minor dimension is a multiple of the vector width, so
  leaf-shaped loops (``[784, 50]``) would run partly as scalar code; and only this form
  computes each Threefry block once for its two normals.
* ``"per_leaf"``: each leaf's normals computed inside the kernel that adds them, with no
  intermediate array. It suits leaves sharded across devices (each device computes only
  its shard; the chunked array is computed whole on every device) and accelerators.
"""

_CHUNK = 128  # normals per chunk: 64 Threefry blocks


@functools.lru_cache(maxsize=256)
def _chunk_layout(
    sizes: tuple[int, ...], hashes: tuple[tuple[int, int], ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Per-chunk path hash and first block index; each leaf's offset in the flat array."""
    num_chunks = [-(-size // _CHUNK) for size in sizes]
    chunk_hi = np.repeat(np.array([h for h, _ in hashes], np.uint32), num_chunks)
    chunk_lo = np.repeat(np.array([lo for _, lo in hashes], np.uint32), num_chunks)
    first_block = np.concatenate(
        [np.arange(n, dtype=np.uint32) * (_CHUNK // 2) for n in num_chunks]
        + [np.zeros(0, np.uint32)]
    )
    offsets = tuple(int(o) * _CHUNK for o in np.cumsum([0, *num_chunks])[:-1])
    return chunk_hi, chunk_lo, first_block, offsets


def _chunk_generator(first_block: np.ndarray) -> Any:
    """``(chunk_k0, chunk_k1) -> normals [..., chunks, 64, 2]``, materialized in one kernel.

    The kernel runs inside a ``cond`` whose (always true) predicate XLA cannot fold: XLA
    fuses elementwise producers into all their consumers (on CPU even through
    ``optimization_barrier``), which would re-run the generator inside every leaf's update
    loop with that leaf's shape; a ``cond``'s result is a buffer of its own.
    """

    def generate(ck0: jax.Array, ck1: jax.Array) -> jax.Array:
        counter = first_block[:, None] + lax.iota(_UINT32, _CHUNK // 2)[None, :]
        a, b = threefry2x32(ck0[..., None], ck1[..., None], 0, counter)
        return _pairs_to_normals(a, b)

    def skip(ck0: jax.Array, ck1: jax.Array) -> jax.Array:
        return jnp.zeros((*ck0.shape, _CHUNK // 2, 2), _F32)

    def materialized(ck0: jax.Array, ck1: jax.Array) -> jax.Array:
        # An optimization barrier hides the constant predicate from XLA's simplifier, so
        # the cond stays; being a constant it is neither batched under vmap (a batched
        # predicate turns the cond into a select) nor sharded (no cross-device collective).
        always = lax.optimization_barrier(jnp.bool_(True))
        return lax.cond(always, generate, skip, ck0, ck1)

    return materialized


def _chunked_normals(
    key: jax.Array, paths: Sequence[Sequence[Any]], shapes: Sequence[tuple[int, ...]]
) -> list[jax.Array]:
    sizes = tuple(math.prod(shape) for shape in shapes)
    for size, shape in zip(sizes, shapes, strict=True):
        if size > 2**32:
            raise ValueError(f"a leaf must have at most 2**32 elements, got shape {shape}")
    hashes = tuple(path_hash(p) for p in paths)
    if len(set(hashes)) != len(hashes):
        raise ValueError("two leaf paths have the same 64-bit hash; rename a parameter")
    if sum(sizes) == 0:
        return [jnp.zeros(shape, _F32) for shape in shapes]
    return _chunked_normals_jit(jax.random.key_data(key), tuple(map(tuple, shapes)), hashes)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _chunked_normals_jit(
    data: jax.Array, shapes: tuple[tuple[int, ...], ...], hashes: tuple[tuple[int, int], ...]
) -> list[jax.Array]:
    sizes = tuple(math.prod(shape) for shape in shapes)
    chunk_hi, chunk_lo, first_block, offsets = _chunk_layout(sizes, hashes)
    # Chunk c's key is its leaf's key: threefry(step key; 64-bit path hash).
    ck0, ck1 = threefry2x32(data[..., 0, None], data[..., 1, None], chunk_hi, chunk_lo)
    normals = _chunk_generator(first_block)(ck0, ck1)
    flat = normals.reshape(*normals.shape[:-3], -1)
    return [
        flat[..., offset : offset + size].reshape(*flat.shape[:-1], *shape)
        for offset, size, shape in zip(offsets, sizes, shapes, strict=True)
    ]


def tree_normal_like(
    key: jax.Array,
    tree: Any,
    *,
    generator: str = "threefry_boxmuller",
    layout: str = "chunked",
) -> Any:
    """A tree of standard normals with ``tree``'s structure and leaf shapes.

    ``key`` is a typed Threefry key (one step's key). The normals are ``float32`` for the
    ``threefry_boxmuller`` generator and for float32-or-narrower leaves otherwise; ``jax``
    and ``optax`` draw wider leaves (float64 under x64) in their own dtype. ``layout``
    (:data:`LAYOUTS`) only matters for ``threefry_boxmuller``.
    """
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {list(GENERATORS)}, got {generator!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [p for p, _ in leaves_with_path]
    leaves = [jnp.asarray(x) if not hasattr(x, "shape") else x for _, x in leaves_with_path]
    dtypes = [_draw_dtype(x.dtype) for x in leaves]
    if generator == "optax":
        keys = jax.random.split(key, len(leaves))
        noise = [
            jax.random.normal(k, x.shape, dt) for k, x, dt in zip(keys, leaves, dtypes, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, noise)
    if generator == "threefry_boxmuller" and layout == "chunked":
        noise = _chunked_normals(key, paths, [tuple(x.shape) for x in leaves])
        return jax.tree_util.tree_unflatten(treedef, noise)
    k0, k1 = leaf_key_words(key, paths)
    noise = []
    for i, x in enumerate(leaves):
        if generator == "jax":
            leaf_key = jax.random.wrap_key_data(
                jnp.stack([k0[..., i], k1[..., i]], -1), impl=_THREEFRY_IMPL
            )
            noise.append(jax.random.normal(leaf_key, x.shape, dtypes[i]))
        else:
            noise.append(leaf_normal(k0[..., i], k1[..., i], x.shape))
    return jax.tree_util.tree_unflatten(treedef, noise)


def _draw_dtype(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits > 32:
        return dtype
    return jnp.float32
