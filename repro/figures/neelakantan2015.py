"""Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very Deep Networks".

arXiv:1511.06807, Section 4.1 and Table 1: MNIST, 20 hidden layers x 50 ReLU units, plain
SGD with learning rates {0.1, 0.01} x 20 seeds = 40 replicas per cell, annealed gradient
noise sigma_t^2 = eta / (1 + t)^0.55 with eta = 0.01. Our per-run number is each replica's
final test accuracy (percent); the paper reports best / average over its 40 runs (Table 1)
without saying whether the per-run number is the last or the best epoch.

Claims (rules: :mod:`repro.figures.verdicts`; the rule text in claims.json is generated from
the constants below). Differences are paired on (seed, learning rate).

1. zero init: every no-noise run stays at chance (max <= 12.4 %) and noise lifts the mean
   by >= 30 points (95 % interval above 0); paper: +39.6 points.
2. simple init (per clipping setting), judged only if the no-noise baseline leaves chance
   (its best run > 12.4 %; the paper's reached 89.9-95.7 %): noise raises the best run and
   the mean (95 % interval above 0); paper: +2.0 to +9.6 points.
3. good init (He, Sussillo-Abbott): the means are equivalent within +-1 point (TOST);
   paper: +0.1 and 0.0 points.
4. 5-layer control: no gain from noise, equivalence within +-1 point (TOST); the finding says
   whether noise measurably hurts.
5. annealed vs fixed noise of the same initial variance, judged only if the fixed-noise arm
   leaves chance: annealed is at least as good (non-inferiority, margin 1 point).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from repro.figures.core import (
    EQUIVALENCE,
    NON_INFERIORITY,
    SUPERIORITY,
    Cell,
    Check,
    Claim,
    Comparison,
    PaperData,
    PaperNumber,
    PaperSpec,
    TableSpec,
    mark_not_run,
    plot_cell_bars,
    plot_mean_band,
    save_figure,
    statistic,
)

PREFIX = "neelakantan2015/"
LEARNING_RATE = "optimizer.learning_rate"
PAIR_KEYS = ("seed", LEARNING_RATE)
CITATION = (
    'Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach and Martens 2015, "Adding Gradient '
    'Noise Improves Learning for Very Deep Networks", arXiv:1511.06807 (MNIST: Section 4.1, '
    "Table 1)"
)

CHANCE_MAX = 12.4  # a run "stays at chance" (predicting digit 1 everywhere gives 11.35 %)
ZERO_INIT_MIN_LIFT = 30.0  # claim 1: points the noise must add to the mean
EQUAL_WITHIN = 1.0  # claims 3-5: equivalence / non-inferiority margin, points


def _row(number: int) -> str:
    return f"Table 1, row {number}"


# Cell key -> exact experiment name (summary.json "experiment" / config `name`) and the
# paper's Table 1 best / average (percent). Rename experiments here only.
CELLS = (
    Cell("simple_noclip", PREFIX + "simple_noclip", PaperNumber(89.9, 43.1, _row(1))),
    Cell("simple_noclip_noise", PREFIX + "simple_noclip_noise", PaperNumber(96.7, 52.7, _row(1))),
    Cell(
        "simple_dropout",
        PREFIX + "simple_dropout",
        PaperNumber(11.3, 10.8, "Table 1, row 1 (dropout)"),
    ),
    Cell("simple_clip100", PREFIX + "simple_clip100", PaperNumber(90.0, 46.3, _row(2))),
    Cell("simple_clip100_noise", PREFIX + "simple_clip100_noise", PaperNumber(96.7, 52.3, _row(2))),
    Cell("simple_clip10", PREFIX + "simple_clip10", PaperNumber(95.7, 51.6, _row(3))),
    Cell("simple_clip10_noise", PREFIX + "simple_clip10_noise", PaperNumber(97.0, 53.6, _row(3))),
    Cell("sussillo_clip10", PREFIX + "sussillo_clip10", PaperNumber(97.4, 92.1, _row(4))),
    Cell(
        "sussillo_clip10_noise", PREFIX + "sussillo_clip10_noise", PaperNumber(97.5, 92.2, _row(4))
    ),
    Cell("he_clip10", PREFIX + "he_clip10", PaperNumber(97.4, 91.7, _row(5))),
    Cell("he_clip10_noise", PREFIX + "he_clip10_noise", PaperNumber(97.2, 91.7, _row(5))),
    Cell("zero_clip10", PREFIX + "zero_clip10", PaperNumber(11.4, 10.1, _row(6))),
    Cell("zero_clip10_noise", PREFIX + "zero_clip10_noise", PaperNumber(94.5, 49.7, _row(6))),
    # Ablations: the paper states these qualitatively, without numbers.
    Cell("depth5_clip10", PREFIX + "depth5_simple_clip10"),
    Cell("depth5_clip10_noise", PREFIX + "depth5_simple_clip10_noise"),
    Cell("fixed_noise", PREFIX + "simple_clip10_noise_fixed"),
    Cell("eta0.3", PREFIX + "simple_clip10_noise_eta0.3"),
    Cell("eta1.0", PREFIX + "simple_clip10_noise_eta1.0"),
)

TABLES = (
    TableSpec(
        key="table1",
        title="Table 1: MNIST, 20 x 50 ReLU, test accuracy % (best / average over runs)",
        columns=("no noise", "with noise"),
        rows=(
            ("simple init, no gradient clipping", ("simple_noclip", "simple_noclip_noise")),
            ("simple init, dropout instead of noise", ("simple_dropout", None)),
            ("simple init, clip 100", ("simple_clip100", "simple_clip100_noise")),
            ("simple init, clip 10", ("simple_clip10", "simple_clip10_noise")),
            (
                "good init (Sussillo & Abbott 2014), clip 10",
                ("sussillo_clip10", "sussillo_clip10_noise"),
            ),
            ("good init (He et al. 2015), clip 10", ("he_clip10", "he_clip10_noise")),
            ("zero init, clip 10", ("zero_clip10", "zero_clip10_noise")),
        ),
        note="Paper: 40 runs per cell (20 per learning rate in {0.1, 0.01}), eta = 0.01.",
    ),
    TableSpec(
        key="depth",
        title="Ablation: 5-layer network (simple init, clip 10)",
        columns=("no noise", "with noise"),
        rows=(("5 x 50 ReLU", ("depth5_clip10", "depth5_clip10_noise")),),
        note="Paper: 'a 5-layer network gains nothing from noise' (no number given).",
    ),
    TableSpec(
        key="noise",
        title="Ablation: noise schedule and eta (20 layers, simple init, clip 10)",
        columns=("test accuracy",),
        rows=(
            ("no noise", ("simple_clip10",)),
            ("annealed, eta = 0.01 (default)", ("simple_clip10_noise",)),
            ("fixed variance 0.01", ("fixed_noise",)),
            ("annealed, eta = 0.3", ("eta0.3",)),
            ("annealed, eta = 1.0", ("eta1.0",)),
        ),
        note="Paper: annealed noise worked better than fixed noise (no MNIST number given); "
        "eta in {0.01, 0.3, 1.0} across its experiments, 0.01 on MNIST.",
    ),
)


# ----------------------------------------------------------------------------- claims


def _paper(key: str) -> dict[str, float | str | None]:
    number = next(cell.paper for cell in CELLS if cell.key == key)
    return {"best": number.best, "mean": number.mean, "source": number.source}


def _paper_effect(control: str, treated: str) -> float:
    """The paper's mean difference treated - control (Table 1 averages), points."""
    return round(_paper(treated)["mean"] - _paper(control)["mean"], 2)


