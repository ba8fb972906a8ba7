"""Jasper (Li et al. 2019, arXiv:1904.03288) and NovoGrad's speech claim (Ginsburg et al. 2019,
arXiv:1905.11286) at CPU scale: CTC on the offline espeak-ng corpus (PREREGISTRATION.md beside
the outputs fixes every choice before the runs).

Cells (conf/experiment/jasper2019/): Jasper-mini 5x3 with NovoGrad (``mini_novograd``) and with
SGD + momentum (``mini_momentum``), each 3 learning rates x 4 seeds as replicas of one program;
Jasper-mini 10x3 with residual none / block / dense (``deep_<residual>``), NovoGrad at the
paper's lr 0.02, 4 seeds. Our per-replica number is the final test CER (percent) of greedy
CTC transcripts over the test split (voices never heard in training); WER is reported beside.
For the grid cells the learning rate is the one with the lowest mean validation CER (the
validation split's voices are disjoint from the test split's); the verdicts use the test CER of
its replicas. Replicas are paired by seed (the same initial parameters within a model).

Claims (papers.md section 2, CPU-scale verdict 4):

- J1: Jasper-mini 5x3 (NovoGrad, tuned) reaches a test CER below ``TARGET_CER``;
- J2: without residuals the deeper 10x3 is clearly worse than with block residuals;
- J3: dense residuals (Jasper DR) are no worse than block residuals at 10x3;
- J4: NovoGrad is no worse than SGD + momentum at equal epochs, each at its tuned rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from repro.aggregate import markdown_table
from repro.figures.core import (
    INCONCLUSIVE,
    NON_INFERIORITY,
    NOT_REPRODUCED,
    REPRODUCED,
    SUPERIORITY,
    Cell,
    Check,
    Claim,
    Comparison,
    MeasuredClaim,
    NotEvaluableError,
    PaperData,
    PaperSpec,
    checked,
    mark_not_run,
    plot_mean_band,
    save_figure,
    statistic,
)
from repro.figures.files import write_text
from repro.figures.tuning import choose_rate

NAME = "jasper2019"
CITATION = (
    "Li, Lavrukhin, Ginsburg, Leary, Kuchaiev, Cohen, Nguyen & Gadde 2019, Jasper: An End-to-End "
    "Convolutional Neural Acoustic Model (arXiv:1904.03288); Ginsburg et al. 2019, NovoGrad "
    "(arXiv:1905.11286)"
)
LR = "optimizer.learning_rate"
SELECTION = "final.validation_cer"
WER = "final.test_wer"
CONFIDENCE = 0.95

TARGET_CER = 50.0  # J1: percent; from the 1-replica pilots of the protocol (PREREGISTRATION.md)
LEARNS = 60.0  # precondition: a cell whose mean test CER is at most this left the blank plateau
CLEAR = 5.0  # J2: "clearly worse", points of CER
DENSE_MARGIN = 2.0  # J3: non-inferiority margin, points of CER
OPTIMIZER_MARGIN = 2.0  # J4: non-inferiority margin, points of CER
DEEP_LR = 0.02  # the deep cells' NovoGrad rate (the paper's; conf/optimizer/novograd_jasper.yaml)
# The paper's dev-clean greedy WER of Jasper DR 10x5: SGD + momentum 4.00, NovoGrad 3.64
# (arXiv:1905.11286): NovoGrad - SGD = -0.36 points of WER (another metric and scale).
PAPER_OPTIMIZER_WER = {"momentum": 4.00, "novograd": 3.64}

LABELS = {
    "mini_novograd": "5x3 NovoGrad",
    "mini_momentum": "5x3 SGD + momentum",
    "deep_none": "10x3 no residual",
    "deep_block": "10x3 block residual",
    "deep_dense": "10x3 dense residual",
}
GRID_CELLS = ("mini_novograd", "mini_momentum")
CELLS = tuple(Cell(key, f"{NAME}/{key}") for key in LABELS)


# ----------------------------------------------------------------------------- tuning


def _percent(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame.get(column), errors="coerce") * 100.0


def lr_table(data: PaperData, key: str) -> pd.DataFrame:
    """One row per grid learning rate of a cell: validation and test CER (%), test WER (%)."""
    frame = data.cell(key)
    columns = ["lr", "n", "validation", "test", "test_sd", "wer", "diverged"]
    if frame.empty or LR not in frame.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for lr, group in frame.groupby(LR, sort=True):
        test = _percent(group, data.spec.metric)
        rows.append(
            {
                "lr": float(lr),
                "n": len(group),
                # A diverged replica has no finite CER: it counts as the worst, 100 %.
                "validation": float(_percent(group, SELECTION).fillna(100.0).mean()),
                "test": float(test.fillna(100.0).mean()),
                "test_sd": float(test.std(ddof=1)) if len(group) > 1 else math.nan,
                "wer": float(_percent(group, WER).fillna(100.0).mean()),
                "diverged": int(group["diverged"].astype(bool).sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def tuned(data: PaperData, key: str) -> dict[str, Any]:
    """The cell at its learning rate with the lowest mean validation CER (ties: smaller)."""
    choice = choose_rate(lr_table(data, key), data.cell(key), LR, True, key)
    row, chosen = choice.row, choice.replicas
    return {
        "key": key,
        "lr": float(row["lr"]),
        "validation": float(row["validation"]),
        "test": float(row["test"]),
        "test_sd": float(row["test_sd"]),
        "wer": float(row["wer"]),
        "n": int(row["n"]),
        "edge": choice.edge,
        "per_seed": _per_seed(chosen, data.spec.metric),
        "wer_per_seed": _per_seed(chosen, WER),
    }


def _per_seed(frame: pd.DataFrame, column: str) -> dict[int, float]:
    values = _percent(frame, column).fillna(100.0)
    return dict(zip(frame["seed"].astype(int), values.astype(float), strict=True))


def selected(data: PaperData, key: str) -> pd.DataFrame:
    """The replicas a cell contributes to the study: those at its tuned rate (grid cells)."""
    frame = data.cell(key)
    if key in GRID_CELLS and not frame.empty and LR in frame.columns:
        return frame[frame[LR] == tuned(data, key)["lr"]]
    return frame


# ----------------------------------------------------------------------------- measures


def t_interval(values: Sequence[float]) -> tuple[float, list[float], int]:
    """(mean, its 95 % t-interval, n); NotEvaluableError with fewer than 2 values."""
    array = np.asarray(values, float)
    if array.size < 2:
        raise NotEvaluableError("fewer than 2 seeds")
    mean = float(array.mean())
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, array.size - 1)) * float(
        array.std(ddof=1) / math.sqrt(array.size)
    )
    return mean, [mean - half, mean + half], int(array.size)


def measure_target(data: PaperData) -> dict[str, Any]:
    """J1: the tuned NovoGrad 5x3's test CER against TARGET_CER."""
    arm = tuned(data, "mini_novograd")
    mean, (low, high), n = t_interval(list(arm["per_seed"].values()))
    reaches = checked(
        f"upper end of the 95 % interval of the mean test CER < {TARGET_CER:g} %",
        high,
        TARGET_CER,
        high < TARGET_CER,
    )
    if reaches["passed"]:
        verdict, preconditions = REPRODUCED, []
    elif low > TARGET_CER:
        verdict, preconditions = NOT_REPRODUCED, []
    else:
        verdict = INCONCLUSIVE
        preconditions = [
            checked(
                f"the 95 % interval [{low:.1f}, {high:.1f}] lies wholly below or above "
                f"{TARGET_CER:g} % (value: its upper end)",
                high,
                TARGET_CER,
                False,
            )
        ]
    wer, _, _ = t_interval(list(arm["wer_per_seed"].values()))
    return {
        "verdict": verdict,
        "preconditions": preconditions,
        "requirements": [reaches],
        "effect": {"estimate": mean, "interval": [low, high], "n": n, "kind": "level"},
        "finding": f"test CER {mean:.1f} % [{low:.1f}, {high:.1f}] (WER {wer:.1f} %) at lr "
        f"{arm['lr']:g} chosen on validation (validation CER {arm['validation']:.1f} %)",
    }


