"""The Neelakantan training-budget study: budgets read off per-epoch evaluations, every claim
judged at every budget, missing budgets `not run`, runs of another config never used.

Fabricated run dirs (factory.py) whose config is the budget-study config of a Table 1 cell
(``experiment=<cell> +budget=neelakantan2015_b<batch>``); accuracies are in percent,
seed-major over learning rates (0.1, 0.01): 8 values -> 4 seeds x 2 learning rates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from repro.figures import neelakantan2015_budget as study
from repro.figures.cli import main as figures_main
from repro.figures.data import load_paper_data
from repro.figures.identity import composed_config
from repro.run_identity import config_differences

from .factory import grid, make_job

P = "neelakantan2015/"
CHANCE = [11.35] * 8
LIFTED = [60, 45, 55, 50, 52, 48, 58, 42]  # mean 51.25: +39.9 over chance, paper +39.6
REPO = Path(__file__).resolve().parents[2]


def study_job(
    root: Path,
    key: str,
    batch: int,
    at: Mapping[int, Sequence[float]],
    epochs: int,
    overrides: Sequence[str] = (),
) -> Path:
    """A finished budget-study job of Table 1 cell ``key`` trained ``epochs`` epochs.

    ``at`` maps epochs to the replicas' test accuracies (percent); epoch e is given the values
    of the first listed epoch >= e, so a budget read at a listed epoch sees exactly its values.
    """
    listed = sorted(at)
    final = at[listed[-1]]
    options = [f"+budget=neelakantan2015_b{batch}", *overrides]
    job = make_job(root / f"{key}_b{batch}", P + key, grid(final), overrides=options, epochs=epochs)
    lines = []
    for epoch in range(1, epochs + 1):
        values = at[next((e for e in listed if e >= epoch), listed[-1])]
        lines.append(
            {
                "epoch": epoch,
                "step": epoch * (60_000 // batch),
                "test_accuracy": [v / 100.0 for v in values],
                "diverged": [False] * len(values),
            }
        )
    (job / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return job


def by_budget(root: Path, overrides: Sequence[str] = ()) -> dict[tuple[str, str], dict]:
    data = load_paper_data(study.PAPER, [root], overrides)
    return {(e["id"], study.Budget(**_budget(e)).key): e for e in study.budget_claims(data, "c")}


def _budget(entry: dict) -> dict:
    return {k: entry["budget"][k] for k in ("batch_size", "epochs")}


def test_claim1_holds_at_60_epochs_not_at_15_and_batch64_not_run(tmp_path: Path) -> None:
    study_job(tmp_path, "zero_clip10", 128, {60: CHANCE}, epochs=60)
    study_job(tmp_path, "zero_clip10_noise", 128, {30: CHANCE, 60: LIFTED}, epochs=60)
    verdicts = by_budget(tmp_path)
    assert len(verdicts) == len(study.BUDGETS) * 8
    assert verdicts[("1", "b128_e15")]["verdict"] == "not reproduced"
    assert verdicts[("1", "b128_e30")]["verdict"] == "not reproduced"
    at60 = verdicts[("1", "b128_e60")]
    assert at60["verdict"] == "reproduced"
    assert at60["effect"]["estimate"] == pytest.approx(np.mean(LIFTED) - 11.35)
    assert at60["effect"]["n"] == 8
    assert at60["budget"] == {"batch_size": 128, "epochs": 60, "steps": 28_080, "headline": False}
    assert verdicts[("1", "b128_e15")]["budget"]["headline"] is True
    for budget in ("b64_e7", "b64_e15"):
        assert verdicts[("1", budget)]["verdict"] == "not run"
    # Cells of the other claims are not part of the study.
    assert verdicts[("4", "b128_e60")]["verdict"] == "not run"
    assert "not in the pre-registered budget study" in verdicts[("4", "b128_e60")]["reason"]
    # Claims 2a / 3b: their cells have no runs at all.
    assert verdicts[("2a", "b128_e15")]["verdict"] == "not run"
    assert "not in the" not in verdicts[("2a", "b128_e15")]["reason"]


def test_budget_beyond_the_runs_is_not_run(tmp_path: Path) -> None:
    """A sweep run with trainer.epochs=20 reaches budget 15, not 30 or 60."""
    short = ["trainer.epochs=20"]
    study_job(tmp_path, "zero_clip10", 128, {20: CHANCE}, epochs=20, overrides=short)
    study_job(tmp_path, "zero_clip10_noise", 128, {20: LIFTED}, epochs=20, overrides=short)
    verdicts = by_budget(tmp_path, short)
    assert verdicts[("1", "b128_e15")]["verdict"] == "reproduced"
    for budget in ("b128_e30", "b128_e60"):
        assert verdicts[("1", budget)]["verdict"] == "not run"


def test_runs_of_another_config_are_not_used(tmp_path: Path) -> None:
    """Table 1 runs (15 epochs, no +budget) and a budget run with another base seed carry
    the cells' names but not their config: listed as mismatches, every budget not run."""
    make_job(tmp_path / "t1", P + "zero_clip10", grid(CHANCE), epochs=15)
    study_job(tmp_path, "zero_clip10_noise", 128, {60: LIFTED}, epochs=60, overrides=["seed=3"])
    data = load_paper_data(study.PAPER, [tmp_path])
    assert not data.frames
    # Each job is named like the cell at both batch sizes and matches neither.
    assert {m.cell for m in data.mismatches} == {
        f"{key}@b{batch}" for key in ("zero_clip10", "zero_clip10_noise") for batch in (128, 64)
    }
    verdicts = by_budget(tmp_path)
    assert {verdicts[("1", b.key)]["verdict"] for b in study.BUDGETS} == {"not run"}


