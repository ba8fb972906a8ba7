"""NovoGrad (Ginsburg et al. 2019, arXiv:1905.11286) at CPU scale: memory, large-batch
scaling, learning-rate robustness and "no warmup needed", against SGD with momentum, Adam,
AdamW, LAMB and LARS (PREREGISTRATION.md beside the outputs fixes every choice).

Cells (conf/experiment/novograd2019/, one job per optimizer and batch size, 8 learning rates
x 2 seeds as replicas): ``<model>_<optimizer>_b<B>`` for model ``mlp`` (2 x 100 ReLU) and
``cnn`` (the small CNN), B in BATCHES, plus ``mlp_adam_warmup_b512``. Learning rates are
stated at batch 64 and scaled by sqrt(B / 64); per cell the learning rate is the one with
the best mean validation accuracy (10k images held out of the training set), and our number
is the test accuracy of its replicas.

Claims (``../shared/docs/papers.md`` section 2, CPU-scale verdicts 1-3, and the issue's
warmup arm):

- N1 memory: NovoGrad's optimizer state <= 0.55 x Adam's bytes, on every model;
- N2 batch scaling, per model: from batch 64 to 8192, NovoGrad loses no more test accuracy
  than SGD with momentum, Adam and AdamW (LAMB and LARS reported beside);
- N3 learning-rate robustness (MLP, batch 512): at least as many grid learning rates within
  1 point of the best test accuracy as Adam;
- N4 no warmup (MLP, batch 512): NovoGrad without warmup is non-inferior (1 point) to Adam
  with a one-epoch linear warmup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from repro.aggregate import markdown_table
from repro.figures.core import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    Cell,
    MeasuredClaim,
    NotEvaluableError,
    PaperData,
    PaperSpec,
    checked,
    mark_not_run,
    save_figure,
)
from repro.figures.files import read_beside_runs, write_json, write_text
from repro.figures.novograd2019_memory import FILE_NAME as MEMORY_FILE
from repro.figures.novograd2019_memory import MODELS, OPTIMIZERS, problem_overrides
from repro.figures.tuning import choose_rate

NAME = "novograd2019"
CITATION = (
    "Ginsburg, Castonguay, Hrinchuk, Kuchaiev, Lavrukhin, Leary, Li, Nguyen, Zhang & Cohen "
    "2019, Stochastic Gradient Methods with Layer-wise Adaptive Moments for Training of Deep "
    "Networks (arXiv:1905.11286)"
)
LABELS = {
    "novograd": "NovoGrad",
    "momentum": "SGD + momentum",
    "adam": "Adam",
    "adamw": "AdamW",
    "lamb": "LAMB",
    "lars": "LARS",
    "adam_warmup": "Adam + warmup",
}
REQUIRED_BASELINES = ("momentum", "adam", "adamw")  # papers.md verdict 3; LAMB/LARS extra
BATCHES = (64, 512, 2048, 8192)
SMALL_BATCH, LARGE_BATCH = 64, 8192
ROBUSTNESS_BATCH = 512
BASE_BATCH = 64  # learning rates are stated here and scaled by sqrt(B / BASE_BATCH)
LR = "optimizer.learning_rate"
SELECTION = "final.validation_accuracy"
MEMORY_RATIO = 0.55  # N1
SCALING_MARGIN = 1.0  # N2: NovoGrad's extra loss from 64 to 8192, points
WITHIN = 1.0  # N3: a learning rate counts if its mean test accuracy is within this of the best
WARMUP_MARGIN = 1.0  # N4: non-inferiority margin, points
TRAINS = 90.0  # precondition: the small-batch cells reach this mean test accuracy
CONFIDENCE = 0.95


def cell_key(model: str, optimizer: str, batch: int) -> str:
    return f"{model}_{optimizer}_b{batch}"


def _cell(model: str, optimizer: str, batch: int) -> Cell:
    name = f"{NAME}/{model}_{optimizer}"
    return Cell(cell_key(model, optimizer, batch), name, overrides=(f"trainer.batch_size={batch}",))


WARMUP_KEY = cell_key("mlp", "adam_warmup", ROBUSTNESS_BATCH)
CELLS = (
    *(_cell(m, o, b) for m in MODELS for o in OPTIMIZERS for b in BATCHES),
    _cell("mlp", "adam_warmup", ROBUSTNESS_BATCH),
)
BATCH_OF = {cell.key: int(cell.overrides[0].split("=")[1]) for cell in CELLS}


# ----------------------------------------------------------------------------- tuning


def lr_table(data: PaperData, key: str) -> pd.DataFrame:
    """One row per grid learning rate of a cell: validation and test means over seeds (%)."""
    frame = data.cell(key)
    columns = ["lr", "effective_lr", "n", "validation", "test", "test_sd", "diverged"]
    if frame.empty or LR not in frame.columns:
        return pd.DataFrame(columns=columns)
    scale = math.sqrt(BATCH_OF[key] / BASE_BATCH)
    rows = []
    for lr, group in frame.groupby(LR, sort=True):
        test = pd.to_numeric(group[data.spec.metric], errors="coerce").fillna(0.0) * 100
        val = pd.to_numeric(group.get(SELECTION), errors="coerce").fillna(0.0) * 100
        rows.append(
            {
                "lr": float(lr),
                "effective_lr": float(lr) * scale,
                "n": len(group),
                "validation": float(val.mean()),
                "test": float(test.mean()),
                "test_sd": float(test.std(ddof=1)) if len(group) > 1 else math.nan,
                "diverged": int(group["diverged"].astype(bool).sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def tuned(data: PaperData, key: str) -> dict[str, Any]:
    """The cell at its validation-chosen learning rate (ties: the smaller rate)."""
    choice = choose_rate(lr_table(data, key), data.cell(key), LR, False, key)
    row, chosen = choice.row, choice.replicas
    per_seed = pd.to_numeric(chosen[data.spec.metric], errors="coerce").fillna(0.0) * 100
    return {
        "key": key,
        "lr": float(row["lr"]),
        "effective_lr": float(row["effective_lr"]),
        "validation": float(row["validation"]),
        "test": float(row["test"]),
        "test_sd": float(row["test_sd"]),
        "n": int(row["n"]),
        "edge": choice.edge,
        "per_seed": dict(zip(chosen["seed"].astype(int), per_seed.astype(float), strict=True)),
    }


def pooled_sd(entries: Sequence[Mapping[str, Any]]) -> tuple[float, int]:
    """(pooled seed-to-seed sd of the tuned cells' test accuracy, its degrees of freedom)."""
    squares = sum((e["n"] - 1) * e["test_sd"] ** 2 for e in entries if e["n"] > 1)
    df = sum(e["n"] - 1 for e in entries if e["n"] > 1)
    if df == 0:
        raise NotEvaluableError("no tuned cell has two seeds: no seed-to-seed spread")
    return math.sqrt(squares / df), df


def _interval(estimate: float, se: float, df: int) -> list[float]:
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
    return [estimate - half, estimate + half]


def _interior(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    edges = [e["key"] for e in entries if e["edge"]]
    rule = "every chosen learning rate is inside its grid (not an end: the grid bracketed it)"
    if edges:
        rule += f"; at an end: {', '.join(edges)}"
    return checked(rule, len(edges), 0, not edges)


# ----------------------------------------------------------------------------- N1 memory


def read_memory(run_paths: Sequence[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The first ``memory.json`` directly under a run path (written beside the sweep)."""
    return read_beside_runs(run_paths, MEMORY_FILE)


def measure_memory(data: PaperData) -> dict[str, Any]:
    found = read_memory(data.run_paths)
    if found is None:
        searched = ", ".join(str(p) for p in data.run_paths) or "none"
        return {"verdict": NOT_RUN, "finding": f"no {MEMORY_FILE} in the run paths ({searched})"}
    path, memory = found
    if list(memory.get("overrides", [])) != problem_overrides(data.overrides):
        finding = (
            f"{path} was measured with overrides {memory.get('overrides')}, the runs with "
            f"{problem_overrides(data.overrides)}: not used"
        )
        return {"verdict": NOT_RUN, "finding": finding}
    requirements = []
    for model, cells in memory["models"].items():
        ratio = cells["novograd"]["state_ratio_to_adam"]
        rule = f"{model}: NovoGrad state / Adam state <= {MEMORY_RATIO:g}"
        requirements.append(checked(rule, ratio, MEMORY_RATIO, ratio <= MEMORY_RATIO))
    verdict = REPRODUCED if all(c["passed"] for c in requirements) else NOT_REPRODUCED
    parts = [f"{path}:"] + [
        f"{model}: state {c['novograd']['state_ratio_to_adam']:.4f} x Adam's "
        f"({c['novograd']['state_bytes']:,d} vs {c['adam']['state_bytes']:,d} bytes), "
        f"compiled step peak {c['novograd']['peak_ratio_to_adam']:.3f} x"
        for model, c in memory["models"].items()
    ]
    return {"verdict": verdict, "requirements": requirements, "finding": " ".join(parts)}


# ----------------------------------------------------------------------------- N2 scaling


def scaling_differences(data: PaperData, model: str) -> dict[str, Any]:
    """Per baseline: (NovoGrad's drop from SMALL to LARGE batch) - (the baseline's), points,
    with a t-interval from the seed spread pooled over the tuned cells at each batch."""
    tuned_at = {
        batch: {opt: tuned(data, cell_key(model, opt, batch)) for opt in OPTIMIZERS}
        for batch in (SMALL_BATCH, LARGE_BATCH)
    }
    spread = {batch: pooled_sd(list(tuned_at[batch].values())) for batch in tuned_at}
    df = min(d for _, d in spread.values())

    def drop(opt: str) -> float:
        return tuned_at[SMALL_BATCH][opt]["test"] - tuned_at[LARGE_BATCH][opt]["test"]

    differences = {}
    for opt in OPTIMIZERS:
        if opt == "novograd":
            continue
        variance = sum(
            spread[b][0] ** 2 * (1 / tuned_at[b]["novograd"]["n"] + 1 / tuned_at[b][opt]["n"])
            for b in tuned_at
        )
        estimate = drop("novograd") - drop(opt)
        differences[opt] = {
            "estimate": estimate,
            "interval": _interval(estimate, math.sqrt(variance), df),
            "drop": drop(opt),
        }
    return {"tuned": tuned_at, "drop_novograd": drop("novograd"), "differences": differences}


def measure_scaling(model: str) -> Any:
    def measure(data: PaperData) -> dict[str, Any]:
        found = scaling_differences(data, model)
        involved = [
            found["tuned"][b][o] for b in found["tuned"] for o in ("novograd", *REQUIRED_BASELINES)
        ]
        small = [found["tuned"][SMALL_BATCH][o]["test"] for o in ("novograd", *REQUIRED_BASELINES)]
        preconditions = [
            _interior(involved),
            checked(
                f"every batch-{SMALL_BATCH} cell trains: mean test accuracy >= {TRAINS:g} %",
                min(small),
                TRAINS,
                min(small) >= TRAINS,
            ),
        ]
        requirements, worst = [], None
        for opt in REQUIRED_BASELINES:
            diff = found["differences"][opt]
            high = diff["interval"][1]
            rule = (
                f"NovoGrad's drop minus {LABELS[opt]}'s: 95 % interval upper end "
                f"< +{SCALING_MARGIN:g} points"
            )
            requirements.append(checked(rule, high, SCALING_MARGIN, high < SCALING_MARGIN))
            if worst is None or diff["estimate"] > worst[1]["estimate"]:
                worst = (opt, diff)
        measurably_worse = [
            o for o in REQUIRED_BASELINES if found["differences"][o]["interval"][0] > 0
        ]
        if not all(c["passed"] for c in preconditions):
            verdict = INCONCLUSIVE
        elif all(c["passed"] for c in requirements):
            verdict = REPRODUCED
        elif measurably_worse:
            verdict = NOT_REPRODUCED
        else:
            verdict = INCONCLUSIVE
            preconditions.append(
                checked(
                    "each interval is resolved (upper end < margin, or lower end > 0)",
                    0,
                    1,
                    False,
                )
            )
        drops = ", ".join(
            f"{LABELS[o]} {found['differences'][o]['drop']:+.1f}" for o in found["differences"]
        )
        opt, diff = worst
        finding = (
            f"test-accuracy drop from batch {SMALL_BATCH} to {LARGE_BATCH}: NovoGrad "
            f"{found['drop_novograd']:+.1f}, {drops} points; worst required comparison: "
            f"{LABELS[opt]}"
        )
        n = found["tuned"][LARGE_BATCH]["novograd"]["n"]
        effect = {"estimate": diff["estimate"], "interval": diff["interval"], "n": n}
        return {
            "verdict": verdict,
            "preconditions": preconditions,
            "requirements": requirements,
            "effect": effect,
            "finding": finding,
        }

    return measure


# ----------------------------------------------------------------------------- N3, N4


def within_best(table: pd.DataFrame, column: str = "test") -> np.ndarray:
    """Mask of the grid rates whose mean accuracy is within WITHIN points of the best."""
    values = table[column].to_numpy(float)
    return values >= values.max() - WITHIN


def _seed_counts(data: PaperData, key: str) -> dict[int, int]:
    frame = data.cell(key)
    counts = {}
    for seed, group in frame.groupby("seed"):
        values = pd.to_numeric(group.sort_values(LR)[data.spec.metric], errors="coerce")
        values = values.fillna(0.0).to_numpy(float) * 100
        counts[int(seed)] = int(np.sum(values >= values.max() - WITHIN))
    return counts


def measure_robustness(data: PaperData) -> dict[str, Any]:
    keys = {o: cell_key("mlp", o, ROBUSTNESS_BATCH) for o in ("novograd", "adam")}
    tables = {o: lr_table(data, k) for o, k in keys.items()}
    masks = {o: within_best(t) for o, t in tables.items()}
    counts = {o: int(m.sum()) for o, m in masks.items()}
    at_end = [keys[o] for o, m in masks.items() if m[0] or m[-1]]
    preconditions = [
        checked(
            "neither within-1-point set includes an end of its grid (the grid would cut the "
            "count)" + (f"; at an end: {', '.join(at_end)}" if at_end else ""),
            len(at_end),
            0,
            not at_end,
        )
    ]
    seeds = {o: _seed_counts(data, k) for o, k in keys.items()}
    shared = sorted(set(seeds["novograd"]) & set(seeds["adam"]))
    per_seed = [seeds["novograd"][s] >= seeds["adam"][s] for s in shared]
    holds = counts["novograd"] >= counts["adam"]
    requirements = [
        checked(
            f"learning rates within {WITHIN:g} point of the best (mean over seeds): NovoGrad "
            f">= Adam ({counts['adam']})",
            counts["novograd"],
            counts["adam"],
            holds,
        )
    ]
    if not preconditions[0]["passed"]:
        verdict = INCONCLUSIVE
    elif holds and all(per_seed):
        verdict = REPRODUCED
    elif not holds and not any(per_seed):
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
        preconditions.append(
            checked(
                "the seeds agree with the mean (every seed's count gives the same answer)",
                sum(per_seed),
                len(per_seed),
                False,
            )
        )
    finding = (
        f"within {WITHIN:g} point of the best at batch {ROBUSTNESS_BATCH}: NovoGrad "
        f"{counts['novograd']} of {len(masks['novograd'])} rates, Adam {counts['adam']} of "
        f"{len(masks['adam'])}; per seed NovoGrad {list(seeds['novograd'].values())}, Adam "
        f"{list(seeds['adam'].values())}"
    )
    return {
        "verdict": verdict,
        "preconditions": preconditions,
        "requirements": requirements,
        "effect": None,
        "finding": finding,
    }


def measure_warmup(data: PaperData) -> dict[str, Any]:
    arms = {
        "novograd": tuned(data, cell_key("mlp", "novograd", ROBUSTNESS_BATCH)),
        "adam_warmup": tuned(data, WARMUP_KEY),
    }
    adam_key = cell_key("mlp", "adam", ROBUSTNESS_BATCH)
    adam = tuned(data, adam_key) if data.has(adam_key) else None
    others = [cell_key("mlp", o, ROBUSTNESS_BATCH) for o in OPTIMIZERS if o != "novograd"]
    at_batch = [tuned(data, key) for key in others if data.has(key)]
    # The seed spread pooled over every arm that ran at this batch (the two compared at least).
    sd, df = pooled_sd([arms["novograd"], arms["adam_warmup"], *at_batch])
    novo, warm = arms["novograd"], arms["adam_warmup"]
    estimate = novo["test"] - warm["test"]
    se = sd * math.sqrt(1 / novo["n"] + 1 / warm["n"])
    low, high = _interval(estimate, se, df)
    preconditions = [_interior([novo, warm])]
    requirements = [
        checked(
            f"NovoGrad (no warmup) - Adam with warmup: 95 % interval lower end > "
            f"-{WARMUP_MARGIN:g} points",
            low,
            -WARMUP_MARGIN,
            low > -WARMUP_MARGIN,
        )
    ]
    if not preconditions[0]["passed"]:
        verdict = INCONCLUSIVE
    elif requirements[0]["passed"]:
        verdict = REPRODUCED
    elif high < 0:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
        preconditions.append(
            checked("the interval is resolved (lower end > -margin, or upper end < 0)", 0, 1, False)
        )
    finding = (
        f"tuned test accuracy at batch {ROBUSTNESS_BATCH}: NovoGrad {novo['test']:.2f}, Adam "
        f"with warmup {warm['test']:.2f}"
    )
    if adam is not None:
        finding += (
            f", Adam without {adam['test']:.2f} (warmup changes Adam by "
            f"{warm['test'] - adam['test']:+.2f} points)"
        )
    return {
        "verdict": verdict,
        "preconditions": preconditions,
        "requirements": requirements,
        "effect": {"estimate": estimate, "interval": [low, high], "n": novo["n"]},
        "finding": finding,
    }


def _scaling_claim(model: str) -> MeasuredClaim:
    cells = tuple(cell_key(model, o, b) for o in OPTIMIZERS for b in (SMALL_BATCH, LARGE_BATCH))
    return MeasuredClaim(
        id=f"N2-{model}",
        claim="NovoGrad keeps its accuracy at large batch better than the alternatives",
        setting=f"{model}, batch {SMALL_BATCH} -> {LARGE_BATCH}, sqrt lr scaling, 5 epochs, "
        "lr tuned on validation",
        cell_keys=cells,
        rule_text=(
            f"Per optimizer, the learning rate with the best mean validation accuracy; the drop "
            f"is its test accuracy at batch {SMALL_BATCH} minus at {LARGE_BATCH}. For each of "
            f"{', '.join(LABELS[o] for o in REQUIRED_BASELINES)}: NovoGrad's drop minus the "
            f"baseline's, with a {CONFIDENCE:.0%} t-interval from the seed spread pooled over "
            "the tuned cells of each batch. Judged only if every chosen rate is inside its grid "
            f"and every batch-{SMALL_BATCH} cell reaches {TRAINS:g} %. Reproduced if every "
            f"upper end is below +{SCALING_MARGIN:g} point; not reproduced if some lower end is "
            "above 0 (NovoGrad measurably loses more); else inconclusive."
        ),
        measure=measure_scaling(model),
        paper={
            "statement": "better than other methods at very large batch (ResNet-50 up to 32K)",
            "source": "abstract; the large-batch table could not be read",
        },
    )


CLAIMS = (
    MeasuredClaim(
        id="N1",
        claim="NovoGrad needs about half of Adam's optimizer memory",
        setting="optimizer state of the MLP and the CNN (shapes of the state pytree)",
        rule_text=(
            f"Reproduced if NovoGrad's state bytes are <= {MEMORY_RATIO:g} x Adam's on every "
            f"model in {MEMORY_FILE} (python -m repro.figures.novograd2019_memory); else not "
            "reproduced; not run without the file."
        ),
        measure=measure_memory,
        paper={"statement": "half of Adam's memory", "source": "abstract"},
    ),
    *(_scaling_claim(model) for model in MODELS),
    MeasuredClaim(
        id="N3",
        claim="NovoGrad is robust to the choice of learning rate",
        setting=f"mlp, batch {ROBUSTNESS_BATCH}, 8 rates over 3.5 decades, no warmup",
        cell_keys=(
            cell_key("mlp", "novograd", ROBUSTNESS_BATCH),
            cell_key("mlp", "adam", ROBUSTNESS_BATCH),
        ),
        rule_text=(
            f"Count the grid learning rates whose mean test accuracy is within {WITHIN:g} point "
            "of the best rate's. Judged only if neither set includes an end of its grid. "
            "Reproduced if NovoGrad's count >= Adam's on the mean over seeds and on every "
            "seed; not reproduced if it is smaller on the mean and on every seed; else "
            "inconclusive."
        ),
        measure=measure_robustness,
        paper={"statement": "robust to the choice of learning rate", "source": "abstract"},
    ),
    MeasuredClaim(
        id="N4",
        claim="NovoGrad needs no learning-rate warmup",
        setting=f"mlp, batch {ROBUSTNESS_BATCH}: NovoGrad without warmup vs Adam with a "
        "1-epoch linear warmup, lr tuned on validation",
        cell_keys=(cell_key("mlp", "novograd", ROBUSTNESS_BATCH), WARMUP_KEY),
        rule_text=(
            "Tuned test accuracy of NovoGrad without warmup minus Adam with warmup, with a "
            f"{CONFIDENCE:.0%} t-interval from the seed spread pooled over the tuned cells at "
            f"batch {ROBUSTNESS_BATCH}. Judged only if both chosen rates are inside their "
            f"grids. Reproduced if the lower end is above -{WARMUP_MARGIN:g} point "
            "(non-inferior); not reproduced if the upper end is below 0; else inconclusive."
        ),
        measure=measure_warmup,
        paper={"statement": "no warmup needed", "source": "abstract"},
    ),
)


# ----------------------------------------------------------------------------- outputs


def tuned_frame(data: PaperData, model: str) -> pd.DataFrame:
    """One row per (optimizer, batch) that ran: chosen rate, validation and test accuracy."""
    rows = []
    for opt in OPTIMIZERS:
        for batch in BATCHES:
            key = cell_key(model, opt, batch)
            if not data.has(key):
                continue
            entry = tuned(data, key)
            rows.append({"optimizer": opt, "batch": batch, **entry})
    return pd.DataFrame(rows)


def plot_batch_scaling(data: PaperData, out_dir: Path) -> list[Path]:
    fig, axes = plt.subplots(1, len(MODELS), figsize=(5.2 * len(MODELS), 3.8), squeeze=False)
    for ax, model in zip(axes[0], MODELS, strict=True):
        frame = tuned_frame(data, model)
        ax.set(title=f"{model}: tuned lr, 5 epochs", xlabel="batch size", xscale="log")
        ax.set_ylabel("test accuracy (%)")
        if frame.empty:
            mark_not_run(ax)
            continue
        for opt, rows in frame.groupby("optimizer", sort=False):
            ax.errorbar(rows["batch"], rows["test"], yerr=rows["test_sd"].fillna(0.0),
                        marker="o", capsize=3, label=LABELS[opt],
                        lw=2.2 if opt == "novograd" else 1.2)  # fmt: skip
        ax.set_xticks(list(BATCHES), [str(b) for b in BATCHES])
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out_dir, "batch_scaling")


def plot_lr_robustness(data: PaperData, out_dir: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    arms = [*OPTIMIZERS, "adam_warmup"]
    drawn = False
    for opt in arms:
        table = lr_table(data, cell_key("mlp", opt, ROBUSTNESS_BATCH))
        if table.empty:
            continue
        best = table["lr"].to_numpy()[int(np.argmax(table["test"].to_numpy()))]
        ax.errorbar(table["lr"] / best, table["test"], yerr=table["test_sd"].fillna(0.0),
                    marker="o", capsize=2, label=LABELS[opt],
                    ls="--" if opt == "adam_warmup" else "-")  # fmt: skip
        drawn = True
    ax.set(xscale="log", xlabel="learning rate / the optimizer's best (test) rate",
           ylabel="test accuracy (%)",
           title=f"mlp, batch {ROBUSTNESS_BATCH}: accuracy over each lr grid")  # fmt: skip
    if drawn:
        ax.legend(fontsize=7)
    else:
        mark_not_run(ax)
    fig.tight_layout()
    return save_figure(fig, out_dir, "lr_robustness")


def tuned_markdown(data: PaperData) -> str:
    parts = [
        "# NovoGrad study: the learning rate chosen per optimizer and batch\n",
        f"Chosen on the validation split (mean over seeds of `{SELECTION}`); test accuracy of "
        "its replicas, mean and sd over seeds (%). `lr`: the base rate at batch "
        f"{BASE_BATCH}; the run used lr x sqrt(B / {BASE_BATCH}). `edge`: the chosen rate is "
        "an end of the grid.\n",
    ]
    for model in MODELS:
        frame = tuned_frame(data, model)
        parts.append(f"## {model}\n")
        if frame.empty:
            parts.append("not run\n")
            continue
        table = pd.DataFrame(
            {
                "optimizer": frame["optimizer"].map(LABELS),
                "batch": frame["batch"],
                "lr": frame["lr"].map("{:.4g}".format),
                "effective lr": frame["effective_lr"].map("{:.4g}".format),
                "validation": frame["validation"].map("{:.2f}".format),
                "test": frame["test"].map("{:.2f}".format),
                "test sd": frame["test_sd"].map("{:.2f}".format),
                "n": frame["n"],
                "edge": frame["edge"].map({True: "yes", False: ""}),
            }
        )
        parts.append(markdown_table(table) + "\n")
    return "\n".join(parts)


def memory_markdown(memory: Mapping[str, Any] | None) -> str:
    parts = ["# NovoGrad study: optimizer memory\n"]
    if memory is None:
        return "\n".join([*parts, f"not run: no {MEMORY_FILE} in the run paths\n"])
    parts.append(
        f"Optimizer-state bytes from the state pytree; XLA's memory analysis of one compiled "
        f"train step at batch {memory['batch_size']} on `{memory['backend']}` (arguments: "
        "parameters, state and the batch).\n"
    )
    for model, cells in memory["models"].items():
        rows = [
            {
                "optimizer": LABELS[opt],
                "parameters": f"{c['num_params']:,d}",
                "state bytes": f"{c['state_bytes']:,d}",
                "state / Adam": f"{c['state_ratio_to_adam']:.4f}",
                "state / parameters": f"{c['state_bytes'] / c['param_bytes']:.4f}",
                "step temporaries": f"{c['step']['temporary']:,d}",
                "step peak": f"{c['step']['peak']:,d}",
                "peak / Adam": f"{c['peak_ratio_to_adam']:.3f}",
            }
            for opt, c in cells.items()
        ]
        parts.append(f"## {model}\n")
        parts.append(markdown_table(pd.DataFrame(rows)) + "\n")
    return "\n".join(parts)


def write_outputs(data: PaperData, out_dir: Path) -> list[Path]:
    """The PaperSpec ``plot`` hook: both figures, tuned.md, memory.md and memory.json."""
    files = [*plot_batch_scaling(data, out_dir), *plot_lr_robustness(data, out_dir)]
    files.append(write_text(out_dir / "tuned.md", tuned_markdown(data)))
    found = read_memory(data.run_paths)
    files.append(write_text(out_dir / "memory.md", memory_markdown(found and found[1])))
    if found is not None and found[0].resolve() != (out_dir / MEMORY_FILE).resolve():
        files.append(write_json(out_dir / MEMORY_FILE, found[1]))
    return files


PAPER = PaperSpec(
    name=NAME,
    title="NovoGrad (Ginsburg et al. 2019) against SGD+momentum, Adam, AdamW, LAMB and LARS "
    "(MNIST, CPU scale)",
    citation=CITATION,
    cells=CELLS,
    tables=(),
    claims=CLAIMS,
    plot=write_outputs,
    sweeps=(NAME,),
    script="scripts/novograd2019.py",
    notes=(
        "Ours: per cell, the test accuracy of the replicas at the learning rate chosen on the "
        "validation split (tuned.md); the per-cell best / mean in claims.json are over every "
        "replica of the grid.",
        "The paper's own numbers are for ResNet-50 v2 on ImageNet, 100 epochs (top-1: SGD + "
        "momentum 76.38, AdamW 76.36, NovoGrad 77.00; arXiv:1905.11286, ImageNet table): "
        "the paper-scale configs experiment=novograd2019/paper/resnet50_<optimizer> "
        "reproduce that setting on accelerators; they are not judged here.",
    ),
)
