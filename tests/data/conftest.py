"""Shared fixtures of the data tests: the real MNIST file and a network guard."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

# The repository refers to the shared data as ../shared/data relative to its root.
REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST_NPZ = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"


@pytest.fixture(scope="session")
def mnist_npz_path() -> Path:
    if not MNIST_NPZ.is_file():
        pytest.skip(f"real MNIST not available at {MNIST_NPZ} (../shared/data/mnist.npz)")
    return MNIST_NPZ


@pytest.fixture(scope="session")
def mnist_arrays(mnist_npz_path) -> dict[str, np.ndarray]:
    with np.load(mnist_npz_path) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="session")
def small_mnist_like_arrays() -> dict[str, np.ndarray]:
    """300 train / 100 test images in the npz layout: the first real MNIST images when the
    shared file exists, else random uint8 digits (the TFDS tests then still run)."""
    n_train, n_test = 300, 100
    if MNIST_NPZ.is_file():
        with np.load(MNIST_NPZ) as npz:
            return {
                "x_train": npz["x_train"][:n_train],
                "y_train": npz["y_train"][:n_train],
                "x_test": npz["x_test"][:n_test],
                "y_test": npz["y_test"][:n_test],
            }
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


class NetworkAccessError(OSError):
    """A test tried to open a network connection (an OSError, as on an offline machine)."""


def guard_network(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Make every socket connection and DNS lookup fail at once, as on an offline machine;
    the returned list records the attempts."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise NetworkAccessError(f"network access attempted in a test: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture
def no_network(monkeypatch) -> list[tuple]:
    """Tests must never touch the network: guard it, return the recorded attempts."""
    return guard_network(monkeypatch)


@pytest.fixture(scope="session")
def tiny_tfds_mnist(tmp_path_factory, small_mnist_like_arrays) -> Path:
    """A data_dir where 'mnist' (the catalogue builder's name and version) is prepared from
    ``small_mnist_like_arrays`` with TFDS's own writer, offline."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from tensorflow_datasets import dataset_builders

    data_dir = tmp_path_factory.mktemp("tfds")
    arrays = small_mnist_like_arrays
    with pytest.MonkeyPatch.context() as mp:
        guard_network(mp)
        version = str(tfds.builder("mnist", data_dir=str(data_dir / "probe")).version)
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(num_classes=10),
            }
        )

        def examples(split):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            return [(i, {"image": x[i][..., None], "label": int(y[i])}) for i in range(len(y))]

        dataset_builders.store_as_tfds_dataset(
            name="mnist",
            version=version,
            features=features,
            split_datasets={"train": examples("train"), "test": examples("test")},
            data_dir=str(data_dir),
        )
    return data_dir
