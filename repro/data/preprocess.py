"""One preprocessing path for every source (npz, TFDS, scikit-learn, synthetic, streams).

``preprocess(raw, ...)`` applies, in this order:

1. order: ``"canonical"`` sorts each split by a content hash of (example bytes, label), so the
   same examples give the same arrays whichever source delivered them and in which order
   (TFDS stores MNIST shuffled; the npz keeps the original order). ``"source"`` keeps the
   source's order (e.g. "the first 10^4 MNIST images" from the npz).
2. validation: ``n_validation`` training examples are held out as a validation split (a
   uniform draw without replacement with ``np.random.default_rng([VALIDATION_STREAM,
   subset_seed])``, kept in step-1 order, or the last ``n_validation`` with ``subset="first"``):
   they are never trained on, and hyperparameters can be chosen on them instead of the test
   set. Standardization statistics come from the remaining training examples only.
   subset: ``n_train`` / ``n_test`` examples, ``"random"`` (uniform without replacement with
   ``np.random.default_rng(subset_seed)``, kept in step-1 order) or ``"first"``; ``n_train``
   is drawn from the training examples left after the validation split.
3. scaling (float32): ``"unit"``: ``x / pixel_max`` in [0, 1] (pixel data only);
   ``"standardize"``: ``(u - mean) / std`` with ``u`` the unit-scaled pixels (raw values for
   non-image features) and mean/std over the (subset) training split, per channel for images,
   per feature otherwise (a zero std counts as 1); ``"none"``: values as float32.
4. layout: images get a channel axis (``[N, H, W] -> [N, H, W, 1]``, NHWC); ``flatten=True``
   gives ``[N, H * W * C]``.
5. labels: ``"none"``: int32 class ids (or float32 one-hot ``[N, C]`` with ``one_hot=True``);
   ``"parity"``: y = +1 for even class ids, -1 for odd ones, float32 ``[N, 1]``, a regression
   target (Mori et al. 2022's even/odd MNIST with MSE). Regression targets become ``[N, k]``.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from repro.data.dataset import ArrayDataset, RawArrays

SCALINGS: tuple[str, ...] = ("unit", "standardize", "none")
LABEL_TRANSFORMS: tuple[str, ...] = ("none", "parity")
ORDERS: tuple[str, ...] = ("canonical", "source")
SUBSETS: tuple[str, ...] = ("random", "first")
# Entropy word of the validation draw, so it never repeats the n_train subset's draw.
VALIDATION_STREAM = 1


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the key and the allowed values unless ``value`` is allowed."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_count(name: str, value: Any, available: int, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an int in ``[1, available]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not (1 <= value <= available)
    ):
        raise ValueError(f"{name} must be an integer in [1, {available}] ({what}), got {value!r}")


def canonical_permutation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices sorting the examples by a 128-bit BLAKE2b hash of (example bytes, label).

    Depends only on the example contents (pixel bytes in their dtype, the label as int64 for
    integer labels), not on the order or array layout ([N, 28, 28] vs [N, 28, 28, 1]).
    Identical examples tie; a stable sort keeps them in source order (they are equal anyway).
    """
    x = np.ascontiguousarray(x)
    labels = y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float64)
    labels = np.ascontiguousarray(labels.reshape(len(labels), -1))
    rows = x.reshape(len(x), -1)
    digests = b"".join(
        hashlib.blake2b(row.tobytes() + label.tobytes(), digest_size=16).digest()
        for row, label in zip(rows, labels, strict=True)
    )
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 2)
    return np.lexsort((words[:, 1], words[:, 0]))


def _subset_indices(
    n_available: int, n: int | None, subset: str, seed: int, key: str, what: str
) -> np.ndarray | None:
    if n is None:
        return None
    check_count(key, n, n_available, what)
    if subset == "first":
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=int(n), replace=False))