def measure_optimizers(data: PaperData) -> dict[str, Any]:
    """J4: tuned NovoGrad - tuned SGD + momentum, test CER paired by seed."""
    novo, mom = tuned(data, "mini_novograd"), tuned(data, "mini_momentum")
    seeds = sorted(set(novo["per_seed"]) & set(mom["per_seed"]))
    diffs = [novo["per_seed"][s] - mom["per_seed"][s] for s in seeds]
    estimate, (low, high), n = t_interval(diffs)
    wer_diffs = [novo["wer_per_seed"][s] - mom["wer_per_seed"][s] for s in seeds]
    wer_estimate, wer_interval, _ = t_interval(wer_diffs)
    edges = [arm["key"] for arm in (novo, mom) if arm["edge"]]
    interior = checked(
        "both chosen learning rates lie inside their grids (the grids bracketed them)"
        + (f"; at an end: {', '.join(edges)}" if edges else ""),
        len(edges),
        0,
        not edges,
    )
    non_inferior = checked(
        f"upper end of the 95 % interval of NovoGrad - SGD (test CER, paired by seed) < "
        f"+{OPTIMIZER_MARGIN:g} points",
        high,
        OPTIMIZER_MARGIN,
        high < OPTIMIZER_MARGIN,
    )
    preconditions = [interior]
    if not interior["passed"]:
        verdict = INCONCLUSIVE
    elif non_inferior["passed"]:
        verdict = REPRODUCED
    elif low > 0:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
        preconditions.append(
            checked(
                f"the 95 % interval [{low:+.1f}, {high:+.1f}] is resolved (upper end < "
                f"+{OPTIMIZER_MARGIN:g}, or lower end > 0; value: its upper end)",
                high,
                OPTIMIZER_MARGIN,
                False,
            )
        )
    paper = PAPER_OPTIMIZER_WER["novograd"] - PAPER_OPTIMIZER_WER["momentum"]
    return {
        "verdict": verdict,
        "preconditions": preconditions,
        "requirements": [non_inferior],
        "effect": {"estimate": estimate, "interval": [low, high], "n": n, "unit": "CER points"},
        "finding": (
            f"NovoGrad (lr {novo['lr']:g}) - SGD + momentum (lr {mom['lr']:g}): test CER "
            f"{estimate:+.1f} [{low:+.1f}, {high:+.1f}] points, WER {wer_estimate:+.1f} "
            f"[{wer_interval[0]:+.1f}, {wer_interval[1]:+.1f}] points; the paper: WER "
            f"{paper:+.2f} points (Jasper DR 10x5, LibriSpeech dev-clean)"
        ),
    }


