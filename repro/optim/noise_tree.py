"""Trees of standard normals shaped like a parameter tree: generators and layouts.

:func:`tree_normal_like` draws one step's noise for every leaf of a tree. With the default
``threefry_boxmuller`` generator a leaf's normals depend only on the step key, the leaf's
path and its shape (:func:`repro.optim.keys.leaf_key_words`,
:func:`repro.optim.normals.leaf_normal`); the layout (:data:`LAYOUTS`) only changes how they
are computed, never their values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from repro.optim.keys import distinct_path_hashes, leaf_key_words
from repro.optim.normals import check_leaf_size, leaf_normal, pairs_to_normals
from repro.optim.threefry import THREEFRY_IMPL, threefry2x32

__all__ = ["GENERATORS", "LAYOUTS", "resolve_layout", "tree_normal_like"]

GENERATORS = ("threefry_boxmuller", "jax", "optax")
"""Names accepted by ``generator=``:

* ``"threefry_boxmuller"`` (default): :func:`leaf_normal`, keys from leaf paths.
* ``"jax"``: ``jax.random.normal`` (erf_inv of a uniform) with the same per-path leaf keys;
  the reference sampler, slower on CPU.
* ``"optax"``: optax 0.2.8's stream exactly (positional leaf keys, ``jax.random.normal``),
  for reproducing optax runs; it lacks the per-path independence.
"""

_UINT32 = jnp.uint32
_F32 = jnp.float32


LAYOUTS = ("auto", "chunked", "per_leaf")
"""How the ``threefry_boxmuller`` generator is computed (the numbers are the same):

* ``"auto"`` (default): :func:`resolve_layout` of the backend, ``"chunked"`` on CPU and
  ``"per_leaf"`` on GPU/TPU.
* ``"chunked"``: every leaf's normals in one kernel over a ``[chunks, 64, 2]`` array (each
  leaf padded to whole chunks of 128 normals), then sliced per leaf. XLA:CPU vectorizes a
  loop only when its minor dimension is a multiple of the vector width, so leaf-shaped loops
  (``[784, 50]``) would run partly as scalar code; and only this form computes each
  Threefry block once for its two normals. The array is the whole noise tree, computed
  whole on every device under data parallelism (1.3 GB per step per device for 333M
  parameters).
* ``"per_leaf"``: each leaf's normals computed inside the kernel that adds them, with no
  intermediate array. It suits leaves sharded across devices (each device computes only
  its shard) and accelerators.
"""


def resolve_layout(layout: str) -> str:
    """``"chunked"`` or ``"per_leaf"``: ``layout`` itself, or for ``"auto"`` the backend's.

    ``jax.default_backend()`` ``"cpu"`` -> ``"chunked"`` (the fast form for XLA:CPU); any
    other (GPU, TPU) -> ``"per_leaf"`` (no whole-tree noise array on each device).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if layout != "auto":
        return layout
    return "chunked" if jax.default_backend() == "cpu" else "per_leaf"


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
        return pairs_to_normals(a, b)

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
    shapes = tuple(check_leaf_size(shape) for shape in shapes)
    hashes = distinct_path_hashes(paths)
    if sum(math.prod(shape) for shape in shapes) == 0:
        return [jnp.zeros(shape, _F32) for shape in shapes]
    return _chunked_normals_jit(jax.random.key_data(key), shapes, hashes)


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
    layout: str = "auto",
) -> Any:
    """A tree of standard normals with ``tree``'s structure and leaf shapes.

    ``key`` is a typed Threefry key (one step's key). The normals are ``float32`` for the
    ``threefry_boxmuller`` generator and for float32-or-narrower leaves otherwise; ``jax``
    and ``optax`` draw wider leaves (float64 under x64) in their own dtype. ``layout``
    (:data:`LAYOUTS`) only matters for ``threefry_boxmuller``.
    """
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {list(GENERATORS)}, got {generator!r}")
    layout = resolve_layout(layout)
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
                jnp.stack([k0[..., i], k1[..., i]], -1), impl=THREEFRY_IMPL
            )
            noise.append(jax.random.normal(leaf_key, x.shape, dtypes[i]))
        else:
            noise.append(leaf_normal(k0[..., i], k1[..., i], x.shape))
    return jax.tree_util.tree_unflatten(treedef, noise)


def _draw_dtype(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits > 32:
        return dtype
    return jnp.float32
