"""Wu et al. 2020 (arXiv:1906.07405): the protocol's data split, every cell's noise scale and
iteration count, and tiny cells through the real command line.

The CPU-scale sweep itself is a long run (paper_figures/wu2020/PREREGISTRATION.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from repro.engine.data_loading import load_data
from repro.engine.instantiate import call_target
from repro.engine.optimizers import NOISE_ENGINE_KEYS
from repro.optim import SGDSampling
from repro.train import CONFIG_DIR
from tests.reporting.commands import run_module

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"real MNIST not found at {MNIST}")

N_TRAIN = 1000
SGD_BATCH = 50
CELLS = (
    "gd",
    "sgd",
    "bernoulli",
    "fisher",
    "cov",
    "sparse_fisher",
    "large_batch",
    "large_batch_ghost",
)
NOISY_CELLS = ("bernoulli", "fisher", "cov", "sparse_fisher", "large_batch_ghost")


@pytest.fixture(scope="module")
def compose_cell() -> Iterator:
    """compose_cell(experiment, *overrides) -> the resolved plain config (dict)."""

    def _compose(experiment: str, *overrides: str) -> dict:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
        return OmegaConf.to_container(cfg, resolve=True)

    yield _compose
    GlobalHydra.instance().clear()


def _iterations(cfg: dict) -> int:
    """Optimizer steps of the run: epochs x (n // batch)."""
    trainer = cfg["trainer"]
    return trainer["epochs"] * (cfg["data"]["n_train"] // trainer["batch_size"])


@needs_mnist
def test_split_is_the_authors_first_1000_test_images_unscaled(compose_cell):
    """train = the official test split's first 1000 images, test = the 60k training images,
    pixels 0..255 as float32 (not / 255), in the stored order."""
    cfg = compose_cell("wu2020/gd", "data.n_test=null")
    data = load_data(cfg["data"])
    raw = np.load(MNIST)
    train, test = data.train_arrays(), data.test_arrays()
    np.testing.assert_array_equal(train["x"][..., 0], raw["x_test"][:N_TRAIN].astype(np.float32))
    np.testing.assert_array_equal(train["y"], raw["y_test"][:N_TRAIN])
    assert test["x"].shape == (60000, 28, 28, 1)
    np.testing.assert_array_equal(test["x"][:5, ..., 0], raw["x_train"][:5].astype(np.float32))
    np.testing.assert_array_equal(test["y"], raw["y_train"])
    assert float(train["x"].max()) == 255.0
    assert "train=test,test=train" in data.source


@pytest.mark.parametrize("cell", CELLS)
def test_cpu_scale_cells_run_300_iterations_and_faithful_ones_10000(compose_cell, cell):
    cpu, full = compose_cell(f"wu2020/{cell}"), compose_cell(f"wu2020/full/{cell}")
    assert (
        _iterations(cpu) == 300 and cpu["trainer"]["eval_every_epochs"] == cpu["trainer"]["epochs"]
    )
    assert _iterations(full) == 10000 and full["data"]["n_test"] is None
    assert cpu["replicas"]["seeds"] == 5 and cpu["optimizer"]["learning_rate"] == 0.01
    assert cpu["model"]["bias_init"] == "simple" and cpu["model"]["init_scale"] == 0.02
    # Everything but the length and the test set is the same run.
    for key in ("model", "optimizer", "noise", "replicas"):
        assert cpu[key] == full[key]


@pytest.mark.parametrize("cell", NOISY_CELLS)
def test_every_noise_class_is_matched_to_sgd_at_b50(compose_cell, cell):
    """B_eff of the cell's sampler over its batch (closed form in repro.optim) equals 50, and
    tr(Cov(w)) / k^2 (the factor on tr(Sigma) of Cov(g | batch) for uncorrelated per-example
    gradients) equals SGD's at b = 50 from the same k examples. The classes differ only in
    Cov(w)'s 1 1^T part (the mean-gradient term, zero for Cov, ghost and SGD)."""
    cfg = compose_cell(f"wu2020/{cell}")
    sampler = call_target(cfg["noise"], exclude=NOISE_ENGINE_KEYS)
    batch = cfg["trainer"]["batch_size"]
    assert sampler.num_examples(batch) == batch
    assert sampler.effective_batch_size(batch) == pytest.approx(SGD_BATCH, rel=1e-12)
    sgd_trace = np.trace(SGDSampling(SGD_BATCH).weight_covariance(batch)) / batch**2
    trace = np.trace(sampler.weight_covariance(batch)) / batch**2
    assert trace == pytest.approx(sgd_trace, rel=1e-9)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """Two cells (SGD, the ghost-batch variant) for 1 epoch, 2 seeds, on 200 of the 1000
    images in batches of 100 (ghost batches of 50), in one process."""
    root = tmp_path_factory.mktemp("wu2020")
    result = run_module(
        "repro.train", "-m", "experiment=wu2020/sgd,wu2020/large_batch_ghost",
        "trainer.epochs=1", "replicas.seeds=2", "data.n_train=200", "data.n_test=200",
        "trainer.batch_size=100", "trainer.eval_train_examples=200", "trainer.progress=never",
        cwd=REPO_ROOT, env={"REPRO_OUTPUT_ROOT": str(root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@needs_mnist
@pytest.mark.parametrize("cell", ["sgd", "large_batch_ghost"])
def test_tiny_cells_through_the_command_line(tiny_sweep, cell):
    (summary_path,) = (tiny_sweep / "multirun" / "wu2020" / "wu2020" / cell).rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["experiment"] == f"wu2020/{cell}"
    replicas = summary["replicas"]
    assert len(replicas) == 2
    for replica in replicas:
        final = replica["final"]
        assert 0.0 <= final["test_accuracy"] <= 1.0
        assert 0.0 <= final["train_eval_accuracy"] <= 1.0


@needs_mnist
@pytest.mark.slow  # 8 jobs, ~2-3 minutes on 2 cores
def test_every_cell_of_the_sweep_runs_through_the_command_line(tmp_path):
    """`+sweep=wu2020` shrunk: every cell 1 epoch, 2 seeds, 200 images in batches of 100."""
    result = run_module(
        "repro.train", "-m", "+sweep=wu2020", "trainer.epochs=1", "replicas.seeds=2",
        "data.n_train=200", "data.n_test=200", "trainer.batch_size=100",
        "trainer.eval_train_examples=200", "trainer.progress=never",
        cwd=REPO_ROOT, env={"REPRO_OUTPUT_ROOT": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in tmp_path.rglob("summary.json")]
    assert sorted(s["experiment"] for s in summaries) == sorted(f"wu2020/{c}" for c in CELLS)
    for summary in summaries:
        accuracies = [r["final"]["test_accuracy"] for r in summary["replicas"]]
        assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
