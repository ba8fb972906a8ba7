"""Mori & Ueda 2020 (arXiv:2009.13094): the cells, through the real command line, fast.

The configs compose to the pre-registered protocol (PREREGISTRATION.md), every alpha of the
grids gives the effective batch size its comment names, the enhanced cell runs through
`python -m repro.train -m` (an enhanced step consumes 2B examples: half the steps per epoch),
and bad alpha / batch sizes stop with one line, exit 2, before anything compiles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
import yaml

from repro.engine.experiment import build_network
from repro.figures.identity import composed_config
from repro.optim import noise_enhancement_effective_batch_size

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"
CELL_DIR = REPO_ROOT / "conf" / "experiment" / "mori2020"
CELLS = sorted(p.stem for p in CELL_DIR.glob("*.yaml") if "protocol" not in p.stem
               and not p.stem.startswith("paper_"))  # fmt: skip
PAPER_CELLS = ("paper_sgd_b64", "paper_sgd_b1024", "paper_enhanced_b1024")
# Effective batch sizes the enhanced cells' alpha grids are meant to hit (their comments).
TARGET_B_EFF = {
    "enhanced_b256": (256, 128, 64),
    "enhanced_b1024": (1024, 512, 256, 128, 64),
}
TINY = [
    "replicas.seeds=2",
    "trainer.epochs=2",
    "model.width=16",
    "data.n_train=2048",
    "data.n_test=128",
    "trainer.progress=never",
]
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"real MNIST not found at {MNIST}")


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "REPRO_OUTPUT_ROOT": str(root), "WANDB_MODE": "disabled"}


def test_every_cell_is_in_the_sweep_and_composes_to_the_protocol() -> None:
    sweep = yaml.safe_load((REPO_ROOT / "conf" / "sweep" / "mori2020.yaml").read_text())
    listed = [e.strip() for e in sweep["hydra"]["sweeper"]["params"]["experiment"].split(",")]
    assert sorted(listed) == [f"mori2020/{cell}" for cell in CELLS]
    assert set(CELLS) == {f"sgd_b{b}" for b in (64, 128, 256, 512, 1024)} | set(TARGET_B_EFF)
    for cell in CELLS:
        config = composed_config([f"experiment=mori2020/{cell}"])
        assert config["name"] == f"mori2020/{cell}"
        assert config["optimizer"]["learning_rate"] == 0.5
        assert config["data"]["n_train"] == 16384 and config["model"]["width"] == 100
        assert config["trainer"]["epochs"] == 40 and config["replicas"]["seeds"] == 5
        assert config["trainer"]["batch_size"] == int(cell.rsplit("_b", 1)[1])
        kind = config["noise"]["kind"]
        assert kind == ("example_weights" if cell in TARGET_B_EFF else "none")


@pytest.mark.parametrize("cell", sorted(TARGET_B_EFF))
def test_alpha_grid_gives_the_stated_effective_batch_sizes(cell: str) -> None:
    config = composed_config([f"experiment=mori2020/{cell}"])
    assert config["replicas"]["grid"]["key"] == "noise.alpha"
    batch = config["trainer"]["batch_size"]
    got = [
        noise_enhancement_effective_batch_size(batch, alpha)
        for alpha in config["replicas"]["grid"]["values"]
    ]
    assert got == pytest.approx(TARGET_B_EFF[cell], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The enhanced cell shrunk to seconds through `python -m repro.train -m` (the plain
    cells run the same protocol without the noise node; the whole sweep: test_mori2020_sweep)."""
    if not MNIST.exists():
        pytest.skip(f"real MNIST not found at {MNIST}")
    root = tmp_path_factory.mktemp("mori2020")
    command = [
        sys.executable, "-m", "repro.train", "-m",
        "experiment=mori2020/enhanced_b1024", "sweep_name=mori2020", *TINY,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=_env(root), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root / "multirun" / "mori2020"


def _summary(sweep: Path, cell: str) -> dict:
    (path,) = (sweep / "mori2020" / cell).rglob("summary.json")
    return json.loads(path.read_text())


@needs_mnist
def test_tiny_enhanced_cell_runs_its_alpha_grid_at_half_the_steps(tiny_sweep: Path) -> None:
    enhanced = _summary(tiny_sweep, "enhanced_b1024")
    alphas = sorted(r["hparams"]["noise.alpha"] for r in enhanced["replicas"])
    grid = composed_config(["experiment=mori2020/enhanced_b1024"])["replicas"]["grid"]["values"]
    assert alphas == sorted(grid * 2)  # 5 alphas x 2 seeds in one program
    # 2048 examples, 2 x 1024 per enhanced step: 1 step per epoch.
    assert enhanced["steps"] == 2
    assert all(0.0 <= r["final"]["test_accuracy"] <= 1.0 for r in enhanced["replicas"])
    # Every epoch is evaluated: the equal-steps budget reads epoch E / 2 of each run.
    (metrics,) = (tiny_sweep / "mori2020" / "enhanced_b1024").rglob("metrics.jsonl")
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == [1, 2]


@needs_mnist
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("noise.alpha=-0.5", "error: noise.alpha must be >= 0, got -0.5"),
        ("replicas.grid.values=[0.5,-0.2]", "error: noise.alpha must be >= 0, got -0.2"),
        # 2 x 10000 examples per enhanced step, more than the 16384 of the training subset.
        ("trainer.batch_size=10000", "error: trainer.batch_size=10000 is larger than the"),
    ],
)
def test_bad_alpha_or_batch_is_one_line_exit_2(tmp_path: Path, override: str, message: str):
    command = [
        sys.executable, "-m", "repro.train", "experiment=mori2020/enhanced_b1024", override,
        "trainer.progress=never",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not list(tmp_path.rglob("checkpoints"))  # stopped before any training state


@needs_mnist
@pytest.mark.slow
def test_script_smoke_run_measures_trains_every_cell_and_writes_figures(tmp_path: Path) -> None:
    """`python scripts/mori2020.py <tiny overrides>`: claim 1's file, 7 jobs, the figures in
    the scratch dir (never paper_figures/), each cell matched to its tiny run."""
    command = [sys.executable, "scripts/mori2020.py", *TINY, "--draws", "10"]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert len(list((tmp_path / "multirun" / "mori2020").rglob("summary.json"))) == 7
    out = tmp_path / "figures" / "mori2020"
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["1"]["verdict"] != "not run"  # measured on the tiny model it ran with
    assert all(c["verdict"] != "not run" for c in claims.values())
    budget = json.loads((out / "budget_claims.json").read_text())["claims"]
    assert {c["verdict"] for c in budget} == {"not run"}  # epochs 20 / 40 are beyond 2
    assert (out / "accuracy_vs_b_eff.png").is_file()


@pytest.mark.parametrize("cell", PAPER_CELLS)
def test_paper_scale_cells_compose_and_build(cell: str) -> None:
    """Fashion-MNIST through TFDS, 60k images, 2 x 500 MLP, 100 epochs; the network builds
    with its parameter count and output shape (the data needs TFDS: slow test below)."""
    config = composed_config([f"experiment=mori2020/{cell}"])
    assert config["name"] == f"mori2020/{cell}" and config["sweep_name"] == "mori2020_paper"
    data = config["data"]
    assert (data["_target_"], data["name"]) == ("repro.data.load_tfds", "fashion_mnist")
    assert data["n_train"] is None and data["flatten"] is True
    assert config["trainer"]["epochs"] == 100 and config["optimizer"]["learning_rate"] == 0.5
    if "enhanced" in cell:
        cpu = composed_config(["experiment=mori2020/enhanced_b1024"])
        assert config["replicas"]["grid"] == cpu["replicas"]["grid"]
        assert config["noise"] == cpu["noise"]
    network = build_network(config["model"], 10)
    variables = network.init(jax.random.key(0), jnp.zeros((2, 784)), train=False)
    count = sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    assert count == 784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10
    assert network.apply(variables, jnp.zeros((2, 784)), train=False).shape == (2, 10)


def _tiny_tfds_fashion_mnist(data_dir: Path) -> None:
    """'fashion_mnist' prepared offline with TFDS's own writer; its pixels are the first
    real MNIST images (a stand-in: only the loading path and shapes are under test)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import numpy as np
    from tensorflow_datasets import dataset_builders

    version = str(tfds.builder("fashion_mnist", data_dir=str(data_dir / "probe")).version)
    features = tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(28, 28, 1)),
         "label": tfds.features.ClassLabel(num_classes=10)}
    )  # fmt: skip
    with np.load(MNIST) as npz:
        arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}

    def examples(split: str, size: int) -> list:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        return [(i, {"image": x[i][..., None], "label": int(y[i])}) for i in range(size)]

    splits = {"train": examples("train", 2048), "test": examples("test", 256)}
    dataset_builders.store_as_tfds_dataset(
        name="fashion_mnist", version=version, features=features, split_datasets=splits,
        data_dir=str(data_dir),
    )  # fmt: skip


@needs_mnist
@pytest.mark.slow
def test_paper_scale_enhanced_cell_runs_on_a_tiny_local_tfds_set(tmp_path: Path) -> None:
    data_dir = tmp_path / "tfds"
    _tiny_tfds_fashion_mnist(data_dir)
    command = [
        sys.executable, "-m", "repro.train", "experiment=mori2020/paper_enhanced_b1024",
        f"paths.tfds_data_dir={data_dir}", "trainer.epochs=1", "replicas.seeds=1",
        "model.width=16", "trainer.progress=never",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (path,) = tmp_path.rglob("summary.json")
    summary = json.loads(path.read_text())
    assert summary["steps"] == 1 and len(summary["replicas"]) == 5  # 2048 // (2 x 1024)
