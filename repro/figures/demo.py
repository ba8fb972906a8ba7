"""Demo: a small MLP on scikit-learn's digits, SGD with vs without annealed gradient noise.

Not a paper; it exercises the whole chain (Hydra sweep -> run dirs -> tables, figures,
claims.json) in a minute on CPU. ``scripts/demo.py`` runs both cells and then this module.

Claim D1 (a sanity check, not a published result): on a shallow network noise should neither
help nor hurt much -- paired mean difference noise - no noise > -2 points, pairs matched on
(seed, optimizer.learning_rate) when the grid has a learning rate, else on seed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from repro.figures.core import (
    Cell,
    Claim,
    ClaimOutcome,
    NotEvaluableError,
    PaperData,
    PaperSpec,
    TableSpec,
    mark_not_run,
    paired_difference,
    plot_mean_band,
    require_values,
    save_figure,
)

LEARNING_RATE = "optimizer.learning_rate"
NOT_WORSE_BY = 2.0  # points

CELLS = (
    Cell("no_noise", "demo/no_noise"),
    Cell("noise", "demo/noise"),
)

TABLES = (
    TableSpec(
        key="demo",
        title="Digits MLP, test accuracy % (best / average over replicas)",
        columns=("no noise", "with noise"),
        rows=(("digits MLP", ("no_noise", "noise")),),
        note="No paper numbers: the demo only checks that the pipeline runs end to end.",
    ),
)


def noise_not_worse(data: PaperData) -> ClaimOutcome:
    keys = ("seed", LEARNING_RATE)
    try:
        paired = paired_difference(data, "noise", "no_noise", keys)
    except NotEvaluableError:
        paired = paired_difference(data, "noise", "no_noise", ("seed",))
    ours = {
        key: {"best": float(v.max()), "mean": float(v.mean()), "n": int(v.size)}
        for key, v in (
            ("no_noise", require_values(data, "no_noise")),
            ("noise", require_values(data, "noise")),
        )
    }
    ours["paired"] = paired
    return ClaimOutcome(paired["mean_diff"] > -NOT_WORSE_BY, ours)


CLAIMS = (
    Claim(
        id="D1",
        claim="demo sanity check: gradient noise does not hurt a shallow MLP on digits",
        setting="digits MLP, SGD vs noisy SGD (eta 0.01, gamma 0.55)",
        rule=f"paired mean difference noise - no noise > -{NOT_WORSE_BY} points "
        f"(pairs on seed and {LEARNING_RATE} when present)",
        cells=("no_noise", "noise"),
        paper={"statement": "no paper value (demo)", "value": None},
        evaluate=noise_not_worse,
    ),
)


def plot(data: PaperData, out_dir: Path) -> list[Path]:
    """curves.{png,pdf}: mean test accuracy per epoch with a +-1 std band, per cell."""
    fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
    drawn = False
    for key, label, color in (("no_noise", "no noise", "C0"), ("noise", "noise", "C1")):
        curves = data.curves(key)
        if not curves.empty:
            plot_mean_band(ax, curves, label, color=color)
            drawn = True
    if drawn:
        ax.legend()
    else:
        mark_not_run(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("digits MLP: SGD vs noisy SGD (mean +- std over replicas)", fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, out_dir, "curves")


PAPER = PaperSpec(
    name="demo",
    title="Demo: digits MLP with vs without gradient noise",
    cells=CELLS,
    tables=TABLES,
    claims=CLAIMS,
    plot=plot,
    sweeps=("demo",),
    script="scripts/demo.py",
    breakdown=LEARNING_RATE,
)
