"""Neelakantan et al. 2015: the training-budget study (arXiv:1511.06807, Section 4.1).

The paper states neither epochs nor batch size, and our verdict on claim 1 (zero init) depends
on them. Pre-registered in ``paper_figures/neelakantan2015/budget/PREREGISTRATION.md`` and in
``conf/budget/neelakantan2015_b{128,64}.yaml``: the Table 1 cells of claims 1-3 (zero init
clip 10; simple init no clip and clip 10; He init clip 10; each with and without noise,
40 replicas) run once per batch size for the longest budget and are read at every budget:

- batch 128: epochs 15, 30, 60 (7,020 / 14,040 / 28,080 steps; 60000 // 128 = 468 per epoch);
- batch 64: epochs 7 and 15 (6,559 / 14,055 steps, the integer epochs nearest to the same
  step counts; 937 steps per epoch).

Reading a budget off a longer run is exact here: the learning rate is constant and the noise
variance ``eta / t^0.55`` depends on the step alone, so after epoch e the longer run is in the
state an e-epoch run ends in (tests/reproductions/test_neelakantan_budget.py checks it through
the command line). Per run and budget our number is the test accuracy evaluated after that
epoch. Every claim of :mod:`repro.figures.neelakantan2015` is judged at every budget with its
own rule (the same :class:`~repro.figures.verdicts.Claim` objects); claims whose cells are not
in the study, and budgets without runs, are ``not run``. The headline verdict stays the one
of the Table 1 sweep (batch 128, 15 epochs, chosen on the no-noise baselines); this study
shows where each claim holds.

Outputs (``python -m repro.figures neelakantan2015_budget``): ``budget.{png,pdf}`` (accuracy vs
budget), ``budget.md`` (best / mean / share of runs that left chance per cell and budget, and
the verdict of every claim at every budget), ``budget_claims.json`` (every claim x budget, in
the claims.json schema plus the budget), and the generic ``tables.md`` (the longest budget of
each batch size), ``replicas.csv`` and ``README.md``.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from repro.aggregate import markdown_table
from repro.figures import neelakantan2015 as table1
from repro.figures.claims import evaluate_claim
from repro.figures.core import (
    NOT_RUN,
    Cell,
    PaperData,
    PaperSpec,
    TableSpec,
    save_figure,
)
from repro.figures.files import write_json, write_text
from repro.figures.identity import CellRuns

NAME = "neelakantan2015_budget"
SWEEP = "neelakantan2015_budget"
NUM_TRAIN = 60_000  # MNIST training images; the engine drops the last N mod batch each epoch
BUDGET_METRIC = "budget.test_accuracy"  # test accuracy after the budget's epoch (fraction)
CHANCE_MAX = table1.CHANCE_MAX  # a run above this "left chance"

# The Table 1 cells of the study (claims 1, 2a, 2c, 3b); the other claims' cells are not run.
STUDY_KEYS = (
    "zero_clip10",
    "zero_clip10_noise",
    "simple_noclip",
    "simple_noclip_noise",
    "simple_clip10",
    "simple_clip10_noise",
    "he_clip10",
    "he_clip10_noise",
)


@dataclasses.dataclass(frozen=True)
class Budget:
    """A training budget: ``epochs`` at ``batch_size`` (read off the batch size's one run)."""

    batch_size: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.epochs * (NUM_TRAIN // self.batch_size)

    @property
    def key(self) -> str:
        return f"b{self.batch_size}_e{self.epochs}"

    @property
    def label(self) -> str:
        return f"batch {self.batch_size}, {self.epochs} epochs ({self.steps:,} steps)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps": self.steps,
            "headline": self == HEADLINE,
        }


# Pre-registered (PREREGISTRATION.md); the longest budget of a batch size is the epochs of its
# config conf/budget/neelakantan2015_b<batch>.yaml (tests check both agree).
BUDGETS = (
    Budget(128, 15),
    Budget(128, 30),
    Budget(128, 60),
    Budget(64, 7),
    Budget(64, 15),
)
HEADLINE = Budget(128, 15)  # the Table 1 protocol, chosen on the no-noise baselines
BATCH_SIZES = tuple(dict.fromkeys(b.batch_size for b in BUDGETS))


def budget_option(batch_size: int) -> str:
    """The Hydra override that turns a Table 1 cell into its budget-study run."""
    return f"+budget={table1.PREFIX.rstrip('/')}_b{batch_size}"


def study_key(key: str, batch_size: int) -> str:
    return f"{key}@b{batch_size}"


def _study_cell(key: str, batch_size: int) -> Cell:
    base = next(cell for cell in table1.CELLS if cell.key == key)
    return Cell(
        key=study_key(key, batch_size),
        name=base.name,
        paper=base.paper,
        experiment=base.experiment_option,
        overrides=(budget_option(batch_size),),
    )


CELLS = tuple(_study_cell(key, batch) for batch in BATCH_SIZES for key in STUDY_KEYS)


def _table1_rows(batch_size: int) -> tuple[tuple[str, tuple[str, str]], ...]:
    rows = dict(table1.TABLES[0].rows)
    return tuple(
        (label, (study_key(no_noise, batch_size), study_key(noise, batch_size)))
        for label, (no_noise, noise) in rows.items()
        if no_noise in STUDY_KEYS and noise in STUDY_KEYS
    )


def _longest(batch_size: int) -> Budget:
    return max((b for b in BUDGETS if b.batch_size == batch_size), key=lambda b: b.epochs)


TABLES = tuple(
    TableSpec(
        key=f"b{batch}",
        title=f"Longest budget at batch {batch}: {_longest(batch).label}, test accuracy % "
        "(best / average over runs)",
        columns=("no noise", "with noise"),
        rows=_table1_rows(batch),
        note="Paper: Table 1 (budget not stated). Every budget: budget.md.",
    )
    for batch in BATCH_SIZES
)


# ----------------------------------------------------------------------------- per budget


def frame_at_epoch(data: PaperData, key: str, epoch: int) -> pd.DataFrame:
    """The replicas of study cell ``key`` with BUDGET_METRIC and ``diverged`` after ``epoch``.

    Values come from each job's metrics.jsonl record of that epoch; a replica whose job has no
    such record (a shorter run) is left out, so a budget beyond the runs is not run.
    """
    frame = data.cell(key)
    if frame.empty:
        return frame
    kept = []
    for job_path, rows in frame.groupby("job", sort=False):
        record = next((r for r in data.metrics(job_path) if r.get("epoch") == epoch), None)
        if record is None or not isinstance(record.get("test_accuracy"), list):
            continue
        accuracy, diverged = record["test_accuracy"], record.get("diverged") or []
        rows = rows.copy()
        replicas = rows["replica"].astype(int)
        rows[BUDGET_METRIC] = [_at(accuracy, i, np.nan) for i in replicas]
        rows["diverged"] = [bool(_at(diverged, i, False)) for i in replicas]
        rows["budget.epoch"] = epoch
        kept.append(rows)
    return pd.concat(kept, ignore_index=True) if kept else frame.iloc[0:0]


def _at(values: Sequence[Any], index: int, default: Any) -> Any:
    value = values[index] if index < len(values) else None
    return default if value is None else value


def budget_view(data: PaperData, budget: Budget) -> PaperData:
    """The study at one budget as Table 1 data: cells keyed as in Table 1, BUDGET_METRIC.

    Every cell of :mod:`repro.figures.neelakantan2015` is in the view (so every claim can be
    judged); cells outside the study have no runs, hence ``not run``.
    """
    cells, runs, frames = [], {}, {}
    for cell in table1.CELLS:
        if cell.key in STUDY_KEYS:
            source = data.spec.cell(study_key(cell.key, budget.batch_size))
            cell = dataclasses.replace(source, key=cell.key)
            runs[cell.key] = data.runs.get(source.key, CellRuns((), ()))
            frame = frame_at_epoch(data, source.key, budget.epochs)
            if not frame.empty:
                frames[cell.key] = frame.assign(cell=cell.key)
        else:
            runs[cell.key] = CellRuns((), ())
        cells.append(cell)
    spec = dataclasses.replace(
        table1.PAPER,
        name=f"{NAME}[{budget.key}]",
        cells=tuple(cells),
        tables=(),
        metric=BUDGET_METRIC,
        sweeps=(SWEEP,),
    )
    return dataclasses.replace(data, spec=spec, runs=runs, frames=frames)


def budget_claims(data: PaperData, command: str) -> list[dict[str, Any]]:
    """Every Table 1 claim judged at every budget: claims.json entries plus ``budget``."""
    entries = []
    for budget in BUDGETS:
        view = budget_view(data, budget)
        for claim in table1.CLAIMS:
            entry = evaluate_claim(view, claim, command)
            outside = [key for key in claim.cells if key not in STUDY_KEYS]
            if outside:
                entry["reason"] = "not in the pre-registered budget study: " + ", ".join(outside)
            entries.append({"budget": budget.as_dict(), **entry})
    return entries


def budget_stats(data: PaperData) -> pd.DataFrame:
    """One row per study cell and budget: n, best, mean, runs above chance (percent)."""
    rows = []
    for budget in BUDGETS:
        view = budget_view(data, budget)
        for key in STUDY_KEYS:
            values = view.values(key)
            row = {"cell": key, **budget.as_dict(), "n": int(values.size)}
            if values.size:
                left = int((values > CHANCE_MAX).sum())
                row |= {"best": values.max(), "mean": values.mean(), "left_chance": left}
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- outputs


def _budget_columns() -> list[str]:
    headline = {HEADLINE: " [headline]"}
    return [
        f"b{b.batch_size} {b.epochs} ep ({b.steps:,} steps){headline.get(b, '')}" for b in BUDGETS
    ]


def stats_markdown(stats: pd.DataFrame) -> str:
    """Markdown: rows = cells, columns = budgets, entries best / mean (left chance k/n)."""
    body = []
    for key in STUDY_KEYS:
        line = [key]
        for budget in BUDGETS:
            row = stats[(stats["cell"] == key) & (stats["epochs"] == budget.epochs)]
            row = row[row["batch_size"] == budget.batch_size].iloc[0]
            if row["n"] == 0:
                line.append(NOT_RUN)
            else:
                line.append(
                    f"{row['best']:.1f} / {row['mean']:.1f} "
                    f"({int(row['left_chance'])}/{int(row['n'])})"
                )
        body.append(line)
    return markdown_table(pd.DataFrame(body, columns=["cell", *_budget_columns()]))


def _verdict_text(entry: dict[str, Any]) -> str:
    effect = entry.get("effect")
    if entry["verdict"] == NOT_RUN or not effect:
        return entry["verdict"]
    low, high = effect["interval"]
    return f"{entry['verdict']} ({effect['estimate']:+.1f} [{low:+.1f}, {high:+.1f}])"


def verdicts_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """Markdown: rows = claims, columns = budgets, entries verdict (effect [95 % CI])."""
    by_claim: dict[str, list[str]] = {}
    settings: dict[str, str] = {}
    for entry in entries:
        by_claim.setdefault(entry["id"], []).append(_verdict_text(entry))
        settings[entry["id"]] = entry["setting"]
    body = [[claim_id, settings[claim_id], *texts] for claim_id, texts in by_claim.items()]
    return markdown_table(pd.DataFrame(body, columns=["claim", "setting", *_budget_columns()]))


def wall_time_line(data: PaperData) -> str:
    """How long the runs used took: their summary.json wall times, summed."""
    walls = [job.metadata.get("wall_time_s") for job in data.jobs]
    total = sum(w for w in walls if isinstance(w, int | float))
    return f"Runs used: {len(data.jobs)} jobs, {total / 60:.1f} minutes of wall time in all."


def budget_markdown(data: PaperData, entries: Sequence[dict[str, Any]], command: str) -> str:
    stats = budget_stats(data)
    return "\n".join(
        [
            "# Neelakantan et al. 2015: accuracy and verdicts vs training budget\n",
            "Pre-registered: `PREREGISTRATION.md`. Regenerate with:\n",
            f"```bash\n{command}\n```\n",
            wall_time_line(data) + "\n",
            "## Test accuracy % after each budget\n",
            f"Best / mean over a cell's replicas (runs above {CHANCE_MAX} %, i.e. that left "
            "chance, / replicas); `not run`: no finished run of the cell's config reaches the "
            "budget.\n",
            stats_markdown(stats) + "\n",
            "## Verdict of every claim at every budget\n",
            "Rules: `repro/figures/neelakantan2015.py` (the Table 1 claims, unchanged); effect = "
            "paired mean difference in points with its 95 % t-interval. The headline verdict "
            "is the Table 1 sweep's (batch 128, 15 epochs): `../claims.json`.\n",
            verdicts_markdown(entries) + "\n",
        ]
    )


_PANELS = (
    ("zero init, clip 10", "zero_clip10", "zero_clip10_noise"),
    ("simple init, no clipping", "simple_noclip", "simple_noclip_noise"),
    ("simple init, clip 10", "simple_clip10", "simple_clip10_noise"),
    ("He init, clip 10", "he_clip10", "he_clip10_noise"),
)
_STYLES = {128: "-", 64: "--"}


def _step_axis(ax: plt.Axes) -> None:
    """Log-2 step axis with a tick at every batch 128 budget (the batch 64 ones are within 7 %)."""
    reference = [b for b in BUDGETS if b.batch_size == max(BATCH_SIZES)]
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(b.steps for b in BUDGETS) / 1.2, max(b.steps for b in BUDGETS) * 1.2)
    ax.set_xticks(
        [b.steps for b in reference], [f"{b.steps:,}\n({b.epochs} ep)" for b in reference]
    )
    ax.minorticks_off()