def _paper_pair(no_noise: str, noise: str) -> dict[str, object]:
    return {"no_noise": _paper(no_noise), "noise": _paper(noise), "source": _paper(noise)["source"]}


def _leaves_chance(key: str, why: str) -> Check:
    return Check(statistic("max", key), ">", CHANCE_MAX, why)


def _simple_claim(claim_id: str, setting: str, no_noise: str, noise: str) -> Claim:
    return Claim(
        id=claim_id,
        claim="simple init: noise raises the mean (paired by seed) and the best run",
        setting=setting,
        preconditions=(
            _leaves_chance(no_noise, "the no-noise baseline leaves chance, as the paper's did"),
        ),
        requirements=(Check(statistic("max", noise), ">", statistic("max", no_noise)),),
        comparison=Comparison(noise, no_noise, SUPERIORITY, 0.0, PAIR_KEYS),
        paper_effect=_paper_effect(no_noise, noise),
        paper=_paper_pair(no_noise, noise),
    )


def _good_init_claim(claim_id: str, setting: str, no_noise: str, noise: str) -> Claim:
    return Claim(
        id=claim_id,
        claim=f"good init (He, Sussillo-Abbott): the means differ by < {EQUAL_WITHIN:g} point",
        setting=setting,
        comparison=Comparison(noise, no_noise, EQUIVALENCE, EQUAL_WITHIN, PAIR_KEYS),
        paper_effect=_paper_effect(no_noise, noise),
        paper=_paper_pair(no_noise, noise),
    )


