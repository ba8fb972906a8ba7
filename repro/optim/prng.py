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

3. **A fast Gaussian generator** (:func:`leaf_normal`). Per leaf and step,

   .. math::

      (a_i, b_i) = \mathrm{Threefry2x32}_{20}(k_\ell;\ (0, i)),\quad
      u_i = (\lfloor a_i / 2 \rfloor + \tfrac12)\,2^{-31},\quad
      s_i = \lfloor b_i / 2^8 \rfloor\,2^{-24} - \tfrac12,

   .. math::

      z_i = \sqrt{-2 \ln u_i}\ \sin(\pi s_i)\qquad\text{(Box--Muller)}

   for element ``i`` (row-major) of a leaf with key :math:`k_\ell`. The block function is
   Random123's Threefry-2x32 with 20 rounds, bit-for-bit the hash behind
   ``jax.random`` (tested), so the bits have jax's statistical quality; only the way
   they are turned into normals differs. Why it is faster than ``jax.random.normal`` on CPU:

   * jax lowers Threefry on CPU as a rolled ``while`` loop (5 iterations of 4 rounds) that
     cannot fuse with anything; here the 20 rounds are unrolled ``jnp`` integer ops that
     XLA fuses, with the Box-Muller transform and the caller's ``g + sigma * z``, into the
     one loop that already writes the update -- no extra kernels, no extra memory traffic;
   * Box-Muller with a polynomial sine needs one ``log`` and one ``sqrt`` per normal,
     about half the work of XLA's ``erf_inv``;
   * both 32-bit words of a block are used (jax derives one 32-bit word per block).

   Quality: :math:`u \in (2^{-32}, 1]` so :math:`|z| \le \sqrt{64 \ln 2} = 6.66`
   (``jax.random.normal`` float32 caps at about 5.4); the sine polynomial is accurate to
   6e-8. Tests check moments, a Kolmogorov-Smirnov test, tail frequencies, and
   independence across elements, leaves, steps and vmapped replicas
   (``tests/optim/test_prng.py``).

   Everything is elementwise on ``uint32``/``float32`` with the key as an operand, so under
   ``jax.vmap`` over replicas with different keys each replica's noise is a function of
   its own key only (unlike ``lax.rng_bit_generator``/``rbg`` keys, whose batching rule
   draws every replica's bits from the first replica's key).
"""

from __future__ import annotations

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
    "as_key",
    "key_words",
    "leaf_key_words",
    "leaf_normal",
    "normal_from_bits",
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
    k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Random123 Threefry-2x32 with 20 rounds, as unrolled elementwise ``uint32`` ops.

    Same function as jax's ``threefry2x32_p`` (whose CPU lowering is a rolled loop that XLA
    cannot fuse). All four arguments broadcast against each other.
    """
    k0, k1, x0, x1 = (jnp.asarray(v, _UINT32) for v in (k0, k1, x0, x1))
    ks = (k0, k1, k0 ^ k1 ^ _THREEFRY_PARITY)
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(20):
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
        if jax.random.key_impl(key) == jax.random.key_impl(jax.random.key(0, impl="threefry2x32")):
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
    data = jax.random.key_data(key)
    k0, k1 = data[..., 0], data[..., 1]
    if jax.config.jax_threefry_partitionable:
        new0, new1 = threefry2x32(k0, k1, 0, 0)
        sub0, sub1 = threefry2x32(k0, k1, 0, 1)
        new, sub = jnp.stack([new0, new1], -1), jnp.stack([sub0, sub1], -1)
    else:
        y0_0, y1_0 = threefry2x32(k0, k1, 0, 2)
        y0_1, y1_1 = threefry2x32(k0, k1, 1, 3)
        new, sub = jnp.stack([y0_0, y0_1], -1), jnp.stack([y1_0, y1_1], -1)
    return (
        jax.random.wrap_key_data(new, impl=_THREEFRY_IMPL),
        jax.random.wrap_key_data(sub, impl=_THREEFRY_IMPL),
    )


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


def _sin_half_pi_range(y: jax.Array) -> jax.Array:
    """``sin(y)`` for ``|y| <= pi/2``: Taylor polynomial to ``y^11`` (error < 6e-8)."""
    y2 = y * y
    poly = jnp.float32(-1.0 / 39916800.0)
    for coeff in (1.0 / 362880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0, 1.0):
        poly = poly * y2 + jnp.float32(coeff)
    return y * poly


def _to_float(x: jax.Array) -> jax.Array:
    return lax.convert_element_type(x, jnp.float32)


def normal_from_bits(a: jax.Array, b: jax.Array) -> jax.Array:
    r"""Standard normal ``float32`` from two independent uniform ``uint32`` words.

    Box-Muller with one output: :math:`z = \sqrt{-2\ln u}\,\sin(\pi s)`, with
    :math:`u = (\lfloor a/2\rfloor + \frac12) 2^{-31} \in (0, 1]` and
    :math:`s = \lfloor b/2^8\rfloor 2^{-24} - \frac12 \in [-\frac12, \frac12)`.
    :math:`\sin(\pi s)` for uniform ``s`` has the law of :math:`\cos\Theta`,
    :math:`\Theta \sim U[0, 2\pi)`, so ``z`` is exactly Box-Muller's first output.
    """
    # Shifting keeps the values below 2**31 so the signed conversion (one instruction) is exact.
    a31 = _to_float(lax.bitcast_convert_type(a >> _UINT32(1), jnp.int32))
    b24 = _to_float(lax.bitcast_convert_type(b >> _UINT32(8), jnp.int32))
    u = (a31 + jnp.float32(0.5)) * jnp.float32(2.0**-31)
    s = b24 * jnp.float32(2.0**-24) - jnp.float32(0.5)
    radius = jnp.sqrt(jnp.float32(-2.0) * jnp.log(u))
    return radius * _sin_half_pi_range(jnp.float32(math.pi) * s)


def leaf_normal(k0: jax.Array, k1: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normals of ``shape`` (``float32``) for one leaf with key words ``(k0, k1)``.

    Element ``i`` (row-major) uses Threefry block ``(0, i)``; leaves up to 2**32 elements.
    """
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"a leaf must have fewer than 2**32 elements, got shape {tuple(shape)}")
    counter = lax.iota(_UINT32, size).reshape(tuple(shape))
    a, b = threefry2x32(k0, k1, 0, counter)
    return normal_from_bits(a, b)


def tree_normal_like(key: jax.Array, tree: Any, *, generator: str = "threefry_boxmuller") -> Any:
    """A tree of standard normals with ``tree``'s structure and leaf shapes.

    ``key`` is a typed Threefry key (one step's key). The normals are ``float32`` for the
    ``threefry_boxmuller`` generator and for float32-or-narrower leaves otherwise; ``jax``
    and ``optax`` draw wider leaves (float64 under x64) in their own dtype.
    """
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [p for p, _ in leaves_with_path]
    leaves = [jnp.asarray(x) for _, x in leaves_with_path]
    dtypes = [_draw_dtype(x.dtype) for x in leaves]
    if generator == "optax":
        keys = jax.random.split(key, len(leaves))
        noise = [
            jax.random.normal(k, x.shape, dt) for k, x, dt in zip(keys, leaves, dtypes, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, noise)
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {list(GENERATORS)}, got {generator!r}")
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