def test_stats_per_budget_match_numpy(tmp_path: Path) -> None:
    early = [11.35, 11.35, 13.0, 11.35, 20.0, 11.35, 11.35, 11.35]
    late = [96.0, 95.0, 97.5, 94.0, 95.5, 96.5, 93.0, 97.0]
    study_job(tmp_path, "he_clip10", 64, {7: early, 15: late}, epochs=15)
    stats = study.budget_stats(load_paper_data(study.PAPER, [tmp_path]))
    he = stats[(stats["cell"] == "he_clip10") & (stats["batch_size"] == 64)].set_index("epochs")
    assert he.loc[7, "best"] == pytest.approx(20.0)
    assert he.loc[7, "mean"] == pytest.approx(np.mean(early))
    assert he.loc[7, "left_chance"] == 2  # 13.0 and 20.0 are above 12.4 %
    assert he.loc[15, "mean"] == pytest.approx(np.mean(late))
    assert he.loc[15, "left_chance"] == 8
    assert he.loc[15, "steps"] == 14_055
    others = stats[(stats["cell"] != "he_clip10") | (stats["batch_size"] != 64)]
    assert (others["n"] == 0).all()


def test_cli_writes_figure_table_and_claims_per_budget(tmp_path: Path) -> None:
    runs, out = tmp_path / "runs", tmp_path / "out"
    study_job(runs, "zero_clip10", 128, {60: CHANCE}, epochs=60)
    study_job(runs, "zero_clip10_noise", 128, {30: CHANCE, 60: LIFTED}, epochs=60)
    assert figures_main([study.NAME, "--runs", str(runs), "--out-dir", str(out)]) == 0
    for name in ("budget.png", "budget.pdf", "budget.md", "budget_claims.json", "README.md"):
        assert (out / name).is_file(), name
    payload = json.loads((out / "budget_claims.json").read_text())
    assert payload["headline"] == study.HEADLINE.as_dict()
    assert payload["command"].endswith(f"--runs {runs} --out-dir {out}")
    assert len(payload["claims"]) == len(study.BUDGETS) * 8
    table = (out / "budget.md").read_text()
    assert "Runs used: 2 jobs, 0.4 minutes of wall time in all." in table  # 2 x 12.5 s
    # zero init with noise: at chance (0 of 8 left) at 15 and 30 epochs, all 8 left at 60.
    row = next(line for line in table.splitlines() if line.startswith("| zero_clip10_noise "))
    assert row.count("11.3 / 11.3 (0/8)") == 2
    assert "60.0 / 51.2 (8/8)" in row
    assert row.count("not run") == 2  # the batch 64 budgets
    claim1 = next(line for line in table.splitlines() if line.startswith("| 1 "))
    assert "reproduced (+39.9 [" in claim1
    # This directory has no headline claims: its README points to where the verdicts are.
    claims_section = (out / "README.md").read_text().split("## Claims")[1].split("## Files")[0]
    assert "budget_claims.json" in claims_section and "| claim |" not in claims_section


def test_budgets_are_the_configs() -> None:
    """The pre-registered budgets: the longest of each batch size is its config's epochs,
    and every batch 64 budget is the integer epoch nearest to a batch 128 budget's steps."""
    for batch in study.BATCH_SIZES:
        config = yaml.safe_load(
            (REPO / "conf/budget" / f"neelakantan2015_b{batch}.yaml").read_text()
        )
        assert config["trainer"]["batch_size"] == batch
        assert config["trainer"]["epochs"] == max(
            b.epochs for b in study.BUDGETS if b.batch_size == batch
        )
    reference = [b.steps for b in study.BUDGETS if b.batch_size == 128]
    assert reference == [7020, 14040, 28080]
    batch64 = [b.epochs for b in study.BUDGETS if b.batch_size == 64]
    # 937 steps per epoch: the nearest integer epochs to 7,020 and 14,040 steps (7.49, 14.98).
    assert batch64 == [round(steps / (60_000 // 64)) for steps in reference[: len(batch64)]]


@pytest.mark.parametrize("batch", [128, 64])
def test_budget_config_differs_from_the_table1_cell_only_in_the_budget(batch: int) -> None:
    for key in ("zero_clip10_noise", "simple_noclip", "he_clip10"):
        cell = composed_config([f"experiment={P}{key}"])
        budget = composed_config([f"experiment={P}{key}", study.budget_option(batch)])
        assert set(config_differences(cell, budget)) <= {
            "sweep_name",
            "trainer.batch_size",
            "trainer.epochs",
        }
        assert budget["sweep_name"] == study.SWEEP
        assert budget["trainer"]["batch_size"] == batch
