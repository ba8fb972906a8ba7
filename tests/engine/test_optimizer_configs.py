"""Every `optimizer=` option trains through the engine, with a grid over its learning rate.

The engine builds each replica's optimizer inside the jitted, vmapped step from the config's
numbers (some of them traced per-replica values), which is where construction-time checks
that need concrete values break (NovoGrad's weight-decay test did, unnoticed by its
stand-alone tests).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from repro.engine import train_and_evaluate
from repro.engine.instantiate import target_of, to_plain
from repro.engine.optimizers import OPTIMIZER_ENGINE_KEYS, UpdateRule
from repro.errors import ConfigError
from repro.train import CONFIG_DIR

OPTIMIZERS = sorted(p.stem for p in (CONFIG_DIR / "optimizer").glob("*.yaml"))
# Learning rates that train the tiny digits MLP in 3 epochs (adaptive steps are normalised,
# heavy-ball momentum 0.9 multiplies the step by ~10, LAMB's trust ratio shrinks it).
RATES = {"adam": "[0.01,0.003]", "adamw": "[0.01,0.003]", "novograd": "[0.01,0.003]"}
RATES |= {"novograd_jasper": "[0.01,0.003]"}
RATES |= {"lamb": "[0.03,0.01]", "momentum": "[0.03,0.01]", "lars": "[10.0,3.0]"}


def test_every_optimizer_config_is_covered() -> None:
    assert {"sgd", "momentum", "adam", "novograd", "noisy_sgd"} <= set(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_trains_in_the_engine(compose_cfg, tmp_path: Path, optimizer: str) -> None:
    rates = RATES.get(optimizer, "[0.3,0.1]")
    cfg = compose_cfg(
        f"optimizer={optimizer}",
        "replicas.grid.key=optimizer.learning_rate",
        f"replicas.grid.values={rates}",
        "trainer.epochs=3",
    )
    summary = train_and_evaluate(cfg, tmp_path)
    assert summary["status"] == "finished"
    assert [r["hparams"]["optimizer.learning_rate"] for r in summary["replicas"]] == eval(rates)
    for replica in summary["replicas"]:
        assert not replica["diverged"]
        # 3 epochs of any of these optimizers leave chance (10 classes, loss ln 10 = 2.30)
        assert np.isfinite(replica["final"]["train_loss"]) and replica["final"]["train_loss"] < 2.0
        assert replica["final"]["test_accuracy"] > 0.3, (optimizer, replica)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_config_holds_only_keys_that_take_effect(compose_cfg, optimizer: str) -> None:
    """Each key is read by the engine, is `_target_`, or is an argument of the target."""
    node = to_plain(compose_cfg(f"optimizer={optimizer}").optimizer)
    arguments = set(inspect.signature(target_of(node)).parameters)
    unused = set(node) - {"_target_", *OPTIMIZER_ENGINE_KEYS} - arguments
    assert not unused, (optimizer, unused)


@pytest.mark.parametrize("group", ["optimizer", "noise"])
def test_hydra_instantiate_flags_are_refused_with_one_line(compose_cfg, group: str) -> None:
    """The engine calls `_target_` itself, so `_partial_` & co. would be silently ignored."""
    cfg = compose_cfg("optimizer=noisy_sgd", "noise=additive", f"+{group}._partial_=true")
    plain = {name: to_plain(cfg[name]) for name in ("optimizer", "noise")}
    with pytest.raises(ConfigError, match=rf"^{group}\._partial_=True has no effect") as error:
        UpdateRule(plain["optimizer"], plain["noise"], None, 1, 1)
    assert "\n" not in str(error.value)
