"""Mori, Ziyin, Liu & Ueda 2022, "Power-law escape rate of SGD" (arXiv 2105.09557, ICML 2022;
earlier title "Logarithmic landscape and power-law escape rate of SGD").

Cells (conf/experiment/mori2022/, one sweep `mori2022`; PREREGISTRATION.md beside the outputs):

- ``phi_lr*``: linear regression x, y ~ N(0, 1), d = 1, N = 1e5, SGD at lr 0.01 / 0.1 / 1 and
  B in {1, 2, 4, 8, 16}, 4 runs each (ONE dynamics job, cells select by lr); per run, phi of
  p(theta) ~ L^(-phi) by maximum likelihood on the upper half of 1e4 samples;
- ``escape``: N = 1e4, B = 1, lr 0.1, 100 runs per d in {2, 6, 10}: slope of log <t_p> vs log c;
- ``noise_vs_loss``: MNIST 10k, one-hot MSE, 2 x 100 MLP, B 100, lr 0.1, N and L every epoch;
- ``spectrum`` (bonus): MNIST 10k parity, 2 x 100 MLP with one output, lr 0.01, B 100: the top
  eigenvalues of the exact noise covariance against 2 L x those of the Hessian.

Claims (papers.md section 4, CPU-scale verdicts):
M1 phi within +-10 % of 1 + B / (lr h*) for every B at lr <= 0.1 (mean over runs);
M2 escape slope within +-15 % of B / (lr h*) + 1 - d / 2 for every d;
M3 late-training slope of log N against log L is 1 +- 0.2 (mean over seeds);
M4 (bonus) exact and decoupled top-10 spectra agree within a factor 1.5 (median ratio).
"Reproduced qualitatively": the trend is right (phi grows with B at each lr, the slope falls
with d, N grows with L) but some value lies outside the band, inside twice its width.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from repro.dynamics.power_law import escape_slope, loglog_slope
from repro.figures.core import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    QUALITATIVE,
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

CITATION = (
    "Mori, Ziyin, Liu & Ueda 2022, Power-law escape rate of SGD, ICML 2022 (arXiv:2105.09557)"
)
PHI_LRS = (0.01, 0.1, 1.0)
JUDGED_LRS = (0.01, 0.1)
PHI_BAND, SLOPE_BAND, NOISE_BAND, SPECTRUM_FACTOR = 0.10, 0.15, 0.2, 1.5
LATE_FRACTION = 0.5  # M3: the last half of the epochs
MIN_LOSS_DROP = 1.5  # M3 precondition: L falls by this factor over the late window
CONFIDENCE = 0.95


def _phi_cell(lr: float) -> Cell:
    return Cell(f"phi_lr{lr:g}", "mori2022/phi", where=(("lr", lr),), experiment="mori2022/phi")


CELLS = (
    *(_phi_cell(lr) for lr in PHI_LRS),
    Cell("escape", "mori2022/escape"),
    Cell("noise_vs_loss", "mori2022/noise_vs_loss"),
    Cell("spectrum", "mori2022/spectrum"),
)


def fit_verdict(measure: Callable[[PaperData], dict[str, Any]]) -> Callable[[PaperData], dict]:
    """A MeasuredClaim measure from a fit measure, which returns ``preconditions`` and
    ``requirements`` (check dicts), ``trend`` (the qualitative direction holds),
    ``within_twice`` (every value inside twice the band), ``effect`` and ``finding``: the
    verdict is inconclusive if a precondition fails, reproduced if every requirement holds,
    reproduced qualitatively if the trend holds within twice the band, else not reproduced."""

    def judged(data: PaperData) -> dict[str, Any]:
        found = measure(data)
        if not all(check["passed"] for check in found["preconditions"]):
            verdict = INCONCLUSIVE
        elif all(check["passed"] for check in found["requirements"]):
            verdict = REPRODUCED
        elif found["trend"] and found["within_twice"]:
            verdict = QUALITATIVE
        else:
            verdict = NOT_REPRODUCED
        return {**found, "verdict": verdict}

    return judged


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return (float("nan"), float("nan"))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, values.size - 1) * values.std(ddof=1)
    half /= np.sqrt(values.size)
    return (float(values.mean() - half), float(values.mean() + half))


def phi_table(data: PaperData, lrs: tuple[float, ...] = PHI_LRS) -> pd.DataFrame:
    """One row per (lr, B): mean phi over runs, its t-interval, the theory, the deviation."""
    rows = []
    for lr in lrs:
        frame = data.cell(_phi_cell(lr).key)
        if frame.empty:
            continue
        for b, group in frame.groupby("batch_size"):
            phi = pd.to_numeric(group["final.phi"], errors="coerce").to_numpy(float)
            theory = float(group["final.phi_theory"].iloc[0])
            low, high = _t_interval(phi)
            mean = float(np.mean(phi))
            rows.append(
                {"lr": lr, "batch_size": int(b), "phi": mean, "low": low, "high": high,
                 "theory": theory, "deviation": mean / theory - 1, "runs": int(phi.size),
                 "finite": bool(np.all(np.isfinite(phi)))}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _worst(values: pd.Series) -> float:
    return float(values.iloc[int(np.argmax(np.abs(values.to_numpy())))])


def measure_phi(data: PaperData) -> dict[str, Any]:
    table = phi_table(data)
    judged = table[table["lr"].isin(JUDGED_LRS)]
    if judged.empty:
        raise NotEvaluableError("no phi fits at lr <= 0.1")
    worst = _worst(judged["deviation"])
    row = judged.iloc[int(np.argmax(np.abs(judged["deviation"].to_numpy())))]
    trend = all(
        np.all(np.diff(part.sort_values("batch_size")["phi"].to_numpy()) > 0)
        for _, part in judged.groupby("lr")
    )
    departs = table[table["lr"] == max(PHI_LRS)]
    finding = (
        f"worst at lr {row['lr']:g}, B {int(row['batch_size'])}: phi {row['phi']:.3g} "
        f"[{row['low']:.3g}, {row['high']:.3g}] vs theory {row['theory']:.3g}"
    )
    if not departs.empty:
        finding += f"; at lr 1 the deviation is {_worst(departs['deviation']):+.0%} (not judged)"
    return {
        "preconditions": [
            checked("every (lr, B) has >= 2 runs with a finite phi (interval over runs)",
                   judged["runs"].min(), 2, judged["runs"].min() >= 2 and judged["finite"].all()),
        ],
        "requirements": [
            checked(f"max |phi / (1 + B / (lr h*)) - 1| over lr <= 0.1 <= {PHI_BAND:g}",
                   abs(worst), PHI_BAND, abs(worst) <= PHI_BAND),
        ],
        "trend": trend,
        "within_twice": abs(worst) <= 2 * PHI_BAND,
        "effect": {"estimate": worst, "interval": [row["low"] / row["theory"] - 1,
                                                   row["high"] / row["theory"] - 1],
                   "n": int(row["runs"])},
        "finding": finding,
    }  # fmt: skip


def _arrays(data: PaperData, key: str) -> Any:
    frame = data.cell(key)
    if frame.empty:
        raise NotEvaluableError(f"cell {key} has no run")
    return np.load(Path(frame["job"].iloc[-1]) / "dynamics.npz")


def escape_table(data: PaperData) -> pd.DataFrame:
    """One row per d: the slope with its bootstrap interval, the theory, the deviation."""
    frame = data.cell("escape")
    arrays = _arrays(data, "escape")
    lr = float(arrays["learning_rate"])
    rows = []
    for dim in sorted(int(d) for d in frame["dim"]):
        steps = arrays[f"passage_steps_d{dim}"]
        thresholds = arrays[f"thresholds_d{dim}"]
        row = frame[frame["dim"] == dim].iloc[0]
        theory = float(row["final.slope_theory"])
        entry = {"dim": dim, "theory": theory, "censored": int(np.sum(steps < 0))}
        if entry["censored"] == 0:
            fit = escape_slope(thresholds, lr * steps)
            entry |= {"slope": fit.slope, "low": fit.low, "high": fit.high}
            entry |= {"deviation": fit.slope / theory - 1, "runs": int(steps.shape[0])}
        rows.append(entry)
    return pd.DataFrame(rows)


def measure_escape(data: PaperData) -> dict[str, Any]:
    table = escape_table(data)
    fitted = table.dropna(subset=["slope"]) if "slope" in table else table.iloc[0:0]
    if fitted.empty:
        raise NotEvaluableError("every dimension has censored runs: no slope")
    worst = _worst(fitted["deviation"])
    row = fitted.iloc[int(np.argmax(np.abs(fitted["deviation"].to_numpy())))]
    parts = [f"d={r.dim}: {r.slope:.2f} [{r.low:.2f}, {r.high:.2f}] vs {r.theory:g}"
             for r in fitted.itertuples()]  # fmt: skip
    return {
        "preconditions": [
            checked("dimensions fitted without censored runs >= 2", len(fitted), 2,
                   len(fitted) >= 2),
        ],
        "requirements": [
            checked(f"max |slope / (B / (lr h*) + 1 - d / 2) - 1| <= {SLOPE_BAND:g}",
                   abs(worst), SLOPE_BAND, abs(worst) <= SLOPE_BAND),
        ],
        "trend": bool(np.all(np.diff(fitted.sort_values("dim")["slope"].to_numpy()) < 0)),
        "within_twice": abs(worst) <= 2 * SLOPE_BAND,
        "effect": {"estimate": worst, "interval": [row["low"] / row["theory"] - 1,
                                                   row["high"] / row["theory"] - 1],
                   "n": int(row["runs"])},
        "finding": "slopes " + "; ".join(parts),
    }  # fmt: skip


def noise_curves(data: PaperData) -> pd.DataFrame:
    """Long frame (seed, epoch, loss, noise) of the noise hook's values per epoch."""
    loss = data.curves("noise_vs_loss", "noise/loss")
    noise = data.curves("noise_vs_loss", "noise/noise_strength")
    if loss.empty or noise.empty:
        return pd.DataFrame(columns=["seed", "epoch", "loss", "noise"])
    keys = ["job", "replica", "seed", "epoch"]
    columns = [*keys, "value"]
    merged = loss[columns].merge(noise[columns], on=keys, suffixes=("_l", "_n"))
    return merged.rename(columns={"value_l": "loss", "value_n": "noise"})


