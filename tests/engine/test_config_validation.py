"""Bad input: one ValueError naming the key, raised before any compilation or output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from repro.engine import train_and_evaluate


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.learning_rate=-1"], "optimizer.learning_rate must be > 0, got -1"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate must be > 0"),
        (["model.depth=0"], "model.depth must be an integer >= 1, got 0"),
        (["model.kernel_init_name=bogus"], "model.kernel_init_name"),
        (["trainer.batch_size=5000"], "trainer.batch_size=5000 is larger than the training set"),
        (["replicas.seeds=0"], "replicas.seeds must be an integer >= 1, got 0"),
        (["trainer.epochs=0"], "trainer.epochs must be an integer >= 1"),
        (["trainer.clip_norm=-3"], "trainer.clip_norm must be > 0 or null"),
        (["noise=additive", "noise.eta=-1"], "noise.eta must be >= 0"),
        (["replicas.grid.key=noise.eta", "replicas.grid.values=[0.1]"], "names no key"),
        (
            ["replicas.grid.key=optimizer.learning_rate", "replicas.grid.values=[0.1,-0.1]"],
            "optimizer.learning_rate must be > 0, got -0.1",
        ),
        (
            ["optimizer/schedule=warmup_cosine", "optimizer.schedule.warmup_epochs=9"],
            "warmup_epochs",
        ),
        (["task=ranking"], "task must be one of"),
        (["optimizer=momentum", "optimizer.momentum=1.5"], "optimizer.momentum must be in [0, 1)"),
        (["logger=wandb", "logger.mode=sometimes"], "logger.mode must be one of"),
    ],
)
def test_bad_values_raise_one_line_before_compiling(
    compose_cfg, tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_cfg(*overrides)
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        train_and_evaluate(cfg, tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "checkpoints").exists()
    # Data loading is the only slow thing allowed before validation fails; no compilation.
    assert time.perf_counter() - start < 30


def test_missing_data_names_the_file(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("data=mnist", f"data.path={tmp_path}/nowhere/mnist.npz")
    with pytest.raises(FileNotFoundError, match=r"nowhere/mnist\.npz"):
        train_and_evaluate(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