def scale_features(
    x: np.ndarray,
    *,
    scaling: str,
    pixel_max: float | None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """Scaled float32 features (``mean``/``std`` required for "standardize"; see module doc).

    float32 arithmetic throughout (IEEE-rounded, so identical inputs give identical outputs):
    ``u = float32(x) / float32(pixel_max)``, then ``(u - float32(mean)) / float32(std)``.
    """
    check_choice("scaling", scaling, SCALINGS)
    u = x.astype(np.float32)
    if scaling == "none":
        return u
    if scaling == "unit" and pixel_max is None:
        raise ValueError(
            "scaling='unit' needs pixel data with a known maximum; "
            "use scaling='standardize' or 'none' for these features"
        )
    if pixel_max is not None:
        u /= np.float32(pixel_max)
    if scaling == "standardize":
        if mean is None or std is None:
            raise ValueError("scaling='standardize' needs mean and std")
        u -= np.asarray(mean, dtype=np.float32)
        u /= np.asarray(std, dtype=np.float32)
    return u


def standardization_stats(
    x_train: np.ndarray, *, pixel_max: float | None, image: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of the training features in unit scale (float64): per channel for NHWC
    images (x must have its channel axis), per feature otherwise; a zero std becomes 1.

    uint8 images use exact per-channel histograms (no float copy of the whole set).
    """
    if image and x_train.dtype == np.uint8:
        channels = x_train.reshape(-1, x_train.shape[-1])
        values = np.arange(256, dtype=np.float64) / float(pixel_max or 1.0)
        mean, var = [], []
        for c in range(channels.shape[1]):
            counts = np.bincount(channels[:, c], minlength=256).astype(np.float64)
            p = counts / counts.sum()
            m = float(p @ values)
            mean.append(m)
            var.append(float(p @ (values - m) ** 2))
        mean_arr, std_arr = np.asarray(mean), np.sqrt(np.asarray(var))
    else:
        u = x_train.astype(np.float64)
        if pixel_max is not None:
            u = u / float(pixel_max)
        axes = tuple(range(u.ndim - 1)) if image else (0,)
        mean_arr, std_arr = u.mean(axis=axes), u.std(axis=axes)
    return mean_arr, np.where(std_arr > 0, std_arr, 1.0)


def transform_labels(
    y: np.ndarray, *, num_classes: int, label_transform: str = "none", one_hot: bool = False
) -> tuple[np.ndarray, int]:
    """(labels, num_classes after the transform); see the module doc."""
    check_choice("label_transform", label_transform, LABEL_TRANSFORMS)
    if num_classes == 0:
        if label_transform != "none" or one_hot:
            raise ValueError(
                "label_transform must be 'none' and one_hot False for regression targets "
                f"(num_classes=0), got label_transform={label_transform!r}, one_hot={one_hot!r}"
            )
        y = np.asarray(y, dtype=np.float32)
        return (y.reshape(len(y), -1), 0)
    if label_transform == "parity":
        if one_hot:
            raise ValueError("one_hot must be False with label_transform='parity' (+-1 targets)")
        return (np.where(y % 2 == 0, 1.0, -1.0).astype(np.float32).reshape(-1, 1), 0)
    ids = y.astype(np.int32)
    if one_hot:
        return (np.eye(num_classes, dtype=np.float32)[ids], num_classes)
    return (ids, num_classes)


def _check_options(
    raw: RawArrays,
    *,
    scaling: str,
    flatten: bool,
    subset_seed: int,
    subset: str,
    order: str,
    label_transform: str,
    one_hot: bool,
) -> None:
    """Raise ``ValueError`` for a bad option before any heavy work (sorting, scaling)."""
    check_choice("scaling", scaling, SCALINGS)
    check_choice("subset", subset, SUBSETS)
    check_choice("order", order, ORDERS)
    check_choice("label_transform", label_transform, LABEL_TRANSFORMS)
    if not isinstance(flatten, bool):
        raise ValueError(f"flatten must be a bool, got {flatten!r}")
    if not isinstance(one_hot, bool):
        raise ValueError(f"one_hot must be a bool, got {one_hot!r}")
    if isinstance(subset_seed, bool) or not isinstance(subset_seed, int | np.integer):
        raise ValueError(f"subset_seed must be an integer, got {subset_seed!r}")
    if scaling == "unit" and not raw.is_image:
        raise ValueError(
            f"scaling must be 'standardize' or 'none' for the non-image data {raw.name!r}, "
            "got 'unit'"
        )
    transform_labels(
        raw.y_train[:1],
        num_classes=raw.num_classes,
        label_transform=label_transform,
        one_hot=one_hot,
    )


def _order_and_subset(
    raw: RawArrays,
    *,
    n_train: int | None,
    n_test: int | None,
    n_validation: int | None,
    subset_seed: int,
    subset: str,
    order: str,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Steps 1-2 (and the image channel axis): ``{"train": (x, y), "test": (x, y)}``, and
    ``"validation"`` when ``n_validation`` is set."""
    splits = {}
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        if order == "canonical":
            perm = canonical_permutation(x, y)
            x, y = x[perm], y[perm]
        if raw.is_image and x.ndim == 3:
            x = x[..., None]
        splits[split] = (x, y)
    if n_validation is not None:
        splits["train"], splits["validation"] = _hold_out(
            *splits["train"], n_validation, subset, int(subset_seed), raw.name
        )
    for split, n, key in (("train", n_train, "n_train"), ("test", n_test, "n_test")):
        x, y = splits[split]
        what = f"{split} examples in {raw.name}"
        if split == "train" and n_validation is not None:
            what += f" after the {n_validation} validation examples"
        idx = _subset_indices(len(x), n, subset, int(subset_seed), key, what)
        if idx is not None:
            splits[split] = (x[idx], y[idx])
    return splits


def _hold_out(
    x: np.ndarray, y: np.ndarray, n: int, subset: str, seed: int, name: str
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train x, y), (validation x, y)): ``n`` examples moved out of the training split."""
    check_count("n_validation", n, len(x) - 1, f"training examples in {name}, minus one")
    if subset == "first":
        held = np.arange(len(x) - n, len(x))
    else:
        rng = np.random.default_rng([VALIDATION_STREAM, seed])
        held = np.sort(rng.choice(len(x), size=int(n), replace=False))
    keep = np.setdiff1d(np.arange(len(x)), held, assume_unique=True)
    return (x[keep], y[keep]), (x[held], y[held])


def _scaled_splits(
    raw: RawArrays,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    scaling: str,
    flatten: bool,
    label_kw: dict[str, Any],
    metadata: dict[str, Any],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Steps 3-5 on every split; standardization statistics (added to ``metadata``) come
    from the training split only."""
    mean = std = None
    if scaling == "standardize":
        x_train = splits["train"][0]
        mean, std = standardization_stats(x_train, pixel_max=raw.pixel_max, image=raw.is_image)
        metadata["mean"] = mean.tolist()
        metadata["std"] = std.tolist()
    kw = {"scaling": scaling, "pixel_max": raw.pixel_max, "mean": mean, "std": std}

    def finish(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = scale_features(x, **kw)
        if flatten:
            x = x.reshape(len(x), math.prod(x.shape[1:]))
        return x, transform_labels(y, **label_kw)[0]

    return {split: finish(x, y) for split, (x, y) in splits.items()}


def preprocess(
    raw: RawArrays,
    *,
    scaling: str = "unit",
    flatten: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
    subset_seed: int = 0,
    subset: str = "random",
    order: str = "canonical",
    label_transform: str = "none",
    one_hot: bool = False,
    n_validation: int | None = None,
) -> ArrayDataset:
    """Preprocess ``raw`` into an ``ArrayDataset`` (steps in the module docstring)."""
    _check_options(
        raw,
        scaling=scaling,
        flatten=flatten,
        subset_seed=subset_seed,
        subset=subset,
        order=order,
        label_transform=label_transform,
        one_hot=one_hot,
    )
    splits = _order_and_subset(
        raw,
        n_train=n_train,
        n_test=n_test,
        n_validation=n_validation,
        subset_seed=subset_seed,
        subset=subset,
        order=order,
    )
    metadata: dict[str, Any] = {
        "scaling": scaling,
        "flatten": flatten,
        "order": order,
        "subset": subset,
        "subset_seed": int(subset_seed),
        "label_transform": label_transform,
        "one_hot": one_hot,
        "raw_num_train": len(raw.x_train),
        "raw_num_test": len(raw.x_test),
        "raw_num_classes": int(raw.num_classes),
        "pixel_max": raw.pixel_max,
        "n_validation": n_validation,
    }
    label_kw = {
        "num_classes": raw.num_classes,
        "label_transform": label_transform,
        "one_hot": one_hot,
    }
    scaled = _scaled_splits(raw, splits, scaling, flatten, label_kw, metadata)
    x_train, y_train = scaled["train"]
    x_test, y_test = scaled["test"]
    x_validation, y_validation = scaled.get("validation", (None, None))
    num_classes = transform_labels(splits["train"][1][:1], **label_kw)[1]
    return ArrayDataset(
        name=raw.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        source=raw.source,
        metadata=metadata,
        x_validation=x_validation,
        y_validation=y_validation,
    )