def late_slopes(curves: pd.DataFrame) -> pd.DataFrame:
    """Per replica: the log-log slope of N on L over the last LATE_FRACTION of the epochs,
    the early one (first half) and the factor by which L fell over the late window."""
    rows = []
    last = int(curves["epoch"].max())
    for (job, replica), part in curves.groupby(["job", "replica"]):
        part = part.sort_values("epoch")
        late = part[part["epoch"] > last * (1 - LATE_FRACTION)]
        early = part[part["epoch"] <= last * (1 - LATE_FRACTION)]
        if len(late) < 3:
            continue
        fit = loglog_slope(late["loss"], late["noise"])
        early_slope = (
            loglog_slope(early["loss"], early["noise"]).slope if len(early) >= 3 else np.nan
        )
        drop = float(late["loss"].iloc[0] / late["loss"].iloc[-1])
        seed = part["seed"].iloc[0]
        rows.append({"job": job, "replica": replica, "seed": seed, "slope": fit.slope,
                     "early_slope": early_slope, "loss_drop": drop})  # fmt: skip
    return pd.DataFrame(rows)


def measure_noise(data: PaperData) -> dict[str, Any]:
    curves = noise_curves(data)
    slopes = late_slopes(curves) if not curves.empty else pd.DataFrame()
    if slopes.empty:
        raise NotEvaluableError("no replica has >= 3 late epochs of the noise hook")
    values = slopes["slope"].to_numpy(float)
    mean, (low, high) = float(values.mean()), _t_interval(values)
    drop = float(slopes["loss_drop"].min())
    early = float(np.nanmean(slopes["early_slope"]))
    return {
        "preconditions": [
            checked(f"L falls by >= {MIN_LOSS_DROP:g}x over the late window (every seed)",
                   drop, MIN_LOSS_DROP, drop >= MIN_LOSS_DROP),
        ],
        "requirements": [
            checked(f"|late slope of log N on log L - 1| <= {NOISE_BAND:g}", abs(mean - 1),
                   NOISE_BAND, abs(mean - 1) <= NOISE_BAND),
        ],
        "trend": mean > 0,
        "within_twice": abs(mean - 1) <= 2 * NOISE_BAND,
        "effect": {"estimate": mean, "interval": [low, high], "n": int(values.size)},
        "finding": f"late slope {mean:.2f} [{low:.2f}, {high:.2f}] over {values.size} seeds; "
        f"early slope {early:.2f}; L fell {drop:.1f}x over the late window",
    }  # fmt: skip


