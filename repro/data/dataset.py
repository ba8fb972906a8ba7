"""Containers: raw arrays as a source delivers them, and the preprocessed ``ArrayDataset``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class RawArrays:
    """Arrays as a source delivers them, before ``preprocess``.

    Images are ``[N, H, W]`` or ``[N, H, W, C]`` integers in ``[0, pixel_max]``; other features
    ``[N, d]``. Labels are integer class ids ``[N]`` (``num_classes >= 2``) or regression targets
    ``[N]`` / ``[N, k]`` (``num_classes == 0``). ``pixel_max`` is None for non-image features.
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    pixel_max: float | None = None

    @property
    def is_image(self) -> bool:
        """True for pixel data (a known white level ``pixel_max``)."""
        return self.pixel_max is not None


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A small data set held whole in memory (the engine puts it on the device).

    ``x_*``: float32 ``[N, *input_shape]`` (images NHWC, or flat ``[N, d]``).
    ``y_*``: int32 ``[N]`` class ids; float32 ``[N, C]`` when one-hot; float32 ``[N, k]``
    regression targets (``num_classes == 0``; e.g. parity labels +-1 are ``[N, 1]``, matching a
    model with ``num_outputs = 1`` without broadcasting).
    ``metadata``: how the arrays were made (preprocessing options, statistics, raw sizes).
    ``x_validation`` / ``y_validation``: a validation split held out of the training examples
    (``preprocess(n_validation=...)``) or delivered by the source (a speech corpus's held-out
    voices), or None; never trained on, evaluated as its own set.
    ``extras_train`` / ``extras_test`` / ``extras_validation``: further per-example arrays
    ``[N, ...]`` that travel with ``x`` and ``y`` through batching (e.g. padding masks of
    sequence data); the engine gathers them with the same indices and hands them to the task
    in the batch dict.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extras_train: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    extras_test: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    x_validation: np.ndarray | None = None
    y_validation: np.ndarray | None = None
    extras_validation: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.x_validation is None) != (self.y_validation is None):
            raise ValueError("x_validation and y_validation must be given together")
        if self.x_validation is not None and len(self.x_validation) != len(self.y_validation):
            raise ValueError(
                f"x_validation has {len(self.x_validation)} examples, y_validation "
                f"{len(self.y_validation)}"
            )
        if self.extras_validation and self.x_validation is None:
            raise ValueError("extras_validation needs x_validation and y_validation")
        n_validation = 0 if self.x_validation is None else len(self.x_validation)
        for split, extras, n in (
            ("train", self.extras_train, len(self.x_train)),
            ("test", self.extras_test, len(self.x_test)),
            ("validation", self.extras_validation, n_validation),
        ):
            for key, value in extras.items():
                if key in ("x", "y", "mask"):
                    raise ValueError(f"extras_{split} may not use the reserved name {key!r}")
                if len(value) != n:
                    raise ValueError(
                        f"extras_{split}[{key!r}] has {len(value)} examples, x_{split} has {n}"
                    )

    def train_arrays(self) -> dict[str, np.ndarray]:
        """``{"x", "y", **extras_train}``: everything a training batch is gathered from."""
        return {"x": self.x_train, "y": self.y_train, **self.extras_train}

    def test_arrays(self) -> dict[str, np.ndarray]:
        """``{"x", "y", **extras_test}``."""
        return {"x": self.x_test, "y": self.y_test, **self.extras_test}

    def validation_arrays(self) -> dict[str, np.ndarray] | None:
        """``{"x", "y", **extras_validation}`` of the validation split, or None without one."""
        if self.x_validation is None:
            return None
        return {"x": self.x_validation, "y": self.y_validation, **self.extras_validation}

    @property
    def num_examples(self) -> int:
        """Training examples N (the engine checks ``batch_size <= N`` before compiling)."""
        return int(self.x_train.shape[0])

    @property
    def num_test_examples(self) -> int:
        """Test examples."""
        return int(self.x_test.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(28, 28, 1)`` or ``(784,)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def target_shape(self) -> tuple[int, ...]:
        """Shape of one target: ``()`` for class ids, ``(C,)`` one-hot, ``(k,)`` regression."""
        return tuple(int(d) for d in self.y_train.shape[1:])

    @property
    def task(self) -> str:
        """ "classification" (num_classes >= 2) or "regression" (num_classes == 0)."""
        return "classification" if self.num_classes > 0 else "regression"

    def describe(self) -> dict[str, Any]:
        """Sizes and shapes, JSON-friendly (for logs and run metadata)."""
        return {
            "name": self.name,
            "source": self.source,
            "task": self.task,
            "num_examples": self.num_examples,
            "num_test_examples": self.num_test_examples,
            "num_validation_examples": (0 if self.x_validation is None else len(self.x_validation)),
            "input_shape": list(self.input_shape),
            "target_shape": list(self.target_shape),
            "num_classes": self.num_classes,
        }
