"""Data sources returning ``ArrayDataset``: local npz arrays, TFDS, scikit-learn digits.

All go through ``repro.data.preprocess.preprocess`` (keyword options ``scaling``, ``flatten``,
``n_train``, ``n_test``, ``subset_seed``, ``subset``, ``order``, ``label_transform``,
``one_hot``), so the same raw arrays give the same ``ArrayDataset`` whichever source
delivered them: ``load_npz("../shared/data/mnist.npz")`` on an offline machine equals
``load_tfds("mnist", data_dir)`` on a connected one (with the default ``order="canonical"``).
"""

from __future__ import annotations

import os
import socket
import threading
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from repro.data.dataset import ArrayDataset, RawArrays
from repro.data.preprocess import check_choice, preprocess
from repro.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
ARRAY_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")

# Per-example image shapes of catalogue data sets, checked when arrays carry these names.
KNOWN_IMAGE_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "kmnist": (28, 28, 1),
    "emnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "svhn_cropped": (32, 32, 3),
}

# Host TFDS downloads the small image data sets from; probed before any download attempt.
TFDS_PROBE_HOST = ("storage.googleapis.com", 443)


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS data set is not prepared in its data_dir and cannot be downloaded now."""


def resolve_data_path(path: str | os.PathLike[str]) -> Path:
    """An existing file: ``path`` as given (``~`` and ``$VARS`` expanded), else relative to the
    repository root (so ``../shared/data/mnist.npz`` works from any working directory)."""
    given = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    candidates = [given] if given.is_absolute() else [Path.cwd() / given, REPO_ROOT / given]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(f"'{c}'" for c in candidates)
    raise FileNotFoundError(f"data file {os.fspath(path)!r} not found (tried {tried})")


def _base_name(name: str) -> str:
    # "mnist:3.0.1" / "mnist/3.0.1" -> "mnist"
    return name.split(":")[0].split("/")[0]


def check_raw_arrays(raw: RawArrays) -> None:
    """Shapes, dtypes and label ranges of ``raw`` (ValueError naming the array)."""
    for split in ("train", "test"):
        x = getattr(raw, f"x_{split}")
        y = getattr(raw, f"y_{split}")
        if x.ndim < 2:
            raise ValueError(f"x_{split} must be [N, ...], got shape {x.shape}")
        if len(x) != len(y):
            raise ValueError(
                f"x_{split} and y_{split} must have the same length, got {len(x)} and {len(y)}"
            )
        if len(x) == 0:
            raise ValueError(f"x_{split} must not be empty")
        if raw.is_image:
            if x.dtype != np.uint8:
                raise ValueError(f"x_{split} must be uint8 pixels, got {x.dtype}")
            if x.ndim not in (3, 4):
                raise ValueError(f"x_{split} must be [N, H, W] or [N, H, W, C], got {x.shape}")
            expected = KNOWN_IMAGE_SHAPES.get(_base_name(raw.name))
            shape = x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)
            if expected is not None and shape != expected:
                raise ValueError(
                    f"x_{split} of {raw.name} must have images of shape {expected} "
                    f"(or {expected[:2]} without the channel axis), got {x.shape[1:]}"
                )
        if raw.num_classes > 0:
            if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
                raise ValueError(
                    f"y_{split} must be integer class ids [N], got {y.dtype} {y.shape}"
                )
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= raw.num_classes:
                raise ValueError(
                    f"y_{split} must hold class ids in [0, {raw.num_classes - 1}], "
                    f"got values in [{low}, {high}]"
                )
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise ValueError(
            f"x_train and x_test must have the same example shape, got "
            f"{raw.x_train.shape[1:]} and {raw.x_test.shape[1:]}"
        )


def load_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    name: str,
    source: str,
    num_classes: int = 10,
    pixel_max: float | None = 255.0,
    **options: Any,
) -> ArrayDataset:
    """``ArrayDataset`` from in-memory arrays ``x_train, y_train, x_test, y_test`` (the npz
    layout; TFDS arrays with a channel axis and int64 labels are accepted too)."""
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"arrays of {source} lack {missing} (found {sorted(arrays)})")
    raw = RawArrays(
        name=name,
        source=source,
        num_classes=int(num_classes),
        pixel_max=pixel_max,
        **{k: np.asarray(arrays[k]) for k in ARRAY_KEYS},
    )
    check_raw_arrays(raw)
    return preprocess(raw, **options)


_NPZ_READ_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz file `path`, read now; a file that is not a readable npz (random
    bytes, truncated, overwritten bytes, pickled objects) raises ConfigError naming it."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except _NPZ_READ_ERRORS as error:
        raise _unreadable_npz(path, error, None) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ConfigError(f"data file '{path}' is a single .npy array, not an .npz archive")
    member = None
    try:
        with loaded as npz:
            arrays = {}
            for member in npz.files:
                arrays[member] = npz[member]
            return arrays
    except _NPZ_READ_ERRORS as error:
        raise _unreadable_npz(path, error, member) from None


def _unreadable_npz(path: Path, error: Exception, member: str | None) -> ConfigError:
    if isinstance(error, ValueError) and "allow_pickle" in str(error):
        what = "not an .npz archive (neither a zip archive nor a .npy array)"
    else:
        inside = f" (array {member!r})" if member is not None else ""
        what = f"truncated or corrupt{inside}: {type(error).__name__}: {error}"
    message = f"data file '{path}' is {what}; restore it or download it again"
    return ConfigError(" ".join(message.split()))


def load_npz(
    path: str | os.PathLike[str] = "../shared/data/mnist.npz",
    *,
    name: str = "mnist",
    num_classes: int = 10,
    pixel_max: float | None = 255.0,
    split_train: str = "train",
    split_test: str = "test",
    **options: Any,
) -> ArrayDataset:
    """Arrays ``x_train [N, H, W(, C)] uint8, y_train [N], x_test, y_test`` from an ``.npz``
    file (the layout of ``../shared/data/mnist.npz``), checked and preprocessed.

    ``split_train`` / ``split_test`` name the stored split ("train" or "test") that becomes
    the training / test set, as ``load_tfds``'s do: Wu et al. (2020) train on the official
    test split and test on the training split. ``path`` is resolved by ``resolve_data_path``;
    a missing file raises ``FileNotFoundError`` naming it. ``options`` go to ``preprocess``.
    """
    check_choice("split_train", split_train, ("train", "test"))
    check_choice("split_test", split_test, ("train", "test"))
    resolved = resolve_data_path(path)
    stored = read_npz(resolved)
    arrays = dict(stored)
    for role, split in (("train", split_train), ("test", split_test)):
        for part in ("x", "y"):
            if f"{part}_{split}" in stored:
                arrays[f"{part}_{role}"] = stored[f"{part}_{split}"]
    source = f"npz:{resolved}"
    if (split_train, split_test) != ("train", "test"):
        source += f"[train={split_train},test={split_test}]"
    return load_arrays(
        arrays,
        name=name,
        source=source,
        num_classes=num_classes,
        pixel_max=pixel_max,
        **options,
    )


def load_sklearn_digits(
    *, test_size: int = 360, split_seed: int = 0, **options: Any
) -> ArrayDataset:
    """scikit-learn's bundled digits (1797 images 8x8, pixels 0..16, 10 classes; no download).

    Split: ``sklearn.model_selection.train_test_split`` stratified by class with
    ``random_state=split_seed``; ``test_size=360`` gives 1437 / 360. Pixels are stored as uint8
    with ``pixel_max = 16``, so ``scaling="unit"`` maps them to [0, 1].
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    n = len(digits.target)
    if isinstance(test_size, bool) or not isinstance(test_size, int) or not 1 <= test_size < n:
        raise ValueError(f"test_size must be an integer in [1, {n - 1}], got {test_size!r}")
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, stratify=labels, random_state=split_seed
    )
    arrays = {
        "x_train": images[train_idx],
        "y_train": labels[train_idx],
        "x_test": images[test_idx],
        "y_test": labels[test_idx],
    }
    return load_arrays(
        arrays,
        name="sklearn_digits",
        source=f"sklearn:digits(test_size={test_size},split_seed={split_seed})",
        num_classes=10,
        pixel_max=16.0,
        **options,
    )


