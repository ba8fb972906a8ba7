"""The reporting layer against real engine output, through both command lines (default suite).

``python -m repro.train`` runs a small demo sweep (1 epoch, 2 seeds x 2 etas, a 2-layer MLP
so it compiles in seconds), then ``python -m repro.figures demo`` reads it back: the run's
config must match the cells' composed config (with the same overrides) and every number in
claims.json must be the engine's. Without the overrides the same runs are listed as another
config and no claim is judged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.aggregate import group_summary, load_runs

from .commands import REPO, run_module

SMOKE = ("trainer.epochs=1", "replicas.seeds=2", "model.depth=2")
SEEDS = 2


@pytest.fixture(scope="module")
def demo_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("out")
    env = {"REPRO_OUTPUT_ROOT": str(root)}
    argv = ["-m", "experiment=demo", "sweep_name=demo", *SMOKE, "trainer.progress=never"]
    result = run_module("repro.train", *argv, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, env


def test_engine_run_reads_back_as_a_table(demo_sweep) -> None:
    root, _ = demo_sweep
    collection = load_runs([root / "multirun" / "demo"])
    assert collection.unfinished == []
    frame = collection.frame()
    assert len(frame) == 2 * SEEDS
    assert frame["name"].unique().tolist() == ["demo"]
    assert frame["seed"].tolist() == list(range(SEEDS)) * 2  # grid-major, seed-minor
    assert frame["noise.eta"].tolist() == [0.0] * SEEDS + [0.3] * SEEDS
    grouped = group_summary(frame, ["noise.eta"]).set_index("noise.eta")
    accuracy = frame["final.test_accuracy"]
    assert grouped.loc[0.3, "mean"] == pytest.approx(accuracy[frame["noise.eta"] == 0.3].mean())


def test_cli_to_figures_round_trip(demo_sweep, tmp_path: Path) -> None:
    root, env = demo_sweep
    out = tmp_path / "figs"
    figures = run_module(
        "repro.figures", "demo", "--overrides", *SMOKE, "--out-dir", str(out), env=env, cwd=REPO
    )
    assert figures.returncode == 0, figures.stderr
    assert "2 of 2 cell(s) have runs of their config; 4 replica(s) used" in figures.stdout
    [job] = load_runs([root / "multirun" / "demo"]).finished
    finals = [r["final"]["test_accuracy"] * 100 for r in job.summary["replicas"]]
    learns, rescues = json.loads((out / "claims.json").read_text())["claims"]
    assert learns["verdict"] == ("reproduced" if max(finals) > 20 else "not reproduced")
    assert learns["requirements"][0]["value"] == pytest.approx(max(finals), rel=1e-5)
    # noise - no noise per seed; the engine's replica order is eta-major.
    differences = [finals[SEEDS + i] - finals[i] for i in range(SEEDS)]
    assert rescues["effect"]["n"] == SEEDS
    assert rescues["effect"]["estimate"] == pytest.approx(sum(differences) / SEEDS, abs=1e-3)
    assert rescues["runs"] == {"noise": [str(job.path)], "no_noise": [str(job.path)]}
    assert rescues["command"].endswith("--overrides " + " ".join(SMOKE) + f" --out-dir {out}")
    assert (out / "curves.png").stat().st_size > 5000

    # The same runs read for the full demo config: another config, so nothing is judged.
    full = tmp_path / "full"
    unmatched = run_module("repro.figures", "demo", "--out-dir", str(full), env=env, cwd=REPO)
    assert unmatched.returncode == 0, unmatched.stderr
    assert "trainer.epochs: 40 -> 1" in unmatched.stdout
    claims = json.loads((full / "claims.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["not run", "not run"]