def _learns(key: str) -> Check:
    return Check(
        statistic("mean", key),
        "<=",
        LEARNS,
        f"{key} left the blank-only plateau (CER 100 %), so the comparison is about the "
        "architecture, not about a budget too short to learn",
    )


CLAIMS = (
    MeasuredClaim(
        id="J1",
        claim=f"a Jasper-mini trained with CTC reaches a test CER below {TARGET_CER:g} %",
        setting="Jasper-mini 5x3 (block residuals), NovoGrad, lr tuned on validation CER",
        cell_keys=("mini_novograd",),
        rule_text=(
            "The learning rate with the lowest mean validation CER; the mean test CER of its "
            f"seeds with a {CONFIDENCE:.0%} t-interval. Reproduced if the upper end is below "
            f"{TARGET_CER:g} %; not reproduced if the lower end is above it; else inconclusive."
        ),
        measure=measure_target,
        paper={
            "statement": "Jasper DR 10x5 greedy WER 3.86 test-clean / 11.95 test-other "
            "(LibriSpeech 960 h); our target is a CPU-scale level, not the paper's number",
            "source": "arXiv:1904.03288, results on LibriSpeech",
        },
    ),
    Claim(
        id="J2",
        claim="without residual connections the deeper Jasper is clearly worse",
        setting=f"Jasper-mini 10x3, NovoGrad lr {DEEP_LR:g}: residual none vs block",
        preconditions=(_learns("deep_block"),),
        comparison=Comparison("deep_none", "deep_block", SUPERIORITY, CLEAR),
        paper={
            "statement": "residual connections are needed to train anything deeper than 5x3",
            "source": "arXiv:1904.03288, Section 2 (no number given)",
        },
    ),
    Claim(
        id="J3",
        claim="dense residuals (Jasper DR) are no worse than block residuals",
        setting=f"Jasper-mini 10x3, NovoGrad lr {DEEP_LR:g}: residual dense vs block",
        preconditions=(_learns("deep_block"),),
        comparison=Comparison("deep_block", "deep_dense", NON_INFERIORITY, DENSE_MARGIN),
        paper={
            "statement": "Jasper DR (dense residual) is the paper's best model",
            "source": "arXiv:1904.03288 (the comparison's numbers are not in our sources)",
        },
    ),
    MeasuredClaim(
        id="J4",
        claim="NovoGrad is no worse than SGD with momentum at equal epochs",
        setting="Jasper-mini 5x3, the same schedule and epochs, each optimizer at its rate "
        "tuned on validation CER",
        cell_keys=GRID_CELLS,
        rule_text=(
            "Per optimizer the learning rate with the lowest mean validation CER; the paired "
            f"(by seed) test CER difference NovoGrad - SGD with a {CONFIDENCE:.0%} t-interval. "
            "Judged only if both chosen rates lie inside their grids. Reproduced if the upper "
            f"end is below +{OPTIMIZER_MARGIN:g} points (non-inferior); not reproduced if the "
            "lower end is above 0 and the upper end is not below the margin; else inconclusive."
        ),
        measure=measure_optimizers,
        paper={
            "statement": "dev-clean greedy WER of Jasper DR 10x5: SGD + momentum 4.00, "
            "NovoGrad 3.64",
            "source": "arXiv:1905.11286, speech recognition results",
            "numbers": PAPER_OPTIMIZER_WER,
        },
    ),
)


