"""Demo: the default run of ``python -m repro.train`` (conf/experiment/demo.yaml).

Neelakantan et al.'s deep MLP (20 x 50 ReLU, simple init, clip 10, plain SGD) on scikit-learn's
8x8 digits, with and without annealed gradient noise: ONE run whose replicas are a grid over
``noise.eta`` in {0.0, 0.3} x 4 seeds. The two cells select the replicas by their eta.
Not a paper; it exercises the whole chain (Hydra -> run dir -> tables, figures, claims.json)
in minutes on CPU. ``scripts/demo.py`` runs it and then this module.

Sanity checks, not published results:
D1 the network learns at all: the best replica of either arm beats twice chance (> 20 %);
D2 noise rescues the badly initialised deep network (Neelakantan et al.'s claim in
   miniature): the paired difference noise - no noise (pairs matched on seed: replicas
   sharing a seed share their initial parameters and data order) has a 95 % interval above 0
   and a mean of at least 10 points.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from repro.figures.core import (
    SUPERIORITY,
    Cell,
    Check,
    Claim,
    Comparison,
    PaperData,
    PaperSpec,
    TableSpec,
    mark_not_run,
    plot_mean_band,
    save_figure,
    statistic,
)

ETA = "noise.eta"
RESCUE_BY = 10.0  # points
LEARNS_ABOVE = 20.0  # percent: twice chance on 10 classes
PAIR_KEYS = ("seed",)
SETTING = "digits, 20 x 50 ReLU MLP, clip 10, SGD lr 0.05: noise.eta 0 vs 0.3"
NO_PAPER = {"statement": "no paper value (demo)", "source": ""}

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

CLAIMS = (
    Claim(
        id="D1",
        claim="demo sanity check: the network learns (beats twice chance)",
        setting=SETTING,
        requirements=(
            Check(statistic("max", "no_noise", "noise"), ">", LEARNS_ABOVE, "twice chance"),
        ),
        paper=NO_PAPER,
    ),
    Claim(
        id="D2",
        claim="gradient noise rescues a badly initialised 20-layer MLP on digits",
        setting=SETTING,
        comparison=Comparison("noise", "no_noise", SUPERIORITY, RESCUE_BY, PAIR_KEYS),
        paper=NO_PAPER,
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
    citation="none; a check of the pipeline on Neelakantan et al. 2015 (arXiv:1511.06807, "
    "Table 1) in miniature, on scikit-learn's digits",
    script="scripts/demo.py",
)
