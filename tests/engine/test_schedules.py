"""Learning-rate schedules: values at chosen steps, traced peak values, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.engine.schedules import build_schedule, validate_schedule


def test_constant_is_the_learning_rate_itself() -> None:
    assert build_schedule({"name": "constant"}, 0.1, 100, 10) == 0.1
    assert build_schedule(None, 0.1, 100, 10) == 0.1


def test_warmup_polynomial_values() -> None:
    # 10 steps per epoch, 1 epoch warmup, 100 steps: lr * t / 10, then (1 - (t-10)/90)^2.
    spec = {"name": "warmup_polynomial", "warmup_epochs": 1, "power": 2.0, "end_factor": 0.0}
    schedule = build_schedule(spec, 0.2, 100, 10)
    np.testing.assert_allclose(schedule(0), 0.0, atol=1e-8)
    np.testing.assert_allclose(schedule(5), 0.1, rtol=1e-6)
    np.testing.assert_allclose(schedule(10), 0.2, rtol=1e-6)
    np.testing.assert_allclose(schedule(55), 0.2 * 0.5**2, rtol=1e-5)
    np.testing.assert_allclose(schedule(100), 0.0, atol=1e-8)


def test_cosine_and_piecewise() -> None:
    cosine = build_schedule({"name": "warmup_cosine", "end_factor": 0.1}, 1.0, 100, 10)
    np.testing.assert_allclose(cosine(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cosine(50), 0.1 + 0.9 * 0.5, rtol=1e-5)
    np.testing.assert_allclose(cosine(100), 0.1, rtol=1e-5)
    step = build_schedule(
        {"name": "piecewise", "boundaries_epochs": [5, 8], "factors": [0.1, 0.1]}, 1.0, 100, 10
    )
    np.testing.assert_allclose([step(49), step(50), step(80)], [1.0, 0.1, 0.01], rtol=1e-6)


def test_peak_may_be_traced() -> None:
    spec = {"name": "warmup_polynomial", "warmup_epochs": 0, "power": 1.0}

    def value(lr: jax.Array) -> jax.Array:
        return build_schedule(spec, lr, 10, 10)(5)

    np.testing.assert_allclose(jax.vmap(value)(jnp.array([1.0, 2.0])), [0.5, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": "linear"}, "optimizer.schedule.name must be one of"),
        ({"name": "warmup_cosine", "warmup_epochs": 11}, "warmup_epochs must be in"),
        ({"name": "warmup_polynomial", "power": 0}, "power must be > 0"),
        ({"name": "piecewise", "boundaries_epochs": [1], "factors": []}, "same length"),
    ],
)
def test_validation(spec: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_schedule(spec, epochs=10)
