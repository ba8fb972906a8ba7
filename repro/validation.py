"""Argument checks shared by the whole project, run at construction time.

Every check raises a one-line ``ValueError`` that names the parameter, the value and the
allowed range, e.g. ``ValueError: eta must be >= 0, got -1.0``, so that bad input fails
before anything is traced or compiled (an error from inside ``jit`` would name neither).

The checks accept Python numbers, NumPy scalars and arrays, and concrete ``jax.Array``
values (every element is checked). They deliberately SKIP values that cannot be inspected
at construction time:

* tracers -- a hyperparameter may be traced when an optimizer is built inside ``jax.vmap``
  over a hyperparameter grid or inside ``jit``; the caller is responsible for such values;
* callables -- optax schedules ``step -> value`` are checked by whoever evaluates them;
* ``None`` is rejected unless ``allow_none=True``.

Non-numeric values (strings, lists of strings, ...) raise ``TypeError`` naming the parameter.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_in_range",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "check_probability",
    "is_checkable",
]


def is_checkable(value: Any) -> bool:
    """True for concrete numeric values; False for tracers, schedules and ``None``."""
    if value is None or callable(value):
        return False
    if isinstance(value, jax.core.Tracer):
        return False
    return not isinstance(value, jax.Array) or _is_concrete_jax_array(value)


def _is_concrete_jax_array(value: jax.Array) -> bool:
    try:
        np.asarray(value)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return False
    return True


def _as_float_array(name: str, value: Any) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    # jnp.issubdtype also knows ml_dtypes such as bfloat16, which NumPy does not.
    if array.dtype == object or not (
        jnp.issubdtype(array.dtype, jnp.number) or jnp.issubdtype(array.dtype, jnp.bool_)
    ):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if jnp.issubdtype(array.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return array.astype(np.float64)


def _shown(value: Any) -> str:
    """The value as it appears in messages: a plain number where possible."""
    try:
        array = np.asarray(value)
    except Exception:
        return repr(value)
    if array.shape == ():
        item = array.item()
        if isinstance(item, float) and (math.isnan(item) or math.isinf(item)):
            return str(item)
        return repr(item)
    return np.array2string(array, threshold=8)


def _check(name: str, value: Any, ok: np.ndarray, allowed: str) -> None:
    if not bool(np.all(ok)):
        raise ValueError(f"{name} must be {allowed}, got {_shown(value)}")


def check_nonnegative(name: str, value: Any, *, allow_none: bool = False) -> None:
    """``value >= 0`` (NaN fails)."""
    if value is None and allow_none:
        return
    if value is None:
        raise ValueError(f"{name} must be >= 0, got None")
    if not is_checkable(value):
        return
    array = _as_float_array(name, value)
    _check(name, value, array >= 0, ">= 0")


def check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    """``value > 0`` (NaN fails)."""
    if value is None and allow_none:
        return
    if value is None:
        raise ValueError(f"{name} must be > 0, got None")
    if not is_checkable(value):
        return
    array = _as_float_array(name, value)
    _check(name, value, array > 0, "> 0")


def _interval(low: float, high: float, low_inclusive: bool, high_inclusive: bool) -> str:
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    return f"in {left}{low:g}, {high:g}{right}"


def check_in_range(
    name: str,
    value: Any,
    low: float,
    high: float,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
    *,
    allow_none: bool = False,
) -> None:
    """``value`` in the interval from ``low`` to ``high`` (default ``[low, high)``)."""
    allowed = _interval(low, high, low_inclusive, high_inclusive)
    if value is None and allow_none:
        return
    if value is None:
        raise ValueError(f"{name} must be {allowed}, got None")
    if not is_checkable(value):
        return
    array = _as_float_array(name, value)
    above = array >= low if low_inclusive else array > low
    below = array <= high if high_inclusive else array < high
    _check(name, value, above & below, allowed)


def check_probability(name: str, value: Any, *, allow_none: bool = False) -> None:
    """A sampling probability: ``value`` in ``(0, 1]``."""
    check_in_range(name, value, 0.0, 1.0, False, True, allow_none=allow_none)


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
) -> int:
    """A concrete integer (Python or NumPy int, not bool) in ``[low, high]``; returns it.

    Integers fix shapes, so unlike the float checks this one does not skip tracers: a traced
    value raises ``TypeError`` naming the parameter.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
            array = np.asarray(value)
            if array.shape == () and np.issubdtype(array.dtype, np.integer):
                value = int(array)
            else:
                raise TypeError(f"{name} must be an integer, got {value!r}")
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value
