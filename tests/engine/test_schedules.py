"""Learning-rate schedules: values at chosen steps, traced peak values, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.engine.schedules import (
    batch_scaling_factor,
    build_schedule,
    validate_batch_scaling,
    validate_schedule,
)


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


@pytest.mark.parametrize(
    ("rule", "batch", "factor"),
    [("sqrt", 1024, 4.0), ("sqrt", 16, 0.5), ("linear", 1024, 16.0), ("none", 1024, 1.0)],
)
def test_batch_scaling_factor(rule: str, batch: int, factor: float) -> None:
    spec = {"rule": rule, "base_batch_size": 64}
    assert batch_scaling_factor(spec, batch) == factor
    assert batch_scaling_factor(None, batch) == 1.0
    validate_batch_scaling(spec)


def test_batch_scaling_multiplies_the_learning_rate_of_the_update() -> None:
    # SGD at base lr 0.1 stated at batch 64 and run at batch 256 (sqrt): the step is 0.2 * g.
    from repro.engine.optimizers import UpdateRule

    optimizer = {
        "_target_": "optax.sgd",
        "learning_rate": 0.1,
        "batch_scaling": {"rule": "sqrt", "base_batch_size": 64},
    }
    rule = UpdateRule(optimizer, {}, None, 10, 10, batch_size=256)
    tx = rule.transformation({"optimizer.learning_rate": jnp.float32(0.1)}, jax.random.key(0))
    grads = {"w": jnp.ones(3)}
    updates, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(updates["w"], -0.2, rtol=1e-6)
    plain = UpdateRule({**optimizer, "batch_scaling": None}, {}, None, 10, 10, batch_size=256)
    tx = plain.transformation({}, jax.random.key(0))
    np.testing.assert_allclose(tx.update(grads, tx.init(grads))[0]["w"], -0.1, rtol=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rule": "sqrt"}, "base_batch_size must be an integer >= 1, got None"),
        ({"rule": "sqrt", "base_batch_size": 64, "base": 1}, "unknown keys ['base']"),
        ("sqrt", "must be a node {rule, base_batch_size} or null"),
    ],
)
def test_bad_batch_scaling_names_the_key(spec, message: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_batch_scaling(spec)
    assert message in str(info.value) and "optimizer.batch_scaling" in str(info.value)
