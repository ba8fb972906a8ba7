"""Replica expansion: layout, seeds, grid validation (no compilation)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from repro.engine.replicas import expand_replicas, plan_from_config


def test_grid_major_seed_minor_layout() -> None:
    plan = expand_replicas(
        seed=10, seeds=3, grid_key="optimizer.learning_rate", grid_values=[0.1, 0.01]
    )
    assert plan.num_replicas == 6
    assert plan.seeds == (10, 11, 12, 10, 11, 12)
    assert plan.grid_index == (0, 0, 0, 1, 1, 1)
    assert plan.hparams(4) == {"optimizer.learning_rate": 0.01}
    lrs = np.asarray(plan.hparam_arrays()["optimizer.learning_rate"])
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01], rtol=1e-7)


def test_no_grid() -> None:
    plan = plan_from_config({"seed": 2, "replicas": {"seeds": 2, "grid": {"key": None}}})
    assert plan.seeds == (2, 3)
    assert plan.hparams(1) == {}
    assert plan.hparam_arrays() == {}


def test_replica_key_depends_only_on_its_seed() -> None:
    many = expand_replicas(seed=0, seeds=4, grid_key=None, grid_values=None).seed_keys()
    one = expand_replicas(seed=3, seeds=1, grid_key=None, grid_values=None).seed_keys()
    np.testing.assert_array_equal(jax.random.key_data(many[3]), jax.random.key_data(one[0]))


@pytest.mark.parametrize(
    ("key", "values", "match"),
    [
        ("model.depth", [2, 3], "Hydra multirun"),
        ("trainer.batch_size", [32], "Hydra multirun"),
        ("optimizer.schedule.warmup_epochs", [1.0], "changes the compiled program"),
        ("noise.eta", [], "non-empty"),
        ("noise.eta", ["a"], "must be numbers"),
    ],
)
def test_bad_grids(key: str, values: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expand_replicas(seed=0, seeds=1, grid_key=key, grid_values=values)


def test_bad_seeds() -> None:
    with pytest.raises(ValueError, match=r"replicas.seeds must be >= 1, got 0"):
        expand_replicas(seed=0, seeds=0, grid_key=None, grid_values=None)
