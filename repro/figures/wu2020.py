"""Wu et al. 2020, "On the Noisy Gradient Descent that Generalizes as SGD" (arXiv:1906.07405).

Setup as the authors' code (uuujf/MultiNoise) runs it, on MNIST instead of Fashion-MNIST:
n = 1000 training images, the small CNN (11,330 parameters, init N(0, 0.02^2)), plain SGD lr
0.01; every noise class is gradient descent on mean_i(w_i CE_i) over all n examples with its
scale matched to SGD at b = 50 (conf/experiment/wu2020/). Our per-run number is each
replica's final test accuracy (percent) on 10,000 of the 60,000 "test" images; the
generalization gap is final train accuracy (all 1000 training images) minus test accuracy.
The paper's tables could not be read here, so its column is "-" and no claim has a paper
effect. Differences are paired by seed (same initial parameters in every cell).

Claims (papers.md section 5, CPU-scale verdict rules; judged only if GD fits its training
set, mean train accuracy >= ``FIT_MIN``, so that the comparison is about generalization and
not about optimization speed):

1. full-batch GD is clearly below SGD at b = 50: SGD - GD, 95 % interval above 0 and mean
   >= ``CLEAR_GAP`` points;
2. each noise class (Fisher, Cov, Bernoulli, sparse Fisher) closes >= 70 % of that gap:
   judged only if the gap is clear (mean SGD - mean GD >= ``CLEAR_GAP``); holds if the paired
   mean of ``d_i = (class_i - GD_i) - 0.7 (SGD_i - GD_i)`` is >= 0 (the point estimate of
   the closed fraction is >= 70 %; the finding says whether its interval excludes 0);
3. the large-batch ghost Gaussian variant (L = 500, ghost 50) beats plain large-batch SGD
   (L = 500): judged only if plain L = 500 is clearly below SGD (>= ``CLEAR_GAP``); holds if
   the paired difference's 95 % interval lies above 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from repro.aggregate import markdown_table
from repro.figures.core import (
    NOT_RUN,
    SUPERIORITY,
    Cell,
    Check,
    Claim,
    Comparison,
    NotEvaluableError,
    PairedDifference,
    PaperData,
    PaperSpec,
    TableSpec,
    save_figure,
    statistic,
)
from repro.figures.files import write_text
from repro.figures.stats import CONFIDENCE
from repro.figures.verdicts import Statistic, difference_unit

PREFIX = "wu2020/"
PAIR_KEYS = ("seed",)
TRAIN_METRIC = "final.train_eval_accuracy"
CITATION = (
    'Wu, Hu, Xiong, Huan, Braverman and Zhu 2020, "On the Noisy Gradient Descent that '
    "Generalizes as SGD\", ICML 2020, arXiv:1906.07405 (small setup: Section 5 / the authors' "
    "code uuujf/MultiNoise; the paper's tables could not be read here)"
)

CLEAR_GAP = 1.5  # points: "clearly below" (claims 1 and 3, precondition of 2)
GAP_FRACTION = 0.7  # claim 2: the fraction of the GD-SGD gap a noise class must close
FIT_MIN = 90.0  # % mean GD train accuracy before any claim is judged

CLASSES = (  # (cell key, label, matching rule)
    ("fisher", "Fisher", "s^2 = n/b - 1"),
    ("cov", "Cov", "s^2 = (n/b - 1) / (1 - 1/n)"),
    ("bernoulli", "Bernoulli", "p = b/n"),
    ("sparse_fisher", "sparse Fisher (m=100)", "s^2 = (n/b - 1) n/m"),
)
BARS = (  # (cell key, label): the bar chart's order
    ("gd", "GD"),
    ("sgd", "SGD b=50"),
    *((key, label) for key, label, _ in CLASSES),
    ("large_batch", "SGD L=500"),
    ("large_batch_ghost", "ghost L=500"),
)
CELLS = tuple(Cell(key, PREFIX + key) for key, _ in BARS)

TABLES = (
    TableSpec(
        key="classes",
        title="MNIST n = 1000, small CNN: final test accuracy % (best / mean over seeds)",
        columns=("test accuracy",),
        rows=(
            ("GD (full batch)", ("gd",)),
            ("SGD, b = 50", ("sgd",)),
            *((f"{label}, {rule}", (key,)) for key, label, rule in CLASSES),
            ("SGD, L = 500", ("large_batch",)),
            ("ghost Gaussian, L = 500, h = 50, s^2 = (L/b-1)/(1-1/h)", ("large_batch_ghost",)),
        ),
        note="Scales matched to SGD at b = 50 (rule per row). Paper: tables not read here "
        "(arXiv:1906.07405); its setup used Fashion-MNIST.",
    ),
)


# ----------------------------------------------------------------------------- claim parts


def _paired_columns(data: PaperData, columns: Mapping[str, str], metric: str) -> pd.DataFrame:
    """One row per seed present in every cell, one column per role (values in percent)."""
    merged: pd.DataFrame | None = None
    for role, key in columns.items():
        frame = data.cell(key)
        if frame.empty or metric not in frame.columns:
            raise NotEvaluableError(f"cell {key} has no {metric} values")
        if frame.duplicated(subset=list(PAIR_KEYS)).any():
            raise NotEvaluableError(f"pairing keys {list(PAIR_KEYS)} are not unique in {key}")
        part = frame[list(PAIR_KEYS)].copy()
        part[role] = pd.to_numeric(frame[metric], errors="coerce") * data.spec.scale
        merged = part if merged is None else merged.merge(part, on=list(PAIR_KEYS))
    assert merged is not None
    merged = merged.dropna()
    if len(merged) < 2:
        raise NotEvaluableError(f"fewer than 2 seeds pair across {sorted(columns.values())}")
    return merged


@dataclasses.dataclass(frozen=True)
class MeanGap(Statistic):
    """mean(``high``) - mean(``low``) of the paper metric over each cell's replicas."""

    name: str = "mean"
    cells: tuple[str, ...] = ()

    def value(self, data: PaperData) -> float:
        high, low = (statistic("mean", key).value(data) for key in self.cells)
        return high - low

    def text(self) -> str:
        return f"mean({self.cells[0]}) - mean({self.cells[1]})"


