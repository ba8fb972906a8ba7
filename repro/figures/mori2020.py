r"""Mori & Ueda 2020, "Improved generalization by noise enhancement" (arXiv:2009.13094).

**Update rule implemented** (:class:`repro.optim.NoiseEnhancement`; papers.md section 3 marks
it unconfirmed; derived here from the abstract: the noise must grow without changing the
learning rate, the batch size, or the mean gradient). Two independent minibatches
:math:`B_1, B_2` of size :math:`B` (the step draws 2B examples without replacement; a
uniformly random half is :math:`B_1`):

.. math:: g = (1+\alpha)\,\bar g_{B_1} - \alpha\,\bar g_{B_2}
          = \nabla \frac{1}{2B}\sum_{i=1}^{2B} w_i \ell_i,
          \quad w_i = 2(1+\alpha)\ (i \in B_1),\ -2\alpha\ (i \in B_2),

one backward pass of a weighted loss. :math:`\mathbb E[g] = \mu` for every alpha. With
:math:`\Sigma` the per-example gradient covariance of the n training examples and sampling
without replacement, :math:`\mathrm{Cov}(\bar g_{B_j}) = \frac{\Sigma}{B}\frac{n-B}{n-1}` and
:math:`\mathrm{Cov}(\bar g_{B_1}, \bar g_{B_2}) = -\frac{\Sigma}{n-1}`, so with
:math:`c = (1+\alpha)^2 + \alpha^2 = 1 + 2\alpha(1+\alpha)`

.. math:: \mathrm{Cov}(g) = \frac{\Sigma}{B}\,\frac{c\,(n - B) + 2\alpha(1+\alpha) B}{n - 1}
          = \frac{\Sigma}{B_{\mathrm{eff}}}\,\frac{n - B_{\mathrm{eff}}}{n - 1},
          \qquad B_{\mathrm{eff}} = \frac{B}{1 + 2\alpha(1+\alpha)},

exactly the covariance of plain SGD without replacement at :math:`B_{\mathrm{eff}}` (the
i.i.d. limit is papers.md's :math:`c\,\Sigma / B`). Claim 1 measures it on the real model.

**Setup** (``conf/experiment/mori2020/``; pre-registered in PREREGISTRATION.md): MNIST
(16,384 training images, full test set), 2 x 100 ReLU MLP, SGD lr 0.5 constant; plain SGD at
B in {64, ..., 1024}; noise enhancement at B_L = 256 and 1024 with alpha grids hitting
B_eff = B_L, B_L/2, ..., 64; 5 seeds. Runs train 40 epochs, evaluated every epoch. Budget
rules (both reported; the headline and claims.json use the first):

* **equal examples**: every run at epoch 40 (an enhanced step draws 2B examples: it makes
  half the steps of plain SGD at B);
* **equal steps**: enhanced runs at epoch 40 against plain runs at epoch 20 (the learning rate
  is constant, so epoch 20 of a 40-epoch run is a 20-epoch run's end state).

Claims (papers.md section 3; differences paired by seed, points of test accuracy):

1. the Monte-Carlo covariance trace of the enhanced gradient (B_L, alpha for B_eff = 64)
   over that of plain SGD at 64 is 1 +- 0.05, at both points of
   :mod:`repro.figures.mori2020_covariance`: not reproduced if a ratio is outside the band,
   reproduced if every 95 % interval lies inside it, else inconclusive;
2. (per B_L) enhancement at B_eff = 64 beats plain SGD at B_L: 95 % interval above 0 and
   mean >= 0.3 points;
3. (per B_L) enhancement at B_eff = 64 is within 0.5 point of, or above, plain SGD at 64
   (non-inferiority, margin 0.5);
4. (per enhanced point with a plain cell at its B_eff) accuracy depends on B_eff only: the
   enhanced and plain means are equivalent within +-0.5 point (TOST).

The paper's body could not be read here: it gives no number we could check, so every claim
compares with the abstract's statements only (``paper_effect`` None).
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from repro.aggregate import markdown_table
from repro.figures.claims import evaluate_claim
from repro.figures.core import (
    EQUIVALENCE,
    INCONCLUSIVE,
    NON_INFERIORITY,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    SUPERIORITY,
    Cell,
    Check,
    Claim,
    Comparison,
    PaperData,
    PaperSpec,
    TableSpec,
    mark_not_run,
    save_figure,
    statistic,
)
from repro.figures.files import read_beside_runs, write_json, write_text
from repro.figures.identity import CellRuns
from repro.figures.mori2020_covariance import FILE_NAME as COVARIANCE_FILE
from repro.figures.mori2020_covariance import measured_with, problem_overrides
from repro.figures.neelakantan2015_budget import BUDGET_METRIC, frame_at_epoch, wall_time_line
from repro.optim import noise_enhancement_effective_batch_size

NAME = "mori2020"
PREFIX = "mori2020/"
ALPHA = "noise.alpha"
CITATION = (
    'Mori and Ueda 2020, "Improved generalization by noise enhancement", arXiv:2009.13094 '
    "(abstract; the body was not available: no number of the paper is used)"
)
SMALL_BATCH = 64
LARGE_BATCHES = (256, 1024)
PLAIN_BATCHES = (64, 128, 256, 512, 1024)
# The alpha grids of conf/experiment/mori2020/enhanced_b{256,1024}.yaml (tests check both agree).
ALPHAS = {
    256: (0.0, 0.3660254, 0.8228757),
    1024: (0.0, 0.3660254, 0.8228757, 1.4364917, 2.2838822),
}
CLEAR_MARGIN = 0.3  # claim 2: minimum mean gain over plain large-batch SGD, points
SMALL_BATCH_MARGIN = 0.5  # claims 3 and 4: non-inferiority / equivalence margin, points
TRACE_TOLERANCE = 0.05  # claim 1: |ratio - 1|
TRAINS_MIN = 50.0  # a baseline above this mean test accuracy trains (chance ~11 %)


def effective_batch(batch: int, alpha: float) -> int:
    return round(noise_enhancement_effective_batch_size(batch, alpha))


def plain_key(batch: int) -> str:
    return f"sgd_b{batch}"


def enhanced_key(batch: int, b_eff: int) -> str:
    return f"ne_b{batch}_beff{b_eff}"


CELLS = tuple(Cell(plain_key(b), f"{PREFIX}sgd_b{b}") for b in PLAIN_BATCHES) + tuple(
    Cell(enhanced_key(b, effective_batch(b, a)), f"{PREFIX}enhanced_b{b}", where=((ALPHA, a),))
    for b in LARGE_BATCHES
    for a in ALPHAS[b]
)
ENHANCED = tuple(
    (b, effective_batch(b, a), enhanced_key(b, effective_batch(b, a)))
    for b in LARGE_BATCHES
    for a in ALPHAS[b]
)


def _table_row(b_eff: int) -> tuple[str, tuple[str | None, ...]]:
    keys = {cell.key for cell in CELLS}
    row = [plain_key(b_eff) if plain_key(b_eff) in keys else None]
    row += [
        enhanced_key(b, b_eff) if enhanced_key(b, b_eff) in keys else None for b in LARGE_BATCHES
    ]
    return f"B_eff = {b_eff}", tuple(row)


TABLES = (
    TableSpec(
        key="b_eff",
        title="Test accuracy % vs effective batch size (best / mean over 5 seeds), epoch 40",
        columns=("plain SGD at B = B_eff", *(f"enhanced, B = {b}" for b in LARGE_BATCHES)),
        rows=tuple(_table_row(b) for b in sorted(PLAIN_BATCHES, reverse=True)),
        note="Paper: no number available (arXiv:2009.13094, abstract only). The enhanced "
        "entry at B_eff = B is alpha = 0 (SGD at B on half of the 2B examples drawn: half the "
        "steps of plain SGD at B). Equal-steps reading: budget.md.",
    ),
)


# ----------------------------------------------------------------------------- claim 1


def read_measurement(run_paths: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The first ``covariance.json`` directly under a run path (written beside the sweep)."""
    return read_beside_runs(run_paths, COVARIANCE_FILE)


