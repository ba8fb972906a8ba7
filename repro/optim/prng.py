"""Keys and Gaussian noise for parameter trees: one import for the pieces below.

* :mod:`repro.optim.threefry`: Random123's Threefry-2x32, the hash behind ``jax.random``, as
  fusible integer ops.
* :mod:`repro.optim.keys`: any key or seed as a typed Threefry key, loop-free ``split`` and
  ``fold_in``, and per-leaf keys from each leaf's path.
* :mod:`repro.optim.elementary`: float32 ``ln``/``sqrt``/``sin``/``cos`` from multiply-adds.
* :mod:`repro.optim.normals`: Box-Muller normals from Threefry blocks (:func:`box_muller`,
  :func:`leaf_normal`) and their stated accuracy.
* :mod:`repro.optim.noise_tree`: :func:`tree_normal_like`, its generators and layouts.

Tests of all of them: ``tests/optim/test_prng.py``.
"""

from repro.optim.keys import (
    as_key,
    distinct_path_hashes,
    fold_in,
    key_words,
    leaf_key_words,
    path_hash,
    path_string,
    split_key,
)
from repro.optim.noise_tree import GENERATORS, LAYOUTS, tree_normal_like
from repro.optim.normals import box_muller, leaf_normal
from repro.optim.threefry import threefry2x32

__all__ = [
    "GENERATORS",
    "LAYOUTS",
    "as_key",
    "box_muller",
    "distinct_path_hashes",
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