@dataclasses.dataclass(frozen=True)
class TrainAccuracy(Statistic):
    """Mean final training accuracy (percent) of a cell's replicas."""

    name: str = "mean"
    cells: tuple[str, ...] = ()

    def value(self, data: PaperData) -> float:
        frame = data.cell(self.cells[0])
        if frame.empty or TRAIN_METRIC not in frame.columns:
            raise NotEvaluableError(f"cell {self.cells[0]} has no {TRAIN_METRIC} values")
        values = pd.to_numeric(frame[TRAIN_METRIC], errors="coerce").to_numpy(float)
        return float(np.nanmean(values) * data.spec.scale)

    def text(self) -> str:
        return f"mean train accuracy({self.cells[0]})"


@dataclasses.dataclass(frozen=True)
class GapClosure(Comparison):
    """Does ``treated`` close >= ``fraction`` of the paired gap ``reference - control``?

    Per seed ``d_i = (treated_i - control_i) - fraction (reference_i - control_i)``; holds if
    mean(d) >= 0. Reported: d's mean and 95 % t-interval, and the closed fraction
    mean(treated - control) / mean(reference - control).
    """

    reference: str = ""
    fraction: float = GAP_FRACTION

    @property
    def cells(self) -> tuple[str, ...]:
        return self.treated, self.control, self.reference

    def text(self, unit: str) -> str:
        t, c, r = self.cells
        return (
            f"the paired mean (by {', '.join(self.pair_keys)}) of ({t} - {c}) - "
            f"{self.fraction:g} ({r} - {c}) is >= 0, i.e. {t} closes >= {self.fraction:.0%} "
            f"of the gap {r} - {c}"
        )

    def evaluate(self, data: PaperData) -> tuple[bool, dict[str, Any]]:
        roles = {"treated": self.treated, "control": self.control, "reference": self.reference}
        frame = _paired_columns(data, roles, data.spec.metric)
        closed = frame["treated"] - frame["control"]
        gap = frame["reference"] - frame["control"]
        diff = PairedDifference.from_differences((closed - self.fraction * gap).to_numpy())
        effect = {"treated": self.treated, "control": self.control, "test": "gap closure"}
        effect |= diff.as_dict() | {"pair_keys": list(self.pair_keys), "margin": 0.0}
        effect |= {
            "reference": self.reference,
            "fraction_required": self.fraction,
            "fraction_closed": float(closed.mean() / gap.mean()) if gap.mean() else None,
            "gap": float(gap.mean()),
        }
        return bool(diff.mean >= 0), effect

    def finding(self, effect: Mapping[str, Any], unit: str) -> str:
        low, high = effect["interval"]
        closed = effect["fraction_closed"]
        share = "undefined (no gap)" if closed is None else f"{closed:.0%}"
        sure = (
            "measurably more than"
            if low > 0
            else "measurably less than"
            if high < 0
            else "not distinguishable from"
        )
        return (
            f"{self.treated} closes {share} of the {effect['gap']:+.2f} "
            f"{difference_unit(unit)} gap ({self.reference} - {self.control}): {sure} "
            f"{self.fraction:.0%} (d = {effect['estimate']:+.2f} [{low:+.2f}, {high:+.2f}], "
            f"{CONFIDENCE:.0%})"
        )