def spectra(data: PaperData) -> tuple[np.ndarray, np.ndarray, int]:
    """(exact [R, k], decoupled [R, k]) at the last epoch the spectrum hook ran, and it."""
    frame = data.cell("spectrum")
    if frame.empty:
        raise NotEvaluableError("cell spectrum has no run")
    records = [r for r in data.metrics(frame["job"].iloc[-1]) if "spectrum/exact" in r]
    if not records:
        raise NotEvaluableError("the spectrum run logged no spectrum")
    last = records[-1]
    return np.asarray(last["spectrum/exact"]), np.asarray(last["spectrum/decoupled"]), last["epoch"]


def measure_spectrum(data: PaperData) -> dict[str, Any]:
    exact, decoupled, epoch = spectra(data)
    ratios = exact / decoupled
    median = float(np.median(ratios))
    worst = float(np.max(np.abs(np.log(ratios))))
    return {
        "preconditions": [
            checked("every eigenvalue is > 0", float(min(exact.min(), decoupled.min())), 0,
                   bool(exact.min() > 0 and decoupled.min() > 0)),
        ],
        "requirements": [
            checked(f"median exact / decoupled ratio of the top eigenvalues within a factor "
                   f"{SPECTRUM_FACTOR:g}", median, SPECTRUM_FACTOR,
                   1 / SPECTRUM_FACTOR <= median <= SPECTRUM_FACTOR),
        ],
        "trend": bool(stats.spearmanr(exact.ravel(), decoupled.ravel()).statistic > 0),
        "within_twice": 1 / SPECTRUM_FACTOR**2 <= median <= SPECTRUM_FACTOR**2,
        "effect": {"estimate": median, "interval": [float(ratios.min()), float(ratios.max())],
                   "n": int(ratios.size)},
        "finding": f"epoch {epoch}: exact / decoupled median {median:.2f} (range "
        f"{ratios.min():.2f}-{ratios.max():.2f}; worst factor {np.exp(worst):.2f})",
    }  # fmt: skip


