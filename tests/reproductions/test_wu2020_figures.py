"""Wu et al. 2020 figures and verdicts on synthetic run records: each rule at its boundary.

Accuracies are in percent per seed (5 seeds); the factory writes fractions, as the engine does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repro.figures.claims import evaluate_claims
from repro.figures.data import load_paper_data
from repro.figures.generate import generate
from repro.figures.wu2020 import PAPER
from tests.reporting.factory import RunFactory, replica

P = "wu2020/"
GD = [80.0, 81.0, 79.0, 80.5, 79.5]
FIT = [100.0] * 5
JITTER = [0.1, -0.1, 0.2, -0.2, 0.0]  # mean 0: spreads the paired differences


@pytest.fixture
def runs(tmp_path: Path) -> RunFactory:
    return RunFactory(tmp_path)


def cell(runs: RunFactory, key: str, test: list[float], train: list[float] = FIT) -> Path:
    """A finished job of cell `key`: per-seed final test and train accuracy (percent)."""
    replicas = [replica(seed, a / 100, None) for seed, a in enumerate(test)]
    job = runs.job(P + key, replicas, overrides=[f"experiment={P}{key}"])
    summary_path = job / "summary.json"
    summary = json.loads(summary_path.read_text())
    for record, accuracy in zip(summary["replicas"], train, strict=True):
        record["final"]["train_eval_accuracy"] = accuracy / 100
    summary_path.write_text(json.dumps(summary))
    return job


def shifted(values: list[float], by: float) -> list[float]:
    return [v + by for v in values]


def verdicts(root: Path) -> dict[str, dict]:
    return {c["id"]: c for c in evaluate_claims(load_paper_data(PAPER, [root]), "cmd")}


def test_no_runs_every_claim_not_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    claims = verdicts(tmp_path / "empty")
    assert sorted(claims) == ["1", "2a", "2b", "2c", "2d", "3"]
    assert {c["verdict"] for c in claims.values()} == {"not run"}


@pytest.mark.parametrize(
    ("sgd_shift", "gd_train", "verdict"),
    [
        ([2.0, 2.2, 1.8, 2.1, 1.9], FIT, "reproduced"),  # +2.0 [1.8, 2.2] >= 1.5
        ([1.4, 1.6, 1.2, 1.5, 1.3], FIT, "not reproduced"),  # +1.4 < 1.5: not clearly below
        ([2.0, 2.2, 1.8, 2.1, 1.9], [89.0] * 5, "inconclusive"),  # GD does not fit (89 < 90)
    ],
)
def test_claim1_gd_clearly_below_sgd(runs, sgd_shift, gd_train, verdict) -> None:
    cell(runs, "gd", GD, gd_train)
    cell(runs, "sgd", [g + s for g, s in zip(GD, sgd_shift, strict=True)])
    claim = verdicts(runs.root)["1"]
    assert claim["verdict"] == verdict
    assert claim["effect"]["estimate"] == pytest.approx(sum(sgd_shift) / 5)
    assert claim["effect"]["n"] == 5
    assert claim["preconditions"][0]["value"] == pytest.approx(sum(gd_train) / 5)


@pytest.mark.parametrize(
    ("closed", "verdict", "finding"),
    [
        (7.1, "reproduced", "fisher closes 71% of the +10.00 points gap"),
        (6.9, "not reproduced", "fisher closes 69% of the +10.00 points gap"),
    ],
)
def test_claim2_noise_class_closes_70_percent_of_the_gap(runs, closed, verdict, finding) -> None:
    cell(runs, "gd", GD)
    cell(runs, "sgd", shifted(GD, 10.0))
    # Per-seed jitter so the interval has width; its mean is `closed`.
    cell(runs, "fisher", [g + closed + j for g, j in zip(GD, JITTER, strict=True)])
    claims = verdicts(runs.root)
    claim = claims["2a"]
    assert claim["verdict"] == verdict
    assert claim["effect"]["estimate"] == pytest.approx(closed - 7.0)
    assert claim["effect"]["fraction_closed"] == pytest.approx(closed / 10.0)
    assert claim["finding"].startswith(finding)
    assert claims["2b"]["verdict"] == "not run"  # cov has no run


def test_claim2_without_a_clear_gap_is_inconclusive(runs) -> None:
    cell(runs, "gd", GD)
    cell(runs, "sgd", shifted(GD, 1.4))  # mean gap 1.4 < 1.5
    cell(runs, "cov", shifted(GD, 1.4))
    claim = verdicts(runs.root)["2b"]
    assert claim["verdict"] == "inconclusive"
    assert claim["reason"].startswith("precondition failed: mean(sgd) - mean(gd) >= 1.5")


@pytest.mark.parametrize(
    ("large_shift", "ghost_shift", "verdict"),
    [
        (-3.0, [0.5, 0.7, 0.3, 0.6, 0.4], "reproduced"),  # ghost +0.5 [0.3, 0.7] above 0
        (-3.0, [0.5, -0.5, 0.3, -0.3, 0.0], "not reproduced"),  # interval straddles 0
        (-1.0, [0.5, 0.7, 0.3, 0.6, 0.4], "inconclusive"),  # plain L=500 not clearly below SGD
    ],
)
def test_claim3_ghost_batch_beats_plain_large_batch(
    runs, large_shift, ghost_shift, verdict
) -> None:
    cell(runs, "gd", GD)
    cell(runs, "sgd", shifted(GD, 5.0))
    large = shifted(GD, 5.0 + large_shift)
    cell(runs, "large_batch", large)
    cell(runs, "large_batch_ghost", [a + s for a, s in zip(large, ghost_shift, strict=True)])
    claim = verdicts(runs.root)["3"]
    assert claim["verdict"] == verdict
    assert claim["effect"]["estimate"] == pytest.approx(sum(ghost_shift) / 5)


def test_outputs_bar_chart_and_gap_table(runs, tmp_path) -> None:
    cell(runs, "gd", GD, train=FIT)
    cell(runs, "sgd", shifted(GD, 2.0), train=[99.0] * 5)
    out = tmp_path / "figures"
    result = generate(PAPER, [runs.root], out, "python -m repro.figures wu2020")
    names = {path.name for path in result["files"]}
    assert {"classes.png", "classes.pdf", "gap.md", "claims.json", "tables.md"} <= names
    gap = (out / "gap.md").read_text()
    # GD: train 100, test mean 80.0, gap 20.0; SGD: train 99, test 82.0, gap 17.0.
    assert "| GD | 100.00 +- 0.00 (n=5) | 80.00 +- 0.79 (n=5) | 20.00 +- 0.79 (n=5) |" in gap
    assert "| SGD b=50 | 99.00 +- 0.00 (n=5) | 82.00 +- 0.79 (n=5) | 17.00 +- 0.79 (n=5) |" in gap
    assert "| Bernoulli | not run | not run | not run |" in gap
