"""Construction-time argument checks for the models (one-line ``ValueError`` naming the key)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the key and the allowed names unless ``value`` is allowed."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_int_at_least(name: str, value: Any, low: int) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_rate(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_positive_float(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value > 0
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def as_int_tuple(name: str, value: Any, low: int = 1) -> tuple[int, ...]:
    """``value`` (list, tuple or OmegaConf ListConfig of ints >= low) as a tuple of ints."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence of integers >= {low}, got {value!r}")
    items = tuple(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral) or item < low:
            raise ValueError(f"{name} must be a sequence of integers >= {low}, got {value!r}")
    return tuple(int(item) for item in items)