CLAIMS = (
    MeasuredClaim(
        id="M1",
        claim="the stationary density of SGD is a power law of the loss, phi = 1 + B / (lr h*)",
        setting="linear regression d = 1, N = 1e5, B 1..16, lr 0.01 / 0.1 (lr 1 shown)",
        cell_keys=tuple(_phi_cell(lr).key for lr in PHI_LRS),
        rule_text="phi per run by maximum likelihood on the upper half of its samples; mean "
        f"over runs per (lr, B). Judged only if every (lr, B) at lr <= 0.1 has >= 2 runs; holds "
        f"if every mean is within +-{PHI_BAND:.0%} of 1 + B / (lr h*) (reproduced); else "
        "reproduced qualitatively if phi grows with B at each lr and every mean is within "
        f"+-{2 * PHI_BAND:.0%}; else not reproduced. lr = 1 is plotted, not judged.",
        measure=fit_verdict(measure_phi),
        paper={
            "statement": "fitted phi on the dashed lines 1 + B / lr except at lr = 1",
            "source": "Section 5 (linear regression), Fig. 3",
        },
    ),
    MeasuredClaim(
        id="M2",
        claim="the mean escape time grows like c^(B / (lr h*) + 1 - d / 2)",
        setting="linear regression N = 1e4, B 1, lr 0.1, 100 runs per d in {2, 6, 10}",
        cell_keys=("escape",),
        rule_text="slope of log(mean t_p) on log c per d (bootstrap interval over runs). "
        "Judged only if >= 2 dimensions have no censored run; reproduced if every slope is "
        f"within +-{SLOPE_BAND:.0%} of B / (lr h*) + 1 - d / 2; qualitatively if slopes fall "
        f"with d and are within +-{2 * SLOPE_BAND:.0%}; else not reproduced.",
        measure=fit_verdict(measure_escape),
        paper={"statement": "slope 11 - d / 2 (B = 1, lr = 0.1)", "source": "Section 5, Fig. 4"},
    ),
    MeasuredClaim(
        id="M3",
        claim="late in training the SGD noise strength is proportional to the loss",
        setting="MNIST 10k, one-hot MSE, 2 x 100 MLP, B 100, lr 0.1, 100 epochs, 4 seeds",
        cell_keys=("noise_vs_loss",),
        rule_text="per seed, least-squares slope of log N on log L over the last half of the "
        f"epochs; mean over seeds with a t-interval. Judged only if L fell >= {MIN_LOSS_DROP:g}x "
        f"over that window; reproduced if |mean - 1| <= {NOISE_BAND:g}; qualitatively if the "
        f"slope is > 0 and within +-{2 * NOISE_BAND:g} of 1; else not reproduced.",
        measure=fit_verdict(measure_noise),
        paper={
            "statement": "N proportional to L late in training (Fashion-MNIST MLP, CIFAR-10 CNN)",
            "source": "Section 4, Fig. 2",
        },
    ),
    MeasuredClaim(
        id="M4",
        claim="(bonus) the exact noise covariance has the spectrum of its decoupled form 2 L H",
        setting="MNIST 10k parity, 2 x 100 MLP, one output, B 100, lr 0.01, 50 epochs",
        cell_keys=("spectrum",),
        rule_text="top-10 eigenvalues of the per-example gradient covariance and of 2 L H on "
        "512 training images at the last logged epoch, per seed. Reproduced if the median "
        f"ratio exact / decoupled is within a factor {SPECTRUM_FACTOR:g}; qualitatively if "
        f"within {SPECTRUM_FACTOR**2:g} and the two rank the eigenvalues alike (Spearman > 0).",
        measure=fit_verdict(measure_spectrum),
        paper={"statement": "matching eigenvalue histograms", "source": "Section 3, Fig. 1"},
    ),
)


