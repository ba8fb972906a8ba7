"""Fixtures for engine tests: Hydra-composed configs of tiny runs (digits / synthetic data)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from repro.engine.runtime import configure_compilation_cache
from repro.train import CONFIG_DIR

# A small, fast run: 8x8 digits, 3 hidden layers of 16 units, 2 epochs of batch 64.
TINY = (
    "~experiment",
    "name=test",
    "data=digits",
    "model=deep_mlp",
    "model.depth=3",
    "model.width=16",
    "model.kernel_init_name=he",
    "optimizer=sgd",
    "optimizer.learning_rate=0.1",
    "noise=none",
    "trainer.epochs=2",
    "trainer.batch_size=64",
    "trainer.progress=never",
    "trainer.chunks_per_epoch=3",
)


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Share compiled programs between tests of a session (same shapes compile once)."""
    configure_compilation_cache(tmp_path_factory.getbasetemp() / "jax_cache")


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """compose_cfg(*overrides, tiny=True) -> the composed config (no `hydra` node)."""

    def _compose(*overrides: str, tiny: bool = True) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=[*(TINY if tiny else ()), *overrides])

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def hydra_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Like compose_cfg but with the `hydra` node, and the HydraConfig singleton set (reset
    after the test: it is process-global and leaks between tests otherwise)."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*TINY, *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()


def _read_metrics(workdir: Path, timing: bool = True) -> list[dict[str, Any]]:
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not timing:  # drop the fields that depend on wall-clock time
        records = [
            {k: v for k, v in r.items() if k not in ("wall_time_s", "examples_per_s")}
            for r in records
        ]
    return records


@pytest.fixture
def read_metrics() -> Callable[..., list[dict[str, Any]]]:
    """read_metrics(workdir, timing=True) -> the records of workdir/metrics.jsonl."""
    return _read_metrics


def _final_params(workdir: Path) -> Any:
    manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
    restored = manager.restore(
        manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    manager.close()
    return jax.tree.map(np.asarray, restored["state"]["replicas"]["params"])


@pytest.fixture
def final_params() -> Callable[[Path], Any]:
    """final_params(workdir) -> the replicas' parameters (numpy, leading axis R) of the
    latest checkpoint in workdir/checkpoints."""
    return _final_params
