"""Mori et al. 2022 (arXiv 2105.09557) configs: every experiment composes, the paper-scale
networks build with the paper's parameter counts, and the CPU-scale noise-vs-loss cell runs
through the real command line (tiny) with its diagnostics, refusing a non-MSE task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from repro.engine.instantiate import call_target
from repro.train import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ("phi", "escape", "noise_vs_loss", "fashion_mlp_paper", "cifar_cnn_paper")


def _compose(experiment: str, *overrides: str) -> dict:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment=mori2022/{experiment}", *overrides])
    finally:
        GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_as_an_mse_run(experiment: str) -> None:
    cfg = _compose(experiment)
    assert cfg["name"] == f"mori2022/{experiment}"
    assert cfg["task"] == "mse"
    assert cfg["sweep_name"] == "mori2022"
    if experiment in ("phi", "escape"):
        assert cfg["dynamics"]["kind"] == ("stationary" if experiment == "phi" else "escape")
    else:
        noise = cfg["diagnostics"]["noise"]
        assert (noise["requires_task"], noise["batch_size"]) == ("mse", 100)
        assert (cfg["trainer"]["batch_size"], cfg["optimizer"]["learning_rate"]) == (100, 0.1)
        assert cfg["data"]["one_hot"] is True and cfg["model"]["kernel_init_name"] == "glorot"


@pytest.mark.parametrize(
    ("experiment", "shape", "params"),
    [
        # 3 x 2000 ReLU MLP on 784 inputs, 10 outputs
        ("fashion_mlp_paper", (2, 784), 784 * 2000 + 2000 + 2 * (2000 * 2000 + 2000) + 20010),
        # 3x3 convs 3 -> 64 -> 128 -> 256 (SAME, 2x2 max-pool each: 32 -> 4), readout 4096 -> 10
        (
            "cifar_cnn_paper",
            (2, 32, 32, 3),
            27 * 64 + 64 + 576 * 128 + 128 + 1152 * 256 + 256 + 4096 * 10 + 10,
        ),
    ],
)
def test_paper_scale_networks_build(experiment: str, shape: tuple, params: int) -> None:
    model = call_target(_compose(experiment)["model"], num_outputs=10)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    # shapes only (eval_shape traces, never compiles): the paper-scale nets are big for CPU
    variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)
    count = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    assert count == params
    out = jax.eval_shape(lambda p, v: model.apply(p, v, train=False), variables, x)
    assert out.shape == (2, 10)


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "repro.train", "experiment=mori2022/noise_vs_loss", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def test_tiny_noise_vs_loss_run_logs_noise_and_loss(tmp_path: Path) -> None:
    tiny = ("trainer.epochs=2", "data.n_train=400", "data.n_test=100", "replicas.seeds=2")
    result = _train(tmp_path, *tiny, "diagnostics.noise.num_examples=200", "trainer.progress=never")
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = tmp_path.glob("runs/mori2022/noise_vs_loss/*/metrics.jsonl")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        strength, loss = record["noise/noise_strength"], record["noise/loss"]
        assert len(strength) == 2 and all(s > 0 for s in strength)
        ratios = [s / v for s, v in zip(strength, loss, strict=True)]
        assert record["noise/noise_to_loss"] == pytest.approx(ratios, rel=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("task=binary_mse",),
            "error: diagnostics.noise: requires_task='mse' (the theory of this measurement "
            "needs that loss), got task='binary_mse'",
        ),
        pytest.param(
            ("data.n_train=500",),
            "error: diagnostics.noise: num_examples must be <= the 500 training examples the "
            "hooks are given, got 1000",
            marks=pytest.mark.slow,  # the same check is tested in-process in test_hooks.py
        ),
    ],
)
def test_bad_noise_vs_loss_input_is_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    result = _train(tmp_path, *args, "data.n_test=100")
    assert result.returncode == 2
    assert result.stderr.strip() == message


@pytest.mark.slow
def test_script_runs_every_cell_in_one_sweep() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/mori2022.py", "--dry-run"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    first = result.stdout.splitlines()[0]
    experiments = "mori2022/phi,mori2022/escape,mori2022/noise_vs_loss,mori2022/spectrum"
    assert first.endswith(f"-m repro.train -m experiment={experiments} sweep_name=mori2022")
    sweep = OmegaConf.load(REPO_ROOT / "conf" / "sweep" / "mori2022.yaml")
    assert sweep.hydra.sweeper.params.experiment == experiments
