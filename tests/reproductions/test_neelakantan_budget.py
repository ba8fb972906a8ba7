"""Neelakantan et al. 2015, training-budget study, through the real command line.

The study reads its shorter budgets off the per-epoch evaluations of one longer run per cell
(repro/figures/neelakantan2015_budget.py). That is exact only if a run's state after epoch e
does not depend on how many epochs it was launched for; checked here bit for bit on a tiny
noisy cell. Then the sweep config runs both batch sizes of a cell into its own sweep dir and
the script writes the budget outputs, every budget beyond the smoke run `not run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from repro.figures import neelakantan2015_budget as study

REPO_ROOT = Path(__file__).resolve().parents[2]
MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"
TINY = [
    "replicas.seeds=1",
    "model.depth=2",
    "model.width=16",
    "data.n_train=512",
    "data.n_test=256",
    "trainer.progress=never",
]

pytestmark = pytest.mark.skipif(not MNIST.exists(), reason=f"real MNIST not found at {MNIST}")


def _run(argv: list[str], root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(root), "WANDB_MODE": "disabled"}
    result = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _records(root: Path) -> list[dict]:
    (path,) = root.rglob("metrics.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_epoch_e_of_a_longer_run_is_the_e_epoch_run(tmp_path: Path) -> None:
    cell = ["experiment=neelakantan2015/simple_clip10_noise", study.budget_option(128), *TINY]
    for epochs in (1, 2):
        train = [sys.executable, "-m", "repro.train", *cell, f"trainer.epochs={epochs}"]
        _run(train, tmp_path / f"e{epochs}")
    short, long = _records(tmp_path / "e1"), _records(tmp_path / "e2")
    assert [r["epoch"] for r in long] == [1, 2]
    for key in ("step", "train_loss", "test_loss", "test_accuracy", "diverged"):
        assert long[0][key] == short[-1][key], key
    # The noise did act: the second epoch moved the parameters.
    assert long[1]["test_loss"] != long[0]["test_loss"]


@pytest.mark.slow
def test_sweep_script_runs_both_batch_sizes_into_its_own_sweep_dir(tmp_path: Path) -> None:
    out = tmp_path / "figures"
    script = [sys.executable, "scripts/neelakantan2015_budget.py", "--out-dir", str(out)]
    smoke = ["experiment=neelakantan2015/zero_clip10", "trainer.epochs=1", *TINY]
    _run([*script, *smoke], tmp_path)
    summaries = sorted((tmp_path / "multirun" / study.SWEEP).rglob("summary.json"))
    assert len(summaries) == 2
    runs = [json.loads(path.read_text()) for path in summaries]
    assert {r["experiment"] for r in runs} == {"neelakantan2015/zero_clip10"}
    configs = [path.parent / "config_resolved.yaml" for path in summaries]
    assert sorted("batch_size: 64" in c.read_text() for c in configs) == [False, True]
    payload = json.loads((out / "budget_claims.json").read_text())
    assert len(payload["claims"]) == len(study.BUDGETS) * 8
    # One epoch reaches no budget: every claim at every budget is not run, none is judged.
    assert {entry["verdict"] for entry in payload["claims"]} == {"not run"}
    assert "--overrides trainer.epochs=1" in payload["command"]


def _init_scales_script():
    import importlib.util

    path = REPO_ROOT / "scripts" / "neelakantan2015_init_scales.py"
    spec = importlib.util.spec_from_file_location("neelakantan2015_init_scales", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_init_scales_follow_the_closed_form() -> None:
    """The measurement behind init_scales.md on 128 uniform [0, 1] inputs, 20 init seeds:
    layer 1 matches s^2 |x|^2 / 2 (measured within 1.7 % over 4 inputs x 2 seed sets), and the
    simple init halves the rms per layer (2^-19 from layer 1 to 20, measured 2^-19.3..19.6)
    while He keeps it within a factor 2 (measured 2^0.3..0.6)."""
    import jax
    import jax.numpy as jnp

    from repro.models import DeepMLP

    scales = _init_scales_script()
    x = jax.random.uniform(jax.random.key(0), (128, 784))
    y = jax.random.randint(jax.random.key(1), (128,), 0, 10)
    w = jnp.full((128,), 1 / 128)
    keys = jnp.stack([jax.random.key(seed) for seed in range(20)])
    for init, std_first, gain, halvings in (
        ("simple", 0.1, 0.25, (18.5, 20.5)),
        ("he", (2 / 784) ** 0.5, 1.0, (-1.0, 1.0)),
    ):
        model = DeepMLP(20, 50, 10, "relu", init, 0.1, 0.0)
        rms = scales.make_measure(model)(keys, x, y, w)["rms"].mean(axis=0)
        closed = scales.predicted_rms(np.asarray(x), std_first, gain)
        assert rms[0] == pytest.approx(closed[0], rel=0.05)
        low, high = halvings
        assert low < float(np.log2(rms[0] / rms[-1])) < high, init
