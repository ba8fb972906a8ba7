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