def _ratio_checks(measurement: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(interval checks: 95 % interval inside 1 +- tolerance, point checks: |ratio - 1|)."""
    low_band, high_band = 1.0 - TRACE_TOLERANCE, 1.0 + TRACE_TOLERANCE
    intervals, points = [], []
    for point in measurement["points"]:
        for row in point["enhanced"]:
            where = f"{point['point']} point, B = {row['batch_size']}, alpha = {row['alpha']:.4f}"
            low, high = row["ratio_interval"]
            intervals.append(
                {
                    "rule": f"{where}: 95 % interval [{low:.3f}, {high:.3f}] inside "
                    f"[{low_band:g}, {high_band:g}]",
                    "value": max(high - 1.0, 1.0 - low),
                    "against": TRACE_TOLERANCE,
                    "passed": bool(low_band <= low and high <= high_band),
                }
            )
            points.append(
                {
                    "rule": f"{where}: |trace ratio - 1| <= {TRACE_TOLERANCE:g}",
                    "value": row["ratio"],
                    "against": 1.0,
                    "passed": bool(abs(row["ratio"] - 1.0) <= TRACE_TOLERANCE),
                }
            )
    return intervals, points


@dataclasses.dataclass(frozen=True)
class CovarianceClaim(Claim):
    """Claim 1: judged on ``covariance.json`` beside the runs, not on training cells."""

    def __post_init__(self) -> None:  # no cells: the measurement is not a training run
        pass

    @property
    def cells(self) -> tuple[str, ...]:
        return ()

    def rule(self, unit: str = "%") -> str:
        return (
            f"For every Monte-Carlo trace ratio (enhanced at B_L with B_eff = {SMALL_BATCH}, "
            f"over plain SGD at {SMALL_BATCH}; B_L in {list(LARGE_BATCHES)}; initial and "
            f"trained point): not reproduced if any ratio is outside 1 +- {TRACE_TOLERANCE:g}; "
            "else reproduced if every 95 % interval lies inside that band; else inconclusive "
            f"(the draws cannot resolve it). Measured by `python -m "
            f"repro.figures.mori2020_covariance` ({COVARIANCE_FILE} in a run path)."
        )

    def judge(self, data: PaperData, unit: str = "%") -> dict[str, Any]:
        found = read_measurement(data.run_paths)
        base = {"effect": None, "paper_effect": None, "compatible": None}
        if found is None:
            searched = ", ".join(str(p) for p in data.run_paths) or "none"
            finding = f"no {COVARIANCE_FILE} in the run paths ({searched})"
            return base | {"verdict": NOT_RUN, "preconditions": [], "requirements": [],
                           "comparison_holds": None, "finding": finding}  # fmt: skip
        path, measurement = found
        if not measured_with(measurement, data.overrides):
            finding = (
                f"{path} was measured with overrides {measurement.get('overrides')}, the runs "
                f"with {problem_overrides(data.overrides)}: not used"
            )
            return base | {"verdict": NOT_RUN, "preconditions": [], "requirements": [],
                           "comparison_holds": None, "finding": finding}  # fmt: skip
        preconditions, requirements = _ratio_checks(measurement)
        if not all(check["passed"] for check in requirements):
            verdict = NOT_REPRODUCED
        elif all(check["passed"] for check in preconditions):
            verdict = REPRODUCED
        else:
            verdict = INCONCLUSIVE
        worst = max(requirements, key=lambda c: abs(c["value"] - 1.0))
        return base | {
            "verdict": verdict,
            "preconditions": preconditions,
            "requirements": requirements,
            "comparison_holds": None,
            "finding": f"worst ratio {worst['value']:.3f} ({worst['rule'].split(':')[0]}); "
            f"{measurement['num_draws']} draws per trace; {path}",
        }


# ----------------------------------------------------------------------------- claims 2-4

_ABSTRACT = "abstract"


def _trains(key: str) -> Check:
    return Check(statistic("mean", key), ">", TRAINS_MIN, "the baseline trains")


def _beats_large_batch(batch: int) -> Claim:
    treated = enhanced_key(batch, SMALL_BATCH)
    return Claim(
        id=f"2-b{batch}",
        claim=f"noise enhancement (B_eff = {SMALL_BATCH}) beats plain SGD at the same batch "
        f"by >= {CLEAR_MARGIN:g} point",
        setting=f"B = {batch}",
        preconditions=(_trains(plain_key(batch)),),
        comparison=Comparison(treated, plain_key(batch), SUPERIORITY, CLEAR_MARGIN),
        paper={
            "statement": "the noise enhancement actually improves generalization",
            "source": _ABSTRACT,
        },
    )


def _matches_small_batch(batch: int) -> Claim:
    treated = enhanced_key(batch, SMALL_BATCH)
    return Claim(
        id=f"3-b{batch}",
        claim=f"large batch + enhancement is within {SMALL_BATCH_MARGIN:g} point of (or above) "
        f"plain SGD at B_s = B_eff = {SMALL_BATCH}",
        setting=f"B = {batch}, B_eff = {SMALL_BATCH}",
        preconditions=(_trains(plain_key(SMALL_BATCH)),),
        comparison=Comparison(treated, plain_key(SMALL_BATCH), NON_INFERIORITY, SMALL_BATCH_MARGIN),
        paper={
            "statement": "large-batch training with the noise enhancement even shows better "
            "generalization compared with small-batch training",
            "source": _ABSTRACT,
        },
    )


def _collapse(batch: int, b_eff: int) -> Claim:
    return Claim(
        id=f"4-b{batch}-beff{b_eff}",
        claim=f"accuracy depends on B_eff only: enhanced and plain means within "
        f"+-{SMALL_BATCH_MARGIN:g} point",
        setting=f"B = {batch} enhanced vs plain B = {b_eff}",
        comparison=Comparison(
            enhanced_key(batch, b_eff), plain_key(b_eff), EQUIVALENCE, SMALL_BATCH_MARGIN
        ),
        paper={
            "statement": "generalization is controlled by the noise (B_eff), not by B",
            "source": "abstract, as papers.md section 3 reads it (unconfirmed)",
        },
    )


COVARIANCE_CLAIM = CovarianceClaim(
    id="1",
    claim=f"the enhanced gradient's covariance trace equals plain SGD's at B_eff within "
    f"{TRACE_TOLERANCE:.0%}",
    setting=f"MNIST 2 x 100 MLP, B_L in {list(LARGE_BATCHES)}, B_eff = {SMALL_BATCH}",
    paper={"statement": "B_eff = B / (1 + 2 alpha (1 + alpha))", "source": "papers.md section 3"},
)
TRAINING_CLAIMS = (
    *(_beats_large_batch(b) for b in LARGE_BATCHES),
    *(_matches_small_batch(b) for b in LARGE_BATCHES),
    *(_collapse(b, e) for b, e, _ in ENHANCED if e < b and e in PLAIN_BATCHES),
)
CLAIMS = (COVARIANCE_CLAIM, *TRAINING_CLAIMS)


# ----------------------------------------------------------------------------- budgets


@dataclasses.dataclass(frozen=True)
class BudgetRule:
    """Which epoch of each run a comparison reads (runs are 40 epochs, evaluated each)."""

    key: str
    label: str
    plain_epoch: int
    enhanced_epoch: int

    def epoch(self, key: str) -> int:
        return self.enhanced_epoch if key.startswith("ne_") else self.plain_epoch

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"headline": self == HEADLINE}


EQUAL_EXAMPLES = BudgetRule(
    "examples", "equal examples: every run at epoch 40 (enhanced: half the steps)", 40, 40
)
EQUAL_STEPS = BudgetRule(
    "steps", "equal steps: enhanced at epoch 40, plain at epoch 20 (enhanced: 2x examples)", 20, 40
)
BUDGETS = (EQUAL_EXAMPLES, EQUAL_STEPS)
HEADLINE = EQUAL_EXAMPLES


def budget_view(data: PaperData, rule: BudgetRule) -> PaperData:
    """The cells with BUDGET_METRIC read at each cell's epoch under ``rule``."""
    frames = {}
    for cell in CELLS:
        frame = frame_at_epoch(data, cell.key, rule.epoch(cell.key))
        if not frame.empty:
            frames[cell.key] = frame
    spec = dataclasses.replace(
        data.spec, name=f"{NAME}[{rule.key}]", metric=BUDGET_METRIC, tables=()
    )
    runs = {cell.key: data.runs.get(cell.key, CellRuns((), ())) for cell in CELLS}
    return dataclasses.replace(data, spec=spec, runs=runs, frames=frames)


def budget_claims(data: PaperData, command: str) -> list[dict[str, Any]]:
    """Claims 2-4 judged under every budget rule: claims.json entries plus ``budget``."""
    entries = []
    for rule in BUDGETS:
        view = budget_view(data, rule)
        for claim in TRAINING_CLAIMS:
            entries.append({"budget": rule.as_dict(), **evaluate_claim(view, claim, command)})
    return entries


def accuracy_by_b_eff(data: PaperData, rule: BudgetRule) -> pd.DataFrame:
    """One row per cell: series (plain / enhanced B), B_eff, n, mean, std (percent)."""
    view = budget_view(data, rule)
    rows = []
    series = [(plain_key(b), "plain SGD", b) for b in PLAIN_BATCHES]
    series += [(key, f"enhanced B = {b}", e) for b, e, key in ENHANCED]
    for key, name, b_eff in series:
        values = view.values(key)
        row = {"cell": key, "series": name, "b_eff": b_eff, "n": int(values.size)}
        if values.size:
            std = float(values.std(ddof=1)) if values.size > 1 else math.nan
            row |= {"mean": float(values.mean()), "std": std, "best": float(values.max())}
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- outputs

_MARKERS = {"plain SGD": ("s-", "k"), "enhanced B = 256": ("o-", "C1"),
            "enhanced B = 1024": ("^-", "C2")}  # fmt: skip
_OFFSETS = {"plain SGD": 0.0, "enhanced B = 256": -0.07, "enhanced B = 1024": 0.07}


def plot_accuracy_vs_b_eff(tables: Mapping[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """accuracy_vs_b_eff.{png,pdf}: one panel per budget rule, mean +- std over seeds."""
    fig, axes = plt.subplots(1, len(BUDGETS), figsize=(5.5 * len(BUDGETS), 4), sharey=True)
    for ax, rule in zip(axes, BUDGETS, strict=True):
        frame = tables[rule.key]
        drawn = frame[frame["n"] > 0] if "mean" in frame else frame.iloc[0:0]
        for name, part in drawn.groupby("series", sort=False):
            part = part.sort_values("b_eff")
            style, color = _MARKERS.get(name, ("x-", "C3"))
            # Series side by side (x 2^offset) so equal B_eff points do not hide each other.
            x = part["b_eff"] * 2.0 ** _OFFSETS.get(name, 0.0)
            ax.errorbar(x, part["mean"], yerr=part["std"].fillna(0.0), fmt=style,
                        color=color, capsize=3, label=name, markersize=5)  # fmt: skip
        if drawn.empty:
            mark_not_run(ax)
        else:
            ax.legend(fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(PLAIN_BATCHES), [str(b) for b in PLAIN_BATCHES])
        ax.minorticks_off()
        ax.set_xlabel("effective batch size B_eff = B / (1 + 2 alpha (1 + alpha))")
        ax.set_title(rule.label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(
        "MNIST 2 x 100 MLP, SGD lr 0.5: do the curves for different (B, alpha) collapse? "
        "(mean +- std over 5 seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, out_dir, "accuracy_vs_b_eff")


def _verdict_text(entry: Mapping[str, Any]) -> str:
    effect = entry.get("effect")
    if entry["verdict"] == NOT_RUN or not effect:
        return entry["verdict"]
    low, high = effect["interval"]
    return f"{entry['verdict']} ({effect['estimate']:+.2f} [{low:+.2f}, {high:+.2f}])"


def budget_markdown(
    data: PaperData, tables: Mapping[str, pd.DataFrame], entries: Sequence[Mapping[str, Any]]
) -> str:
    accuracy = []
    for index, row in tables[BUDGETS[0].key].iterrows():
        line = [row["cell"], row["series"], int(row["b_eff"])]
        for rule in BUDGETS:
            other = tables[rule.key].iloc[index]
            line.append(
                f"{other['mean']:.2f} +- {other['std']:.2f} (n={int(other['n'])})"
                if other["n"] else NOT_RUN
            )  # fmt: skip
        accuracy.append(line)
    columns = ["cell", "series", "B_eff", *(r.label for r in BUDGETS)]
    verdicts: dict[str, list[str]] = {}
    for entry in entries:
        verdicts.setdefault(entry["id"], [entry["setting"]]).append(_verdict_text(entry))
    body = [[claim_id, *texts] for claim_id, texts in verdicts.items()]
    return "\n".join(
        [
            "# Mori & Ueda 2020: accuracy and verdicts under both budget rules\n",
            "Pre-registered: `PREREGISTRATION.md`. " + wall_time_line(data) + "\n",
            "## Test accuracy % (mean +- std over seeds)\n",
            markdown_table(pd.DataFrame(accuracy, columns=columns)) + "\n",
            "## Claims 2-4 under each budget rule\n",
            "Effect: paired mean difference (points) with its 95 % t-interval. The headline "
            f"({HEADLINE.label}) is `claims.json`.\n",
            markdown_table(
                pd.DataFrame(body, columns=["claim", "setting", *(r.label for r in BUDGETS)])
            ) + "\n",
        ]
    )  # fmt: skip


def write_outputs(data: PaperData, out_dir: Path) -> list[Path]:
    """The PaperSpec ``plot`` hook: figure, budget.md, budget_claims.json, covariance.json."""
    argv = ["python", "-m", "repro.figures", NAME, "--runs", *map(str, data.run_paths)]
    if data.overrides:
        argv += ["--overrides", *data.overrides]
    command = shlex.join([*argv, "--out-dir", str(out_dir)])
    tables = {rule.key: accuracy_by_b_eff(data, rule) for rule in BUDGETS}
    entries = budget_claims(data, command)
    files = plot_accuracy_vs_b_eff(tables, out_dir)
    files.append(write_text(out_dir / "budget.md", budget_markdown(data, tables, entries)))
    payload = {
        "paper": NAME,
        "citation": CITATION,
        "budgets": [rule.as_dict() for rule in BUDGETS],
        "claims": entries,
    }
    files.append(write_json(out_dir / "budget_claims.json", payload))
    found = read_measurement(data.run_paths)
    if found is not None and found[0].resolve() != (out_dir / COVARIANCE_FILE).resolve():
        files.append(write_json(out_dir / COVARIANCE_FILE, found[1]))
    return files


PAPER = PaperSpec(
    name=NAME,
    title="Mori & Ueda 2020, Improved generalization by noise enhancement (MNIST, CPU scale)",
    citation=CITATION,
    cells=CELLS,
    tables=TABLES,
    claims=CLAIMS,
    plot=write_outputs,
    sweeps=(NAME,),
    script="scripts/mori2020.py",
    breakdown=None,
    notes=(
        "Ours: test accuracy of each replica after epoch 40 (equal examples: an enhanced step "
        "draws 2B examples). The equal-steps reading and its verdicts: budget.md.",
        "Claim 1 is judged on covariance.json (python -m repro.figures.mori2020_covariance), "
        "copied here from the run path.",
        "The update rule and B_eff are derived in repro/figures/mori2020.py (unconfirmed "
        "against the paper's body).",
    ),
)