# --------------------------------------------------------------------------------------------
# TFDS


def network_reachable(host: tuple[str, int] = TFDS_PROBE_HOST, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout_s`` seconds.

    Runs in a daemon thread so that a hanging DNS lookup cannot block longer than the timeout.
    """
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(host, timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(result and result[0])


def _expand_dir(data_dir: str | os.PathLike[str] | None) -> str | None:
    if data_dir is None:
        return None
    return os.path.expandvars(os.path.expanduser(os.fspath(data_dir)))


def prepare_instructions(name: str, data_dir: str | None) -> str:
    """How to prepare ``name`` in ``data_dir`` on a connected machine (one line)."""
    target = data_dir or "~/tensorflow_datasets"
    base = _base_name(name)
    text = (
        f"prepare it on a machine with network access with `tfds build {base} "
        f"--data_dir={target}` (or `python -m tensorflow_datasets.scripts.download_and_prepare "
        f"--datasets={base} --data_dir={target}`) and copy {target}/{base} here"
    )
    if base == "imagenet2012":
        text += " (imagenet2012 also needs its archives in <data_dir>/downloads/manual)"
    if base == "mnist":
        text += "; offline, use repro.data.load_npz('../shared/data/mnist.npz')"
    return text


def tfds_builder(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    network_timeout_s: float = 3.0,
) -> Any:
    """A TFDS builder whose data is prepared in ``data_dir``; fails fast otherwise.

    Order of checks, none of which waits on the network for long: (1) the builder (local
    metadata only); (2) ``builder.is_prepared()``; (3) only if not prepared and ``download``:
    a ``network_timeout_s`` TCP probe, then ``download_and_prepare``. Without data and without
    network it raises ``DatasetNotPreparedError`` naming the data dir and the prepare command
    (``tfds.load`` would instead retry downloads for minutes).
    """
    import tensorflow_datasets as tfds

    directory = _expand_dir(data_dir)
    try:
        builder = tfds.builder(name, data_dir=directory)
    except tfds.core.registered.DatasetNotFoundError as err:
        raise ValueError(f"name must be a TFDS catalogue data set, got {name!r}") from err
    if builder.is_prepared():
        return builder
    where = f"data_dir '{directory or builder.data_dir}' (looked for {builder.data_dir})"
    if not download:
        reason = "download=False"
    elif not network_reachable(timeout_s=network_timeout_s):
        reason = f"the network is unreachable (no connection within {network_timeout_s:g} s)"
    else:
        builder.download_and_prepare()
        return builder
    raise DatasetNotPreparedError(
        f"TFDS data set {name!r} is not prepared in {where} and {reason}; "
        + prepare_instructions(name, directory)
    )


def load_tfds(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split_train: str = "train",
    split_test: str = "test",
    image_key: str = "image",
    label_key: str = "label",
    download: bool = True,
    network_timeout_s: float = 3.0,
    **options: Any,
) -> ArrayDataset:
    """A catalogue image-classification data set from TFDS, whole in memory.

    For small sets (mnist, fashion_mnist, cifar10, ...); stream large ones with
    ``repro.data.TFDSStream``. Fails fast when the data is not prepared (``tfds_builder``).
    ``options`` go to ``preprocess``.
    """
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir, download=download, network_timeout_s=network_timeout_s)
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise ValueError(f"{name} has no feature {key!r} (features: {sorted(features)})")
    arrays: dict[str, np.ndarray] = {}
    for split, prefix in ((split_train, "train"), (split_test, "test")):
        data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        arrays[f"x_{prefix}"] = data[image_key]
        arrays[f"y_{prefix}"] = data[label_key]
    return load_arrays(
        arrays,
        name=_base_name(name),
        source=f"tfds:{builder.name}:{builder.version}@{builder.data_dir}",
        num_classes=int(features[label_key].num_classes),
        pixel_max=255.0,
        **options,
    )