def _plot_phi(data: PaperData, ax: Any) -> bool:
    table = phi_table(data)
    if table.empty:
        return False
    for color, (lr, part) in zip(("C0", "C1", "C2"), table.groupby("lr"), strict=False):
        part = part.sort_values("batch_size")
        yerr = [part["phi"] - part["low"], part["high"] - part["phi"]]
        ax.errorbar(part["batch_size"], part["phi"], yerr=yerr, fmt="o", color=color,
                    label=f"lr {lr:g}")  # fmt: skip
        ax.plot(part["batch_size"], part["theory"], "--", color=color)
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="fitted phi")
    ax.set_title("phi vs B (dashed: 1 + B / (lr h*))", fontsize=10)
    ax.legend(fontsize=8)
    return True


def _plot_escape(data: PaperData, ax: Any) -> bool:
    if data.cell("escape").empty:
        return False
    arrays = _arrays(data, "escape")
    lr = float(arrays["learning_rate"])
    for color, row in zip(("C0", "C1", "C2", "C3"), escape_table(data).itertuples(), strict=False):
        c = arrays[f"thresholds_d{row.dim}"]
        steps = arrays[f"passage_steps_d{row.dim}"]
        if row.censored:
            continue
        mean = (lr * steps).mean(axis=0)
        ax.plot(c, mean, "o", color=color, label=f"d={row.dim}: {row.slope:.2f} "
                f"(theory {row.theory:.3g})")  # fmt: skip
        fit = np.polyfit(np.log(c), np.log(mean), 1)
        ax.plot(c, np.exp(np.polyval(fit, np.log(c))), "-", color=color, alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel="c", ylabel="mean first-passage time lr k")
    ax.set_title("escape to L > c L* (slope vs theory)", fontsize=10)
    ax.legend(fontsize=8)
    return True


