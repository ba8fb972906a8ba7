"""Demo: the default run of ``python -m repro.train`` (conf/experiment/demo.yaml).

Neelakantan et al.'s deep MLP (20 x 50 ReLU, simple init, clip 10, plain SGD) on scikit-learn's
8x8 digits, with and without annealed gradient noise: ONE run whose replicas are a grid over
``noise.eta`` in {0.0, 0.3} x 4 seeds. The two cells select the replicas by their eta.
Not a paper; it exercises the whole chain (Hydra -> run dir -> tables, figures, claims.json)
in minutes on CPU. ``scripts/demo.py`` runs it and then this module.

Sanity checks, not published results:
D1 the network learns at all: the best replica of either arm beats twice chance (> 20 %);
D2 noise rescues the badly initialised deep network (Neelakantan et al.'s claim in
   miniature): paired mean difference noise - no noise >= 10 points, pairs matched on seed
   (replicas sharing a seed share their initial parameters and data order).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from repro.figures.core import (
    Cell,
    Claim,
    ClaimOutcome,
    PaperData,
    PaperSpec,
    TableSpec,
    mark_not_run,
    paired_difference,
    plot_mean_band,
    require_values,
    save_figure,
)

ETA = "noise.eta"
RESCUE_BY = 10.0  # points
LEARNS_ABOVE = 20.0  # percent: twice chance on 10 classes
PAIR_KEYS = ("seed",)

# Both cells are the replicas of one experiment, told apart by their grid value of eta.
CELLS = (
    Cell("no_noise", "demo", where=((ETA, 0.0),)),
    Cell("noise", "demo", where=((ETA, 0.3),)),
)

TABLES = (
    TableSpec(
        key="demo",
        title="Digits, 20 x 50 ReLU MLP, test accuracy % (best / average over replicas)",
        columns=("no noise", "with noise"),
        rows=(("simple init, clip 10", ("no_noise", "noise")),),
        note="No paper numbers: the demo only checks that the pipeline runs end to end.",
    ),
)


def noise_rescues(data: PaperData) -> ClaimOutcome:
    paired = paired_difference(data, "noise", "no_noise", PAIR_KEYS)
    ours = {
        key: {"best": float(v.max()), "mean": float(v.mean()), "n": int(v.size)}
        for key, v in (
            ("no_noise", require_values(data, "no_noise")),
            ("noise", require_values(data, "noise")),
        )
    }
    ours["paired"] = paired
    return ClaimOutcome(paired["mean_diff"] >= RESCUE_BY, ours)


def learns(data: PaperData) -> ClaimOutcome:
    best = {key: float(require_values(data, key).max()) for key in ("no_noise", "noise")}
    return ClaimOutcome(max(best.values()) > LEARNS_ABOVE, {"best": best})


CLAIMS = (
    Claim(
        id="D1",
        claim="demo sanity check: the network learns (beats twice chance)",
        setting="digits, 20 x 50 ReLU MLP, clip 10, SGD lr 0.05: noise.eta 0 and 0.3",
        rule=f"max over the replicas of both arms > {LEARNS_ABOVE} %",
        cells=("no_noise", "noise"),
        paper={"statement": "no paper value (demo)", "value": None},
        evaluate=learns,
    ),
    Claim(
        id="D2",
        claim="gradient noise rescues a badly initialised 20-layer MLP on digits",
        setting="digits, 20 x 50 ReLU MLP, clip 10, SGD lr 0.05: noise.eta 0 vs 0.3",
        rule=f"paired mean difference noise - no noise >= {RESCUE_BY} points "
        "(pairs matched on seed)",
        cells=("no_noise", "noise"),
        paper={"statement": "no paper value (demo)", "value": None},
        evaluate=noise_rescues,
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
)
