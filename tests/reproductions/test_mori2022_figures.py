"""Mori et al. 2022 figures module on synthetic run records: each claim's verdict at the
boundaries of its rule (repro/figures/mori2022.py), and the whole output set."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from repro.figures.claims import evaluate_claims
from repro.figures.data import load_paper_data
from repro.figures.generate import generate
from repro.figures.identity import composed_config
from repro.figures.mori2022 import PAPER

LRS, SIZES = (0.01, 0.1, 1.0), (1, 2, 4, 8, 16)


def _job(root: Path, cell: str, replicas: list[dict], arrays: dict | None = None) -> Path:
    job = root / cell
    job.mkdir(parents=True)
    config = composed_config([f"experiment=mori2022/{cell}"])
    (job / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    metadata = {"wall_time_s": 1.0, "end_time": "2026-01-01T00:00:00+00:00"}
    summary = {"experiment": f"mori2022/{cell}", "status": "finished", "replicas": replicas}
    summary["metadata"] = metadata
    (job / "summary.json").write_text(json.dumps(summary))
    if arrays is not None:
        np.savez(job / "dynamics.npz", **arrays)
    return job


def _replica(index: int, seed: int, hparams: dict, final: dict) -> dict:
    return {"index": index, "seed": seed, "hparams": hparams, "final": final, "diverged": False}


def phi_job(root: Path, deviation: float, runs: int = 2) -> None:
    """phi = (1 + deviation) x theory at lr <= 0.1, half the theory at lr 1 (not judged)."""
    replicas = []
    for lr in LRS:
        for b in SIZES:
            theory = 1 + b / lr
            for run in range(runs):
                scale = 0.5 if lr == 1.0 else 1 + deviation + 0.001 * (run - 0.5)
                final = {"phi": scale * theory, "phi_theory": theory}
                final["relative_deviation"] = scale - 1
                replicas.append(_replica(len(replicas), run, {"lr": lr, "batch_size": b}, final))
    _job(root, "phi", replicas)


def escape_job(root: Path, deviation: float, censored: bool = False) -> None:
    """Mean passage steps exactly 1e3 c^slope with slope = (1 + deviation) x theory."""
    replicas, arrays = [], {"learning_rate": np.array(0.1), "batch_size": np.array(1)}
    for index, dim in enumerate((2, 6, 10)):
        theory = 11 - dim / 2
        c = np.array([1.5, 2.0, 3.0])
        steps = np.tile(np.round(1e3 * c ** (theory * (1 + deviation))), (20, 1)).astype(int)
        if censored:
            steps[0, -1] = -1
        arrays |= {f"passage_steps_d{dim}": steps, f"thresholds_d{dim}": c}
        final = {"slope_theory": theory, "censored": int(censored)}
        replicas.append(_replica(index, 0, {"dim": dim}, final))
    _job(root, "escape", replicas, arrays)


def _metrics(job: Path, records: Sequence[dict]) -> None:
    (job / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def noise_job(root: Path, exponent: float, decay: float = 0.1) -> None:
    """N = 3 L^exponent late (epochs 11-20), N = L^0.3 early; L = 0.5 exp(-decay epoch)."""
    job = _job(root, "noise_vs_loss", [_replica(r, r, {}, {}) for r in range(3)])
    records = []
    for epoch in range(1, 21):
        loss = [0.5 * np.exp(-decay * epoch) * (1 + 0.01 * r) for r in range(3)]
        power = exponent if epoch > 10 else 0.3
        records.append({"epoch": epoch, "noise/loss": loss,
                        "noise/noise_strength": [3 * v**power for v in loss]})  # fmt: skip
    _metrics(job, records)


def spectrum_job(root: Path, ratio: float) -> None:
    job = _job(root, "spectrum", [_replica(r, r, {}, {}) for r in range(2)])
    decoupled = [[10.0 / (i + 1) for i in range(10)]] * 2
    exact = [[ratio * v for v in row] for row in decoupled]
    _metrics(job, [{"epoch": 50, "spectrum/exact": exact, "spectrum/decoupled": decoupled}])


def _verdicts(root: Path) -> dict[str, dict]:
    data = load_paper_data(PAPER, [root])
    return {entry["id"]: entry for entry in evaluate_claims(data, "test")}


@pytest.mark.parametrize(
    ("deviation", "runs", "verdict"),
    [
        (0.095, 2, "reproduced"),
        (-0.095, 2, "reproduced"),
        (0.15, 2, "reproduced qualitatively"),
        (0.25, 2, "not reproduced"),
        (0.0, 1, "inconclusive"),  # one run: no interval
    ],
)
def test_phi_claim_boundaries(tmp_path: Path, deviation: float, runs: int, verdict: str):
    phi_job(tmp_path, deviation, runs)
    entry = _verdicts(tmp_path)["M1"]
    assert entry["verdict"] == verdict
    assert "at lr 1 the deviation is -50%" in entry["finding"]  # shown, never judged


@pytest.mark.parametrize(
    ("deviation", "censored", "verdict"),
    [
        (0.14, False, "reproduced"),
        (-0.14, False, "reproduced"),
        (0.2, False, "reproduced qualitatively"),
        (0.35, False, "not reproduced"),
        (0.0, True, "inconclusive"),
    ],
)
def test_escape_claim_boundaries(tmp_path: Path, deviation: float, censored: bool, verdict: str):
    escape_job(tmp_path, deviation, censored)
    entry = _verdicts(tmp_path)["M2"]
    assert entry["verdict"] == verdict
    if not censored:  # identical runs: the bootstrap interval is the point
        assert entry["effect"]["estimate"] == pytest.approx(deviation, abs=2e-3)


@pytest.mark.parametrize(
    ("exponent", "decay", "verdict"),
    [
        (1.18, 0.1, "reproduced"),
        (0.82, 0.1, "reproduced"),
        (1.3, 0.1, "reproduced qualitatively"),
        (1.5, 0.1, "not reproduced"),
        (1.0, 0.01, "inconclusive"),  # L falls only 1.1x over the late window
    ],
)
def test_noise_claim_boundaries(tmp_path: Path, exponent: float, decay: float, verdict: str):
    noise_job(tmp_path, exponent, decay)
    entry = _verdicts(tmp_path)["M3"]
    assert entry["verdict"] == verdict
    if verdict != "inconclusive":
        assert entry["effect"]["estimate"] == pytest.approx(exponent, abs=1e-6)
        assert "early slope 0.30" in entry["finding"]


@pytest.mark.parametrize(
    ("ratio", "verdict"),
    [(1.45, "reproduced"), (1 / 1.45, "reproduced"), (2.0, "reproduced qualitatively"),
     (3.0, "not reproduced")],
)  # fmt: skip
def test_spectrum_claim_boundaries(tmp_path: Path, ratio: float, verdict: str) -> None:
    spectrum_job(tmp_path, ratio)
    assert _verdicts(tmp_path)["M4"]["verdict"] == verdict


def test_missing_cells_are_not_run(tmp_path: Path) -> None:
    phi_job(tmp_path, 0.0)
    verdicts = _verdicts(tmp_path)
    assert [verdicts[k]["verdict"] for k in ("M2", "M3", "M4")] == ["not run"] * 3


def test_every_output_is_written(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    phi_job(runs, 0.02)
    escape_job(runs, 0.05)
    noise_job(runs, 1.0)
    spectrum_job(runs, 1.1)
    out = tmp_path / "figures"
    result = generate(PAPER, [runs], out, "python -m repro.figures mori2022")
    names = {path.name for path in result["files"]}
    for figure in ("phi_vs_batch", "escape_times", "noise_vs_loss", "noise_spectrum"):
        assert {f"{figure}.png", f"{figure}.pdf"} <= names
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert [c["verdict"] for c in claims] == ["reproduced"] * 4
    assert "M1" in (out / "README.md").read_text()