CLAIMS = (
    Claim(
        id="1",
        claim=f"zero init: every no-noise run stays at chance (<= {CHANCE_MAX}%); "
        f"noise lifts the mean by >= {ZERO_INIT_MIN_LIFT:g} points",
        setting="zero init, clip 10",
        requirements=(
            Check(statistic("max", "zero_clip10"), "<=", CHANCE_MAX, "every run at chance"),
        ),
        comparison=Comparison(
            "zero_clip10_noise", "zero_clip10", SUPERIORITY, ZERO_INIT_MIN_LIFT, PAIR_KEYS
        ),
        paper_effect=_paper_effect("zero_clip10", "zero_clip10_noise"),
        paper=_paper_pair("zero_clip10", "zero_clip10_noise"),
    ),
    _simple_claim(
        "2a", "simple init, no gradient clipping", "simple_noclip", "simple_noclip_noise"
    ),
    _simple_claim("2b", "simple init, clip 100", "simple_clip100", "simple_clip100_noise"),
    _simple_claim("2c", "simple init, clip 10", "simple_clip10", "simple_clip10_noise"),
    _good_init_claim(
        "3a", "Sussillo-Abbott init, clip 10", "sussillo_clip10", "sussillo_clip10_noise"
    ),
    _good_init_claim("3b", "He init, clip 10", "he_clip10", "he_clip10_noise"),
    Claim(
        id="4",
        claim="5-layer control: no gain from noise",
        setting="5 x 50 ReLU, simple init, clip 10",
        comparison=Comparison(
            "depth5_clip10_noise", "depth5_clip10", EQUIVALENCE, EQUAL_WITHIN, PAIR_KEYS
        ),
        paper={
            "statement": "a 5-layer network gains nothing from noise",
            "source": "Section 4.1, in the text; no number",
        },
    ),
    Claim(
        id="5",
        claim="annealed vs fixed noise of the same initial variance: annealed is at least as good",
        setting="simple init, clip 10, eta = 0.01 annealed vs fixed variance 0.01",
        preconditions=(
            _leaves_chance("fixed_noise", "the fixed-noise arm trains, else there is no contest"),
        ),
        comparison=Comparison(
            "simple_clip10_noise", "fixed_noise", NON_INFERIORITY, EQUAL_WITHIN, PAIR_KEYS
        ),
        paper={
            "statement": "annealed noise worked better than fixed noise",
            "source": "Section 2, in the text; no MNIST number",
        },
    ),
)


# ----------------------------------------------------------------------------- figures

CURVE_PANELS = (
    ("simple init, no clipping", "simple_noclip", "simple_noclip_noise"),
    ("simple init, clip 10", "simple_clip10", "simple_clip10_noise"),
    ("He init, clip 10", "he_clip10", "he_clip10_noise"),
    ("zero init, clip 10", "zero_clip10", "zero_clip10_noise"),
)
_LINESTYLES = ("-", "--", ":", "-.")


