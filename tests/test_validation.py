"""repro.validation: one-line ValueErrors naming parameter, value and range; skips tracers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from repro.validation import (
    check_in_range,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    is_checkable,
)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_nonnegative("eta", -1.0), "eta must be >= 0, got -1.0"),
        (lambda: check_nonnegative("eta", np.float32(-0.5)), "eta must be >= 0, got -0.5"),
        (lambda: check_nonnegative("eta", jnp.asarray(-2.0)), "eta must be >= 0, got -2.0"),
        (lambda: check_nonnegative("eta", float("nan")), "eta must be >= 0, got nan"),
        (lambda: check_positive("scale", 0), "scale must be > 0, got 0"),
        (lambda: check_in_range("b1", 1.0, 0.0, 1.0), "b1 must be in [0, 1), got 1.0"),
        (lambda: check_in_range("b2", -0.1, 0.0, 1.0), "b2 must be in [0, 1), got -0.1"),
        (lambda: check_probability("p", 0.0), "p must be in (0, 1], got 0.0"),
        (lambda: check_probability("p", 1.5), "p must be in (0, 1], got 1.5"),
        (lambda: check_nonnegative("eta", None), "eta must be >= 0, got None"),
        (lambda: check_int("batch_size", 0, low=1), "batch_size must be >= 1, got 0"),
        (lambda: check_int("k", 5, low=1, high=4), "k must be in [1, 4], got 5"),
    ],
)
def test_messages_name_parameter_value_and_range(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_array_values_are_checked_elementwise():
    check_nonnegative("eta", np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^eta must be >= 0, got \[ 0. -1.\]$"):
        check_nonnegative("eta", np.array([0.0, -1.0]))


def test_valid_values_pass():
    check_nonnegative("eta", 0)
    check_nonnegative("eta", np.float64(0.3))
    check_positive("lr", jnp.float32(1e-3))
    check_in_range("b1", 0.0, 0.0, 1.0)
    check_probability("p", 1.0)
    check_nonnegative("eta", None, allow_none=True)
    assert check_int("n", np.int64(3), low=1) == 3
    assert check_int("n", jnp.asarray(4)) == 4


def test_schedules_and_tracers_are_skipped():
    check_nonnegative("learning_rate", optax.constant_schedule(-1.0))
    assert not is_checkable(lambda step: step)

    def inside(eta):
        assert not is_checkable(eta)
        check_nonnegative("eta", eta)  # a traced value: no error, no concretization
        return eta * 2

    jax.jit(inside)(-1.0)
    jax.vmap(inside)(jnp.array([-1.0, 1.0]))


def test_non_numbers_raise_type_error():
    with pytest.raises(TypeError, match="eta must be a number"):
        check_nonnegative("eta", "0.1")
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        check_int("batch_size", 2.0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        check_int("batch_size", True)
    with pytest.raises(TypeError, match="n must be an integer"):
        jax.jit(lambda n: check_int("n", n))(3)
