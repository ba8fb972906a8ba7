"""Bad input: one ConfigError naming the key, raised before any compilation or output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest

from repro.engine import train_and_evaluate
from repro.errors import ConfigError

COMPILE_EVENTS = "/jax/core/compile/"  # tracing, lowering and XLA compilation durations


@pytest.fixture
def compile_events() -> Iterator[list[str]]:
    """The JAX compilation events (jax.monitoring) recorded while the test runs. Tracing is
    recorded even when the persistent compilation cache then skips the XLA compile."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs: object) -> None:
        del duration, kwargs
        if event.startswith(COMPILE_EVENTS):
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


def test_compile_events_see_a_compilation(compile_events: list[str]) -> None:
    """The counter the tests below rely on is not blind: a fresh jitted function (and even
    an eager jnp op) records compile events."""
    assert not compile_events
    jax.jit(lambda x: x * 3 + 1)(np.float32(2.0))
    assert f"{COMPILE_EVENTS}jaxpr_trace_duration" in compile_events


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
        (
            ["noise=ghost_batch_gaussian", "noise.ghost_size=0.5"],
            "noise.ghost_size must be an integer >= 1, got 0.5",
        ),
        (["noise=sgd_sampling", "noise.batch_size=0"], "noise.batch_size must be an integer >= 1"),
        (
            ["noise=additive", "noise.anneal=maybe"],
            "noise.anneal must be true or false, got 'maybe'",
        ),
        (
            ["optimizer=momentum", "optimizer.nesterov=maybe"],
            "optimizer.nesterov must be true or false, got 'maybe'",
        ),
        (
            [
                "noise=ghost_batch_gaussian",
                "replicas.grid.key=noise.ghost_size",
                "replicas.grid.values=[8,16]",
            ],
            "replicas.grid.key='noise.ghost_size' is an integer setting (it fixes shapes), which "
            "the replicas of one compiled program cannot vary; sweep it with Hydra multirun "
            "instead (-m noise.ghost_size=8,16)",
        ),
        (
            ["noise=additive", "replicas.grid.key=noise.anneal", "replicas.grid.values=[0,1]"],
            "replicas.grid.key='noise.anneal' is a true/false switch",
        ),
        (
            ["replicas.grid.key=optimizer.nesterov", "replicas.grid.values=[0,1]"],
            "(-m optimizer.nesterov=true,false)",
        ),
        (
            ["+optimizer.batch_scaling.rule=cubic", "+optimizer.batch_scaling.base_batch_size=64"],
            "optimizer.batch_scaling.rule must be one of ['none', 'sqrt', 'linear'], got 'cubic'",
        ),
        (
            ["+optimizer.batch_scaling.rule=sqrt", "+optimizer.batch_scaling.base_batch_size=0"],
            "optimizer.batch_scaling.base_batch_size must be an integer >= 1, got 0",
        ),
        (
            ["data=digits_stream", "+data.n_validation=100"],
            "data.n_validation=100 needs a resident data set",
        ),
        (["+data.n_validation=5000"], "data.n_validation must be an integer in [1, "),
    ],
)
def test_bad_values_raise_one_line_before_compiling(
    compose_cfg, compile_events: list[str], tmp_path: Path, overrides: list[str], message: str
) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as info:
        train_and_evaluate(cfg, tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "summary.json").exists()
    assert not (tmp_path / "checkpoints").exists()
    assert compile_events == []  # nothing was traced or compiled before the error


def test_wandb_online_without_credentials_fails_before_compiling(
    compose_cfg, compile_events: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = compose_cfg("logger=wandb", "logger.mode=online")
    with pytest.raises(ConfigError, match=r"^logger\.mode=online found no W&B credentials"):
        train_and_evaluate(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
    assert compile_events == []


def test_missing_data_names_the_file(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("data=mnist", f"data.path={tmp_path}/nowhere/mnist.npz")
    with pytest.raises(FileNotFoundError, match=r"nowhere/mnist\.npz"):
        train_and_evaluate(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()