def _plot_noise(data: PaperData, ax: Any) -> bool:
    curves = noise_curves(data)
    if curves.empty:
        return False
    last = int(curves["epoch"].max())
    for _, part in curves.groupby(["job", "replica"]):
        part = part.sort_values("epoch")
        ax.plot(part["loss"], part["noise"], "-", lw=1, label=f"seed {part['seed'].iloc[0]}")
        late = part[part["epoch"] > last * (1 - LATE_FRACTION)]
        ax.plot(late["loss"], late["noise"], ".", ms=3, color="k")
    low, high = curves["loss"].min(), curves["loss"].max()
    anchor = curves.loc[curves["loss"].idxmin()]
    ax.plot([low, high], [anchor["noise"], anchor["noise"] * high / low], "k--", lw=1,
            label="slope 1")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="loss L", ylabel="noise strength N")
    ax.set_title("N vs L over training (dots: late window)", fontsize=10)
    ax.legend(fontsize=7)
    return True


def _plot_spectrum(data: PaperData, ax: Any) -> bool:
    try:
        exact, decoupled, epoch = spectra(data)
    except NotEvaluableError:
        return False
    ax.plot(decoupled.ravel(), exact.ravel(), "o", ms=4)
    both = np.concatenate([exact.ravel(), decoupled.ravel()])
    ax.plot([both.min(), both.max()], [both.min(), both.max()], "k--", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="2 L x Hessian eigenvalue",
           ylabel="exact noise covariance eigenvalue")  # fmt: skip
    ax.set_title(f"top eigenvalues, exact vs decoupled (epoch {epoch})", fontsize=10)
    return True


def plot(data: PaperData, out_dir: Path) -> list[Path]:
    """phi_vs_batch, escape_times, noise_vs_loss and noise_spectrum (.png / .pdf)."""
    files: list[Path] = []
    panels = (
        ("phi_vs_batch", _plot_phi),
        ("escape_times", _plot_escape),
        ("noise_vs_loss", _plot_noise),
        ("noise_spectrum", _plot_spectrum),
    )
    for name, draw in panels:
        fig, ax = plt.subplots(figsize=(5, 3.6), layout="constrained")
        if not draw(data, ax):
            mark_not_run(ax)
        ax.grid(alpha=0.3, which="both")
        files += save_figure(fig, out_dir, name)
    return files


PAPER = PaperSpec(
    name="mori2022",
    title="Mori et al. 2022: power-law stationary density and escape rate of SGD",
    citation=CITATION,
    cells=CELLS,
    tables=(),
    claims=CLAIMS,
    plot=plot,
    sweeps=("mori2022",),
    script="scripts/mori2022.py",
    metric="final.relative_deviation",
    scale=1.0,
    unit="",
    notes=(
        "M1 and M2 are SGD simulations (repro/dynamics), M3 and M4 training runs with the "
        "diagnostics hooks; every fit and threshold is fixed in PREREGISTRATION.md.",
    ),
)