# ----------------------------------------------------------------------------- outputs


def _curves(data: PaperData, key: str, metric: str) -> pd.DataFrame:
    frame = selected(data, key)
    curves = data.curves(key, metric)
    if frame.empty or curves.empty:
        return curves
    kept = set(frame["replica"].astype(int)) if "replica" in frame.columns else None
    if kept is not None and "replica" in curves.columns:
        curves = curves[curves["replica"].astype(int).isin(kept)]
    if metric.endswith(("_cer", "_wer")):
        curves = curves.assign(value=curves["value"] * 100.0)
    return curves


def plot_curves(data: PaperData, out_dir: Path) -> list[Path]:
    panels = (
        ("train_loss", "training CTC loss"),
        ("test_wer", "test WER (%)"),
        ("test_cer", "test CER (%)"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.0))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        drawn = False
        for key, name in LABELS.items():
            curves = _curves(data, key, metric)
            if curves.empty:
                continue
            plot_mean_band(ax, curves, name)
            drawn = True
        ax.set(xlabel="epoch", ylabel=label, title=label)
        if metric == "train_loss":
            ax.set_yscale("log")
        if drawn:
            ax.legend(fontsize=7)
        else:
            mark_not_run(ax)
    fig.suptitle("Jasper-mini on the espeak-ng corpus: mean +- sd over seeds (tuned lr)")
    fig.tight_layout()
    return save_figure(fig, out_dir, "curves")


