"""NovoGrad paper-scale configs (ResNet-50 v2 on ImageNet through TFDS streaming): they compose
and validate, build a ResNet-50 of the paper's size by shape-only initialization, and train
one step on CPU at tiny size (ImageNet itself is not available offline)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from repro.engine.experiment import build_network
from repro.engine.optimizers import UpdateRule
from repro.engine.run_spec import run_spec
from repro.figures.identity import composed_config
from repro.models import count_params
from repro.train import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
OPTIMIZERS = ("novograd", "momentum", "adamw")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_paper_cell_composes_and_builds_a_resnet50(optimizer: str) -> None:
    option = f"experiment=novograd2019/paper/resnet50_{optimizer}"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        run_spec(compose("config", overrides=[option]))  # validates the whole config
    GlobalHydra.instance().clear()
    config = composed_config([option])
    trainer, schedule = config["trainer"], config["optimizer"]["schedule"]
    assert (trainer["epochs"], trainer["batch_size"], trainer["data_devices"]) == (100, 1024, 8)
    assert schedule["name"] == "warmup_polynomial" and schedule["power"] == 2.0
    assert config["data"]["name"] == "imagenet2012" and config["data"]["stream"] is True
    assert config["model"]["preactivation"] is True  # ResNet-50 v2, as the paper
    network = build_network(config["model"], 1000)
    x = jnp.zeros((1, 224, 224, 3))
    variables = jax.eval_shape(lambda: network.init(jax.random.key(0), x, train=False))
    assert count_params(variables["params"]) == pytest.approx(25.6e6, rel=0.01)
    steps = 1_281_167 // 1024
    rule = UpdateRule(config["optimizer"], config["noise"], None, 100 * steps, steps, 1024)
    jax.eval_shape(rule.transformation({}, jax.random.key(0)).init, variables["params"])


def test_novograd_uses_the_papers_hyperparameters() -> None:
    novograd = composed_config(["experiment=novograd2019/paper/resnet50_novograd"])["optimizer"]
    assert (novograd["learning_rate"], novograd["b1"], novograd["b2"]) == (0.02, 0.95, 0.98)
    assert novograd["schedule"]["warmup_epochs"] == 0.0  # the claim: no warmup needed


@pytest.mark.slow  # ~50 s on 2 idle cores: compiling ResNet-50 dominates
def test_resnet50_trains_one_step_on_cpu_at_tiny_size(tmp_path: Path) -> None:
    # The paper cell on 8 x 8 digit images instead of ImageNet, one device, 32 images.
    tiny = ["data=digits", "data.n_train=32", "trainer.batch_size=32", "trainer.epochs=1",
            "trainer.data_devices=1", "trainer.eval_batch_size=360", "trainer.progress=never",
            f"paths.output_root={tmp_path}"]  # fmt: skip
    command = [sys.executable, "-m", "repro.train",
               "experiment=novograd2019/paper/resnet50_novograd", *tiny]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = list(tmp_path.glob("runs/**/summary.json"))
    assert len(summaries) == 1 and '"status": "finished"' in summaries[0].read_text()