def _fits(key: str) -> Check:
    return Check(
        TrainAccuracy(cells=(key,)),
        ">=",
        FIT_MIN,
        f"{key} fits its training set: the claims are about generalization at a fit",
    )


def _clear_gap(high: str, low: str) -> Check:
    return Check(MeanGap(cells=(high, low)), ">=", CLEAR_GAP, f"{low} is clearly below {high}")


def _class_claim(index: int, key: str, label: str, rule: str) -> Claim:
    return Claim(
        id=f"2{'abcd'[index]}",
        claim=f"{label} noise, scale matched to SGD at b = 50, closes >= "
        f"{GAP_FRACTION:.0%} of the GD-SGD gap",
        setting=f"MNIST n = 1000, small CNN, {label}: {rule}",
        preconditions=(_fits("gd"), _clear_gap("sgd", "gd")),
        comparison=GapClosure(key, "gd", SUPERIORITY, 0.0, PAIR_KEYS, reference="sgd"),
        paper={"statement": "the noise classes generalize as SGD", "source": "Section 5"},
    )


CLAIMS = (
    Claim(
        id="1",
        claim=f"full-batch GD is clearly (>= {CLEAR_GAP:g} points) below SGD at b = 50",
        setting="MNIST n = 1000, small CNN, lr 0.01",
        preconditions=(_fits("gd"),),
        comparison=Comparison("sgd", "gd", SUPERIORITY, CLEAR_GAP, PAIR_KEYS),
        paper={"statement": "SGD generalizes better than GD", "source": "Section 5"},
    ),
    *(_class_claim(i, key, label, rule) for i, (key, label, rule) in enumerate(CLASSES)),
    Claim(
        id="3",
        claim="the large-batch ghost Gaussian variant beats plain large-batch SGD",
        setting="MNIST n = 1000, small CNN, L = 500, ghost batches of 50, s^2 = (L/b-1)/(1-1/h)",
        preconditions=(_fits("gd"), _clear_gap("sgd", "large_batch")),
        comparison=Comparison("large_batch_ghost", "large_batch", SUPERIORITY, 0.0, PAIR_KEYS),
        paper={
            "statement": "multiplicative noise recovers small-batch generalization at a large "
            "batch (CIFAR-100: batch 2000 with ghost batches of 500 vs batch 500)",
            "source": "Section 5",
        },
    ),
)


# ----------------------------------------------------------------------------- figures


