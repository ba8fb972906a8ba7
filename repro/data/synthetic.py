"""Synthetic data sets (numpy, deterministic in ``seed``).

Train and test splits are drawn from independent child streams of
``np.random.SeedSequence(seed)``, so changing ``num_test`` leaves the training set unchanged.
All go through ``preprocess`` with ``scaling="none"`` and ``order="source"`` unless given.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from repro.data.dataset import ArrayDataset, RawArrays
from repro.data.preprocess import check_choice, preprocess

TEACHER_TASKS: tuple[str, ...] = ("regression", "classification")


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _split_rngs(seed: int, n: int = 3) -> list[np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


def _finish(raw: RawArrays, options: dict[str, Any]) -> ArrayDataset:
    options.setdefault("scaling", "none")
    options.setdefault("order", "source")
    return preprocess(raw, **options)


def make_synthetic_classification(
    *,
    num_train: int = 1000,
    num_test: int = 1000,
    num_features: int = 20,
    num_classes: int = 2,
    class_separation: float = 1.0,
    noise_std: float = 1.0,
    seed: int = 0,
    **options: Any,
) -> ArrayDataset:
    """Gaussian-mixture classification.

    Class means ``mu_c ~ N(0, class_separation^2 I_d)`` (drawn once), labels uniform on
    ``{0..C-1}``, inputs ``x = mu_y + noise_std * N(0, I_d)``; x float32 ``[N, d]``.
    """
    for key, value, low in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("num_features", num_features, 1),
        ("num_classes", num_classes, 2),
    ):
        _check_int(key, value, low)
    _check_nonnegative("class_separation", class_separation)
    _check_nonnegative("noise_std", noise_std)
    mean_rng, train_rng, test_rng = _split_rngs(seed)
    means = class_separation * mean_rng.standard_normal((num_classes, num_features))

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n)
        x = means[y] + noise_std * rng.standard_normal((n, num_features))
        return x.astype(np.float32), y.astype(np.int32)

    x_train, y_train = draw(train_rng, num_train)
    x_test, y_test = draw(test_rng, num_test)
    raw = RawArrays(
        name="gaussian_mixture",
        source=(
            f"synthetic:gaussian_mixture(d={num_features},C={num_classes},"
            f"sep={class_separation},noise={noise_std},seed={seed})"
        ),
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
    )
    return _finish(raw, dict(options))


def make_linear_regression(
    *,
    num_train: int = 100_000,
    num_test: int = 10_000,
    dim: int = 1,
    seed: int = 0,
    **options: Any,
) -> ArrayDataset:
    """Mori et al. (2022)'s linear regression data: ``x ~ N(0, I_dim)``, ``y ~ N(0, 1)``
    independent of x; x float32 ``[N, dim]``, y float32 ``[N, 1]`` (num_classes = 0).

    For the model ``y_hat = w . x`` and loss ``(y_hat - y)^2 / 2`` the population minimum is at
    ``w* = 0`` with Hessian ``E[x x^T] = I``.
    """
    _check_int("num_train", num_train, 1)
    _check_int("num_test", num_test, 1)
    _check_int("dim", dim, 1)
    _, train_rng, test_rng = _split_rngs(seed)

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, dim)).astype(np.float32)
        y = rng.standard_normal((n, 1)).astype(np.float32)
        return x, y

    x_train, y_train = draw(train_rng, num_train)
    x_test, y_test = draw(test_rng, num_test)
    raw = RawArrays(
        name="linear_regression",
        source=f"synthetic:linear_regression(dim={dim},seed={seed})",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=0,
    )
    return _finish(raw, dict(options))


def teacher_network(x: np.ndarray, weights: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """ReLU MLP ``h <- relu(h W + b)`` for all but the last layer, linear last layer."""
    h = x.astype(np.float64)
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h


def make_teacher_data(
    *,
    num_train: int = 1000,
    num_test: int = 1000,
    input_dim: int = 20,
    hidden_width: int = 50,
    hidden_depth: int = 2,
    num_outputs: int = 1,
    task: str = "regression",
    noise_std: float = 0.0,
    seed: int = 0,
    **options: Any,
) -> ArrayDataset:
    """Teacher-network data: ``x ~ N(0, I)``, ``f`` a random ReLU MLP (``hidden_depth`` layers
    of ``hidden_width``, He weights N(0, 2 / fan_in), zero biases, linear readout of
    ``num_outputs``).

    ``task="regression"``: ``y = f(x) + noise_std * N(0, I)``, float32 ``[N, num_outputs]``.
    ``task="classification"``: ``y = argmax(f(x) + noise_std * N(0, I))`` with
    ``num_classes = num_outputs >= 2``.
    """
    check_choice("task", task, TEACHER_TASKS)
    for key, value, low in (
        ("num_train", num_train, 1),
        ("num_test", num_test, 1),
        ("input_dim", input_dim, 1),
        ("hidden_width", hidden_width, 1),
        ("hidden_depth", hidden_depth, 0),
        ("num_outputs", num_outputs, 2 if task == "classification" else 1),
    ):
        _check_int(key, value, low)
    _check_nonnegative("noise_std", noise_std)
    teacher_rng, train_rng, test_rng = _split_rngs(seed)
    sizes = [input_dim] + [hidden_width] * hidden_depth + [num_outputs]
    weights = [
        (
            teacher_rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in),
            np.zeros(fan_out),
        )
        for fan_in, fan_out in itertools.pairwise(sizes)
    ]

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, input_dim))
        f = teacher_network(x, weights) + noise_std * rng.standard_normal((n, num_outputs))
        if task == "classification":
            return x.astype(np.float32), np.argmax(f, axis=1).astype(np.int32)
        return x.astype(np.float32), f.astype(np.float32)

    x_train, y_train = draw(train_rng, num_train)
    x_test, y_test = draw(test_rng, num_test)
    raw = RawArrays(
        name=f"teacher_{task}",
        source=(
            f"synthetic:teacher(d={input_dim},width={hidden_width},depth={hidden_depth},"
            f"out={num_outputs},task={task},noise={noise_std},seed={seed})"
        ),
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_outputs if task == "classification" else 0,
    )
    return _finish(raw, dict(options))