def _plot_cells(ax: plt.Axes, data: PaperData, series: list[tuple[str, str, str]]) -> None:
    """Curves of several cells on one axis: colour per cell, line style per learning rate."""
    drawn = False
    for key, label, color in series:
        curves = data.curves(key)
        if curves.empty:
            continue
        drawn = True
        if LEARNING_RATE in curves.columns and curves[LEARNING_RATE].notna().any():
            for index, (lr, part) in enumerate(sorted(curves.groupby(LEARNING_RATE), reverse=True)):
                style = _LINESTYLES[index % len(_LINESTYLES)]
                plot_mean_band(ax, part, f"{label}, lr {lr:g}", color=color, linestyle=style)
        else:
            plot_mean_band(ax, curves, label, color=color)
    if drawn:
        ax.legend(fontsize=7)
    else:
        mark_not_run(ax)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def plot(data: PaperData, out_dir: Path) -> list[Path]:
    """curves.{png,pdf} (Table 1 cells) and ablations.{png,pdf}."""
    fig, axes = plt.subplots(
        1,
        len(CURVE_PANELS),
        figsize=(4 * len(CURVE_PANELS), 3.6),
        sharey=True,
        layout="constrained",
    )
    for ax, (title, no_noise, noise) in zip(axes, CURVE_PANELS, strict=True):
        _plot_cells(ax, data, [(no_noise, "no noise", "C0"), (noise, "noise", "C1")])
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("test accuracy (%)")
    fig.suptitle(
        "MNIST 20 x 50 ReLU: mean over seeds per learning rate, band = +-1 std", fontsize=10
    )
    files = save_figure(fig, out_dir, "curves")

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
    _plot_cells(
        axes[0], data, [("depth5_clip10", "no noise", "C0"), ("depth5_clip10_noise", "noise", "C1")]
    )
    axes[0].set_title("5 layers, simple init, clip 10", fontsize=10)
    _plot_cells(
        axes[1],
        data,
        [("simple_clip10_noise", "annealed", "C1"), ("fixed_noise", "fixed", "C2")],
    )
    axes[1].set_title("annealed vs fixed noise (eta 0.01)", fontsize=10)
    axes[0].set_ylabel("test accuracy (%)")
    _plot_eta_bars(axes[2], data)
    fig.suptitle("Ablations (simple init, clip 10)", fontsize=10)
    files += save_figure(fig, out_dir, "ablations")
    return files


def _plot_eta_bars(ax: plt.Axes, data: PaperData) -> None:
    """Final accuracy per eta, one bar per learning rate (mean +- std, dot: best replica)."""
    bars = [
        ("0\n(no noise)", "simple_clip10"),
        ("0.01", "simple_clip10_noise"),
        ("0.3", "eta0.3"),
        ("1.0", "eta1.0"),
    ]
    plot_cell_bars(ax, data, bars, by=LEARNING_RATE)
    ax.set_xlabel("eta (annealed)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("final accuracy vs eta (bar mean +- std, dot best)", fontsize=10)


PAPER = PaperSpec(
    name="neelakantan2015",
    title="Neelakantan et al. 2015, Adding Gradient Noise Improves Learning for Very Deep Networks",
    cells=CELLS,
    tables=TABLES,
    claims=CLAIMS,
    plot=plot,
    citation=CITATION,
    sweeps=("neelakantan2015",),
    script="scripts/neelakantan2015.py",
    breakdown=LEARNING_RATE,
    notes=(
        "Ours: final-epoch test accuracy of each replica. The paper does not say whether its "
        "per-run number is the last or the best epoch, nor its batch size, epochs or bias init.",
        "Paper numbers: arXiv:1511.06807, Table 1 (row numbers in claims.json); the ablations "
        "are qualitative statements in the paper's text, so their paper column is '-'.",
        "Averages mix learning rates 0.1 and 0.01 (20 seeds each); the paper's averages near "
        "50% come from lr 0.01 converging slowly. The by-learning-rate table splits them.",
    ),
)