def seed_values(data: PaperData, key: str) -> pd.DataFrame:
    """Per-seed test and train accuracy (percent) and the gap train - test of one cell."""
    frame = data.cell(key)
    columns = ["seed", "test", "train", "gap"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    test = pd.to_numeric(frame[data.spec.metric], errors="coerce") * data.spec.scale
    train = (
        pd.to_numeric(frame[TRAIN_METRIC], errors="coerce") * data.spec.scale
        if TRAIN_METRIC in frame.columns
        else pd.Series(np.nan, index=frame.index)
    )
    return pd.DataFrame({"seed": frame["seed"], "test": test, "train": train, "gap": train - test})


def _bars_with_seeds(ax: plt.Axes, data: PaperData, column: str) -> None:
    """Mean bar per cell and one dot per seed (the same colour for a seed in every cell)."""
    for position, (key, _) in enumerate(BARS):
        values = seed_values(data, key).dropna(subset=[column])
        if values.empty:
            ax.text(
                position, 0.02, NOT_RUN, ha="center", va="bottom", rotation=90, color="gray",
                transform=ax.get_xaxis_transform(),  # x in data, y in axes units
            )  # fmt: skip
            continue
        ax.bar(position, values[column].mean(), 0.7, color="C0" if key != "gd" else "C3", alpha=0.5)
        offsets = np.linspace(-0.2, 0.2, max(len(values), 1))
        for offset, (_, row) in zip(offsets, values.sort_values("seed").iterrows(), strict=True):
            ax.plot(position + offset, row[column], "o", color=f"C{int(row['seed']) % 10}", ms=3)
    ax.set_xticks(range(len(BARS)), [label for _, label in BARS], rotation=35, ha="right")
    ax.grid(alpha=0.3, axis="y")
    shown = [seed_values(data, key)[column].dropna() for key, _ in BARS]
    values = pd.concat([part for part in shown if not part.empty] or [pd.Series(dtype=float)])
    if column == "test" and not values.empty:  # zoom: the classes differ by a few points
        ax.set_ylim(max(0.0, np.floor(values.min()) - 2), min(100.0, np.ceil(values.max()) + 1))


def gap_table(data: PaperData) -> str:
    """Markdown: train / test accuracy and the generalization gap, mean +- std (n) per cell."""
    rows = []
    for key, label in BARS:
        values = seed_values(data, key)
        if values.dropna(subset=["test"]).empty:
            rows.append([label, NOT_RUN, NOT_RUN, NOT_RUN])
            continue
        cells = []
        for column in ("train", "test", "gap"):
            finite = values[column].dropna()
            std = finite.std(ddof=1) if len(finite) > 1 else float("nan")
            cells.append(f"{finite.mean():.2f} +- {std:.2f} (n={len(finite)})")
        rows.append([label, *cells])
    header = ["cell", "train accuracy %", "test accuracy %", "gap (train - test), points"]
    return markdown_table(pd.DataFrame(rows, columns=header))


def plot(data: PaperData, out_dir: Path) -> list[Path]:
    """classes.{png,pdf}: test accuracy and generalization gap per class; gap.md."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    _bars_with_seeds(axes[0], data, "test")
    axes[0].set_ylabel("final test accuracy (%)")
    _bars_with_seeds(axes[1], data, "gap")
    axes[1].set_ylabel("train - test accuracy (points)")
    axes[0].set_title("test accuracy (bar: mean; dots: seeds; y axis zoomed)", fontsize=10)
    axes[1].set_title("generalization gap (bar: mean; dots: seeds)", fontsize=10)
    fig.suptitle("Wu et al. 2020 on MNIST n = 1000, small CNN, scales matched to SGD b = 50")
    files = save_figure(fig, out_dir, "classes")
    title = "# Generalization gap per noise class (final epoch)\n\n"
    files.append(write_text(out_dir / "gap.md", title + gap_table(data) + "\n"))
    return files


def describe_classes() -> Sequence[str]:
    """The matching rule of every class, one line each (for the notes)."""
    return [f"{label}: {rule}" for _, label, rule in CLASSES]


PAPER = PaperSpec(
    name="wu2020",
    title="Wu et al. 2020, On the Noisy Gradient Descent that Generalizes as SGD",
    cells=CELLS,
    tables=TABLES,
    claims=CLAIMS,
    plot=plot,
    citation=CITATION,
    sweeps=("wu2020",),
    script="scripts/wu2020.py",
    notes=(
        "Ours: final test accuracy of each replica on 10,000 of the 60,000 MNIST training "
        "images (the authors' 'test' split), after 300 iterations (CPU scale; the authors ran "
        "10,000: experiment=wu2020/full/<cell>).",
        "Scale matching to SGD at b = 50: " + "; ".join(describe_classes()) + ".",
        "The paper's tables could not be read here: no paper numbers, no paper effects.",
    ),
)