def plot_ablation(data: PaperData, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    panels = ((None, "test CER (%)"), (WER, "test WER (%)"))
    for ax, (column, label) in zip(axes, panels, strict=True):
        for x, key in enumerate(LABELS):
            frame = selected(data, key)
            if frame.empty:
                ax.text(x, 2, "not run", ha="center", rotation=90, color="gray", fontsize=8)
                continue
            values = _percent(frame, column or data.spec.metric).to_numpy(float)
            ax.bar(x, np.nanmean(values), color="C0" if key.startswith("deep") else "C1")
            ax.plot(np.full(values.size, x), values, "k.", ms=6)
        ax.set_xticks(range(len(LABELS)), list(LABELS.values()), rotation=25, ha="right")
        ax.set(ylabel=label, title=f"{label}: tuned lr, dots are seeds")
    fig.tight_layout()
    return save_figure(fig, out_dir, "ablation")


def plot_lr(data: PaperData, out_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    drawn = False
    for key in GRID_CELLS:
        table = lr_table(data, key)
        if table.empty:
            continue
        ax.plot(table["lr"], table["validation"], "o-", label=f"{LABELS[key]}: validation")
        ax.plot(table["lr"], table["test"], "s--", label=f"{LABELS[key]}: test", alpha=0.6)
        drawn = True
    ax.set(xscale="log", xlabel="learning rate", ylabel="CER (%), mean over seeds",
           title="Learning-rate grids (the lowest validation CER is chosen)")  # fmt: skip
    if drawn:
        ax.legend(fontsize=7)
    else:
        mark_not_run(ax)
    fig.tight_layout()
    return save_figure(fig, out_dir, "lr_grids")


def results_markdown(data: PaperData) -> str:
    parts = [
        "# Jasper at CPU scale: results per cell\n",
        "Test CER and WER (%), mean +- sd over seeds, of the replicas used in the claims (for "
        "the learning-rate grids: the rate with the lowest mean validation CER). Lower is "
        "better; 100 % is the empty transcript.\n",
    ]
    rows = []
    for key, label in LABELS.items():
        frame = selected(data, key)
        if frame.empty:
            rows.append({"cell": label, "lr": "-", "test CER": "not run", "test WER": "",
                         "validation CER": "", "n": 0})  # fmt: skip
            continue
        lr = tuned(data, key)["lr"] if key in GRID_CELLS else DEEP_LR
        cer, wer = _percent(frame, data.spec.metric), _percent(frame, WER)
        val = _percent(frame, SELECTION)
        rows.append(
            {
                "cell": label,
                "lr": f"{lr:g}",
                "test CER": f"{cer.mean():.1f} +- {cer.std(ddof=1):.1f}",
                "test WER": f"{wer.mean():.1f} +- {wer.std(ddof=1):.1f}",
                "validation CER": f"{val.mean():.1f}",
                "n": len(frame),
            }
        )
    parts.append(markdown_table(pd.DataFrame(rows)) + "\n")
    for key in GRID_CELLS:
        table = lr_table(data, key)
        if table.empty:
            continue
        shown = table.assign(
            **{c: table[c].map("{:.1f}".format) for c in ("validation", "test", "wer")}
        ).drop(columns=["test_sd"])
        parts.append(f"## {LABELS[key]}: every learning rate of the grid\n")
        parts.append(markdown_table(shown) + "\n")
    return "\n".join(parts)


def write_outputs(data: PaperData, out_dir: Path) -> list[Path]:
    """The PaperSpec ``plot`` hook: curves, ablation bars, lr grids and results.md."""
    files = [*plot_curves(data, out_dir), *plot_ablation(data, out_dir), *plot_lr(data, out_dir)]
    files.append(write_text(out_dir / "results.md", results_markdown(data)))
    return files


PAPER = PaperSpec(
    name=NAME,
    title="Jasper (Li et al. 2019) and NovoGrad vs SGD + momentum on speech, at CPU scale "
    "(CTC on an offline espeak-ng corpus)",
    citation=CITATION,
    cells=CELLS,
    tables=(),
    claims=CLAIMS,
    plot=write_outputs,
    sweeps=(NAME,),
    script="scripts/jasper2019.py",
    metric="final.test_cer",
    lower_is_better=True,
    notes=(
        "Ours: test CER (%) of greedy CTC transcripts; per cell in claims.json, best (lowest) "
        "/ mean over every replica of the cell (grid cells: all learning rates); the claims "
        "use the replicas at the rate chosen on validation (results.md).",
        "The paper's numbers are for Jasper DR 10x5 on LibriSpeech 960 h: greedy WER 3.64 "
        "dev-clean / 3.86 test-clean / 11.95 test-other (arXiv:1904.03288); SGD + momentum "
        "dev-clean 4.00 against NovoGrad 3.64 (arXiv:1905.11286). The paper-scale configs "
        "experiment=jasper2019/paper/<cell> reproduce that setting on accelerators; they are "
        "not judged here.",
    ),
)
