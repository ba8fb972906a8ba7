"""The reporting layer against real engine output.

Fast: a copy of a real demo run dir (summary.json, metrics.jsonl, .hydra/overrides.yaml,
config_resolved.yaml; checkpoints left out) written by ``python -m repro.train``.
Slow: run the engine for real (2 epochs) and read its multirun back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro.aggregate import group_summary, load_runs
from repro.figures import get_paper
from repro.figures.core import evaluate_claims, load_paper_data

REPO = Path(__file__).resolve().parents[2]
REAL_RUN = Path(__file__).parent / "data" / "real_demo_run"


def _check_demo_run(root: Path, seeds: int) -> None:
    collection = load_runs([root])
    assert collection.unfinished == []
    frame = collection.frame()
    assert len(frame) == 2 * seeds
    assert frame["name"].unique().tolist() == ["demo"]
    assert sorted(frame["noise.eta"].unique()) == [0.0, 0.3]
    assert frame["seed"].tolist() == list(range(seeds)) * 2  # grid-major, seed-minor
    accuracy = frame["final.test_accuracy"]
    assert accuracy.between(0.0, 1.0).all()
    grouped = group_summary(frame, ["noise.eta"]).set_index("noise.eta")
    assert grouped["n"].tolist() == [seeds, seeds]
    assert grouped.loc[0.0, "mean"] == pytest.approx(accuracy[frame["noise.eta"] == 0.0].mean())

    data = load_paper_data(get_paper("demo"), [root])
    assert len(data.cell("no_noise")) == len(data.cell("noise")) == seeds
    curves = data.curves("noise")
    epochs = int(frame["epochs"].iloc[0])
    assert sorted(curves["epoch"].unique()) == list(range(1, epochs + 1))
    final = curves[curves["epoch"] == epochs].sort_values("seed")["value"].to_numpy()
    expected = data.cell("noise").sort_values("seed")["final.test_accuracy"].to_numpy() * 100
    assert final == pytest.approx(expected)
    learns, claim = evaluate_claims(data, "cmd")
    assert learns["verdict"] in ("reproduced", "not reproduced")
    assert claim["verdict"] in ("reproduced", "not reproduced")
    assert claim["ours"]["paired"]["n_pairs"] == seeds


def test_copied_real_run_dir_reads_back(tmp_path: Path) -> None:
    if not REAL_RUN.is_dir():
        pytest.skip("no copy of a real run dir in tests/reporting/data")
    root = tmp_path / "multirun" / "demo"
    shutil.copytree(REAL_RUN, root / "demo" / "default")
    seeds = json.loads((REAL_RUN / "summary.json").read_text())["num_replicas"] // 2
    _check_demo_run(root, seeds)


@pytest.mark.slow
def test_engine_demo_run_round_trip(tmp_path: Path) -> None:
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(tmp_path / "out"), "WANDB_MODE": "disabled"}
    command = [
        sys.executable,
        "-m",
        "repro.train",
        "-m",
        "experiment=demo",
        "sweep_name=demo",
        "trainer.epochs=2",
        "replicas.seeds=2",
        "trainer.progress=never",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_demo_run(tmp_path / "out" / "multirun" / "demo", seeds=2)
    figures = subprocess.run(
        [sys.executable, "-m", "repro.figures", "demo", "--out-dir", str(tmp_path / "figs")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert figures.returncode == 0, figures.stderr
    claims = json.loads((tmp_path / "figs" / "claims.json").read_text())["claims"]
    assert claims[0]["verdict"] != "not run"
    assert (tmp_path / "figs" / "curves.png").stat().st_size > 5000
