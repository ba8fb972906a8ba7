r"""Threefry keys: normalising any key or seed, loop-free split/fold_in, and per-leaf keys.

* :func:`as_key`: an ``int`` seed, a typed key (``jax.random.key``) or a legacy raw key
  (``jax.random.PRNGKey``, ``uint32[2]``) all become a typed Threefry key. optax 0.2.8 raises
  ``TypeError`` on the legacy form; here it is accepted because it is exactly the data of a
  Threefry key. Typed keys of another implementation (``rbg``, ``philox4x32``...) are folded
  into a Threefry key with the Threefry hash, so every generator sees the same kind of key.
* :func:`split_key`, :func:`fold_in`: ``jax.random.split`` / ``fold_in`` bit for bit, as
  straight-line ops (jax's CPU lowering is a rolled loop per call).
* :func:`leaf_key_words`: optax gives leaf ``i`` the ``i``-th key of
  ``split(key, num_leaves)``, so adding or removing any parameter changes the noise of every
  other leaf. Here a leaf's key is the Threefry hash of the step key with a 64-bit hash
  (BLAKE2b) of the leaf's path (``['params']['Dense_0']['kernel']``): a leaf draws the same
  noise whatever else is in the tree.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.optim.threefry import THREEFRY_IMPL, threefry2x32

__all__ = [
    "as_key",
    "distinct_path_hashes",
    "fold_in",
    "key_words",
    "leaf_key_words",
    "path_hash",
    "path_string",
    "split_key",
]

_UINT32 = jnp.uint32


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
        if str(jax.random.key_impl(key)) == THREEFRY_IMPL:
            return key
        return jax.random.wrap_key_data(
            _fold_words_to_threefry(jax.random.key_data(key)), impl=THREEFRY_IMPL
        )
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"key must be a PRNG key or an int seed, got {key!r}; {_KEY_HELP}")
    if isinstance(key, (int, np.integer)):
        return jax.random.key(key, impl=THREEFRY_IMPL)
    if isinstance(key, (np.ndarray, jax.Array)):
        dtype = key.dtype
        if key.shape == () and jnp.issubdtype(dtype, jnp.integer):
            return jax.random.key(key, impl=THREEFRY_IMPL)
        if key.shape == (2,) and dtype == np.uint32:
            return jax.random.wrap_key_data(key, impl=THREEFRY_IMPL)
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
        jax.random.wrap_key_data(new, impl=THREEFRY_IMPL),
        jax.random.wrap_key_data(sub, impl=THREEFRY_IMPL),
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
        impl=THREEFRY_IMPL,
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


def distinct_path_hashes(paths: Sequence[Sequence[Any]]) -> tuple[tuple[int, int], ...]:
    """:func:`path_hash` of every path; ``ValueError`` if two paths share a 64-bit hash.

    Never seen; checked because two leaves with one key would draw identical noise.
    """
    hashes = tuple(path_hash(p) for p in paths)
    if len(set(hashes)) != len(hashes):
        raise ValueError("two leaf paths have the same 64-bit hash; rename a parameter")
    return hashes


def leaf_key_words(key: jax.Array, paths: Sequence[Sequence[Any]]) -> tuple[jax.Array, jax.Array]:
    """Per-leaf Threefry key words ``(k0[L], k1[L])``: ``threefry(key; path_hash(path))``.

    Raises ``ValueError`` if two paths share a 64-bit hash (:func:`distinct_path_hashes`).
    """
    hashes = distinct_path_hashes(paths)
    data = jax.random.key_data(key)
    if not hashes:
        empty = jnp.zeros((0,), _UINT32)
        return empty, empty
    hi = np.array([h for h, _ in hashes], np.uint32)
    lo = np.array([lo for _, lo in hashes], np.uint32)
    k0 = data[..., 0][..., None]
    k1 = data[..., 1][..., None]
    return threefry2x32(k0, k1, hi, lo)