def plot_budgets(stats: pd.DataFrame, out_dir: Path) -> list[Path]:
    """budget.{png,pdf}: mean (line) and best (markers) test accuracy vs steps, per init."""
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(4 * len(_PANELS), 3.6), sharey=True)
    for ax, (title, no_noise, noise) in zip(axes, _PANELS, strict=True):
        for key, label, color in ((no_noise, "no noise", "C0"), (noise, "noise", "C1")):
            for batch in BATCH_SIZES:
                rows = stats[(stats["cell"] == key) & (stats["batch_size"] == batch)]
                rows = rows[rows["n"] > 0].sort_values("steps")
                if rows.empty:
                    continue
                style = _STYLES.get(batch, ":")
                ax.plot(rows["steps"], rows["mean"], style, color=color, label=f"{label}, b{batch}")
                ax.plot(rows["steps"], rows["best"], "^", color=color, markersize=5)
        if not ax.lines:
            ax.text(0.5, 0.5, NOT_RUN, ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
        ax.axhline(CHANCE_MAX, color="gray", linewidth=0.8, linestyle=":")
        _step_axis(ax)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"SGD steps (epochs at batch {max(BATCH_SIZES)})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(0, 100)
    fig.suptitle(
        "MNIST 20 x 50 ReLU vs training budget: line = mean over 40 runs, triangle = best run, "
        f"dotted = chance ({CHANCE_MAX} %)",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, out_dir, "budget")


def figures_command(data: PaperData, out_dir: Path) -> str:
    """The command that regenerates ``out_dir`` verbatim (run paths spelled out)."""
    argv = ["python", "-m", "repro.figures", NAME]
    if data.run_paths:
        argv += ["--runs", *map(str, data.run_paths)]
    if data.overrides:
        argv += ["--overrides", *data.overrides]
    return shlex.join([*argv, "--out-dir", str(out_dir)])


def write_budget_outputs(data: PaperData, out_dir: Path) -> list[Path]:
    """The study's own outputs (the PaperSpec ``plot`` hook): figure, budget.md, claims."""
    command = figures_command(data, out_dir)
    entries = budget_claims(data, command)
    files = plot_budgets(budget_stats(data), out_dir)
    files.append(write_text(out_dir / "budget.md", budget_markdown(data, entries, command)))
    payload = {
        "paper": NAME,
        "citation": table1.CITATION,
        "command": command,
        "overrides": list(data.overrides),
        "headline": HEADLINE.as_dict(),
        "budgets": [b.as_dict() for b in BUDGETS],
        "claims": entries,
    }
    files.append(write_json(out_dir / "budget_claims.json", payload))
    return files


PAPER = PaperSpec(
    name=NAME,
    title="Neelakantan et al. 2015, training-budget study (MNIST, 20 x 50 ReLU)",
    citation=table1.CITATION,
    cells=CELLS,
    tables=TABLES,
    claims=(),  # judged per budget: budget_claims.json and budget.md
    plot=write_budget_outputs,
    sweeps=(SWEEP,),
    script="scripts/neelakantan2015_budget.py",
    breakdown=table1.LEARNING_RATE,
    notes=(
        "Every claim at every budget: budget.md and budget_claims.json (this directory's "
        "claims.json is empty by design: the headline verdicts are ../claims.json).",
        "tables.md shows the final epoch of each run, i.e. the longest budget per batch size.",
    ),
)
