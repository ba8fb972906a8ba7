"""Mori & Ueda 2020 figures on synthetic run records: verdicts at their boundaries, both budget
rules, claim 1 from covariance.json, and the files the CLI writes.

Fabricated job dirs (tests/reporting/factory.py) carry the exact config of each cell, so they
are matched by identity like real runs; per-epoch test accuracies are written for the epochs
the budget rules read (20 and 40). Values are percent; replica s of every cell gets the same
seed offset, the treated arm a small extra offset, so paired differences are known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from repro.figures import mori2020 as paper
from repro.figures.claims import evaluate_claims
from repro.figures.cli import main as figures_main
from repro.figures.data import load_paper_data
from repro.figures.identity import composed_config
from tests.reporting.factory import make_job, replica

SEED_OFFSET = (0.0, 0.3, -0.3, 0.15, -0.15)
ARM_OFFSET = (0.02, -0.02, 0.01, -0.01, 0.0)  # enhanced arms only: sd 0.016 points
EPOCHS = 40


def _write_metrics(job: Path, per_epoch: Mapping[int, list[float]]) -> None:
    """Epoch e gets the values of the first listed epoch >= e (percent -> fraction)."""
    listed = sorted(per_epoch)
    lines = []
    for epoch in range(1, EPOCHS + 1):
        values = per_epoch[next((e for e in listed if e >= epoch), listed[-1])]
        record = {"epoch": epoch, "step": epoch, "test_accuracy": [v / 100 for v in values],
                  "diverged": [False] * len(values)}  # fmt: skip
        lines.append(json.dumps(record) + "\n")
    (job / "metrics.jsonl").write_text("".join(lines))


def plain_job(root: Path, batch: int, at: Mapping[int, float]) -> Path:
    """Plain SGD cell at ``batch``; ``at``: epoch -> mean accuracy (percent)."""
    values = {e: [m + o for o in SEED_OFFSET] for e, m in at.items()}
    final = values[max(values)]
    specs = [replica(s, v / 100, None) for s, v in enumerate(final)]
    job = make_job(root / f"sgd_b{batch}", f"mori2020/sgd_b{batch}", specs, epochs=EPOCHS)
    _write_metrics(job, values)
    return job


def enhanced_job(root: Path, batch: int, at: Mapping[int, Mapping[int, float]]) -> Path:
    """Enhanced cell at ``batch``; ``at``: epoch -> {B_eff: mean}; alpha-major replicas."""
    alphas = paper.ALPHAS[batch]
    values = {
        epoch: [
            means[paper.effective_batch(batch, a)] + o + d
            for a in alphas
            for o, d in zip(SEED_OFFSET, ARM_OFFSET, strict=True)
        ]
        for epoch, means in at.items()
    }
    final = values[max(values)]
    specs = [
        replica(i % 5, v / 100, None, hparams={paper.ALPHA: alphas[i // 5]})
        for i, v in enumerate(final)
    ]
    job = make_job(root / f"enhanced_b{batch}", f"mori2020/enhanced_b{batch}", specs, epochs=EPOCHS)
    _write_metrics(job, values)
    return job


def sweep(root: Path, large: Mapping[int, float], enhanced64: float, *, short_b1024=None):
    """Every cell: plain accuracy falls with B; enhanced at B_eff e equals plain at e, except
    B_eff = 64 at B = 1024 (``enhanced64``). ``large``: plain b256 / b1024 at epoch 40;
    ``short_b1024``: plain b1024 at epoch 20 (default: the same as at 40)."""
    plain = {64: 97.0, 128: 96.8, 512: 96.4} | dict(large)
    for batch, mean in plain.items():
        at20 = short_b1024 if batch == 1024 and short_b1024 is not None else mean
        plain_job(root, batch, {20: at20, 40: mean})
    for batch in paper.LARGE_BATCHES:
        means = {paper.effective_batch(batch, a): 0.0 for a in paper.ALPHAS[batch]}
        means = {e: plain[e] for e in means}
        if batch == 1024:
            means[64] = enhanced64
        enhanced_job(root, batch, {20: means, 40: means})


def headline(root: Path) -> dict[str, dict]:
    data = load_paper_data(paper.PAPER, [root])
    return {entry["id"]: entry for entry in evaluate_claims(data, "cmd")}


def test_alpha_grids_are_the_configs() -> None:
    for batch, alphas in paper.ALPHAS.items():
        config = composed_config([f"experiment=mori2020/enhanced_b{batch}"])
        assert tuple(config["replicas"]["grid"]["values"]) == alphas
    assert [paper.effective_batch(1024, a) for a in paper.ALPHAS[1024]] == [1024, 512, 256, 128, 64]


def test_headline_verdicts_at_their_margins(tmp_path: Path) -> None:
    # B = 1024: enhanced +0.8 over plain 1024 (>= 0.3), -0.2 from plain 64 (margin 0.5).
    sweep(tmp_path / "a", {256: 96.6, 1024: 96.0}, enhanced64=96.8)
    claims = headline(tmp_path / "a")
    assert claims["2-b1024"]["verdict"] == paper.REPRODUCED
    assert claims["2-b1024"]["effect"]["estimate"] == pytest.approx(0.8, abs=1e-6)
    assert claims["3-b1024"]["verdict"] == paper.REPRODUCED
    assert claims["4-b1024-beff128"]["verdict"] == paper.REPRODUCED  # same means: collapse
    # B = 256: enhanced at 64 equals plain 64 (97.0), +0.4 over plain 256 (96.6).
    assert claims["2-b256"]["verdict"] == paper.REPRODUCED
    # Claim 1 without covariance.json: not run.
    assert claims["1"]["verdict"] == paper.NOT_RUN

    # A gain of 0.25 (interval above 0, below the 0.3 margin) and a loss of 0.75 to B_s.
    sweep(tmp_path / "b", {256: 96.6, 1024: 96.0}, enhanced64=96.25)
    claims = headline(tmp_path / "b")
    assert claims["2-b1024"]["verdict"] == paper.NOT_REPRODUCED
    assert claims["2-b1024"]["effect"]["interval"][0] > 0
    assert claims["3-b1024"]["verdict"] == paper.NOT_REPRODUCED
    assert claims["4-b1024-beff64"]["verdict"] == paper.NOT_REPRODUCED  # -0.75: no collapse


def test_budget_rule_that_changes_the_verdict_is_reported_both_ways(tmp_path: Path) -> None:
    # Plain B = 1024 reaches 96.9 at epoch 40 but 96.0 at epoch 20; enhanced: 96.8 at 40.
    sweep(tmp_path, {256: 96.6, 1024: 96.9}, enhanced64=96.8, short_b1024=96.0)
    data = load_paper_data(paper.PAPER, [tmp_path])
    entries = {(e["id"], e["budget"]["key"]): e for e in paper.budget_claims(data, "cmd")}
    assert entries[("2-b1024", "examples")]["verdict"] == paper.NOT_REPRODUCED
    assert entries[("2-b1024", "steps")]["verdict"] == paper.REPRODUCED
    assert entries[("2-b1024", "steps")]["effect"]["estimate"] == pytest.approx(0.8, abs=1e-6)
    # The headline (claims.json) is the equal-examples rule.
    assert headline(tmp_path)["2-b1024"]["verdict"] == paper.NOT_REPRODUCED
    tables = {rule.key: paper.accuracy_by_b_eff(data, rule) for rule in paper.BUDGETS}
    row = tables["steps"].set_index("cell").loc["sgd_b1024"]
    assert row["mean"] == pytest.approx(96.0) and row["n"] == 5


def test_missing_cells_are_not_run(tmp_path: Path) -> None:
    plain_job(tmp_path, 64, {20: 97.0, 40: 97.0})
    claims = headline(tmp_path)
    assert {claims[key]["verdict"] for key in claims} == {paper.NOT_RUN}


def _measurement(ratio: float, half_width: float) -> dict:
    rows = [
        {"batch_size": b, "alpha": 0.8, "ratio": ratio,
         "ratio_interval": [ratio - half_width, ratio + half_width]}
        for b in paper.LARGE_BATCHES
    ]  # fmt: skip
    points = [{"point": p, "enhanced": rows} for p in ("init", "sgd")]
    return {"num_draws": 1000, "points": points}


@pytest.mark.parametrize(
    ("ratio", "half_width", "verdict"),
    [
        (1.049, 0.0009, paper.REPRODUCED),
        (0.96, 0.0099, paper.REPRODUCED),
        (1.051, 0.0009, paper.NOT_REPRODUCED),
        (0.94, 0.01, paper.NOT_REPRODUCED),
        (1.0, 0.051, paper.INCONCLUSIVE),  # the draws cannot resolve +-5 %
        (1.04, 0.011, paper.INCONCLUSIVE),
    ],
)
def test_claim1_judged_on_covariance_json(tmp_path: Path, ratio, half_width, verdict) -> None:
    tmp_path.joinpath(paper.COVARIANCE_FILE).write_text(json.dumps(_measurement(ratio, half_width)))
    entry = headline(tmp_path)["1"]
    assert entry["verdict"] == verdict
    assert len(entry["requirements"]) == 4  # 2 points x 2 large batches
    if verdict == paper.NOT_REPRODUCED:
        assert entry["reason"].startswith("fails:")


def test_cli_writes_figure_tables_budget_and_claims(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    sweep(runs, {256: 96.6, 1024: 96.0}, enhanced64=96.8)
    runs.joinpath(paper.COVARIANCE_FILE).write_text(json.dumps(_measurement(1.01, 0.02)))
    assert figures_main(["mori2020", "--runs", str(runs), "--out-dir", str(out)]) == 0
    for name in ("accuracy_vs_b_eff.png", "accuracy_vs_b_eff.pdf", "budget.md", "tables.md",
                 "budget_claims.json", "claims.json", "covariance.json", "README.md"):  # fmt: skip
        assert (out / name).is_file(), name
    claims = json.loads((out / "claims.json").read_text())["claims"]
    assert {c["id"]: c["verdict"] for c in claims}["1"] == paper.REPRODUCED
    budget = json.loads((out / "budget_claims.json").read_text())
    assert len(budget["claims"]) == 2 * len(paper.TRAINING_CLAIMS)
    assert "96.80 +- " in (out / "budget.md").read_text()


def test_claim1_measured_on_another_problem_is_not_used(tmp_path: Path) -> None:
    """A smoke run's covariance.json (another model) never judges the full runs' claim 1."""
    measurement = _measurement(1.0, 0.01) | {"overrides": ["model.width=8"]}
    tmp_path.joinpath(paper.COVARIANCE_FILE).write_text(json.dumps(measurement))
    entry = headline(tmp_path)["1"]
    assert entry["verdict"] == paper.NOT_RUN
    assert "model.width=8" in entry["finding"]
