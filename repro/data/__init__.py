"""Data sources for the reproductions.

Small data sets are loaded whole as an ``ArrayDataset`` (numpy; the engine puts them on the
device) by plain functions usable as Hydra ``_target_``s, all sharing ``preprocess``:

- ``load_npz(path, ...)``: local arrays in the layout of ``../shared/data/mnist.npz``;
- ``load_tfds(name, data_dir, ...)``: TFDS catalogue sets (fails fast if not prepared);
- ``load_sklearn_digits(...)``: scikit-learn's bundled 8x8 digits;
- ``make_synthetic_classification``, ``make_linear_regression``, ``make_teacher_data``.

Large TFDS sets stream with ``TFDSStream`` (deterministic, resumable numpy batches);
``ArrayStream`` serves in-memory arrays through the same streaming protocol
(``repro.data.streaming``), which the engine trains from with host-fed chunks.
TensorFlow / TFDS are imported only by the TFDS functions.
"""

from repro.data.dataset import ArrayDataset, RawArrays
from repro.data.preprocess import (
    LABEL_TRANSFORMS,
    ORDERS,
    SCALINGS,
    SUBSETS,
    canonical_permutation,
    preprocess,
    scale_features,
    transform_labels,
)
from repro.data.sources import (
    DatasetNotPreparedError,
    load_arrays,
    load_npz,
    load_sklearn_digits,
    load_tfds,
    network_reachable,
    resolve_data_path,
    tfds_builder,
)
from repro.data.streaming import (
    ArrayStream,
    BatchStream,
    TFDSStream,
    epoch_order,
    epoch_seed,
    is_stream,
)
from repro.data.synthetic import (
    make_linear_regression,
    make_synthetic_classification,
    make_teacher_data,
)

__all__ = [
    "LABEL_TRANSFORMS",
    "ORDERS",
    "SCALINGS",
    "SUBSETS",
    "ArrayDataset",
    "ArrayStream",
    "BatchStream",
    "DatasetNotPreparedError",
    "RawArrays",
    "TFDSStream",
    "canonical_permutation",
    "epoch_order",
    "epoch_seed",
    "is_stream",
    "load_arrays",
    "load_npz",
    "load_sklearn_digits",
    "load_tfds",
    "make_linear_regression",
    "make_synthetic_classification",
    "make_teacher_data",
    "network_reachable",
    "preprocess",
    "resolve_data_path",
    "scale_features",
    "tfds_builder",
    "transform_labels",
]
