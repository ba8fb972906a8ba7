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


class NetworkAccessError(OSError):
    """A test tried to open a network connection (an OSError, as on an offline machine)."""


@pytest.fixture
def no_network(monkeypatch) -> list[tuple]:
    """Every socket connection or DNS lookup fails at once, as on an offline machine; the
    returned list records the attempts (tests must never touch the network)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise NetworkAccessError(f"network access attempted in a test: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
