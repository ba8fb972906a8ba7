"""Plot helpers shared by the paper modules (files only: the Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window, never need a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from repro.figures.data import PaperData
from repro.figures.files import atomic_write
from repro.figures.verdicts import NOT_RUN


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` without timestamps (stable committed files)."""
    png = {"format": "png", "dpi": 120, "metadata": {"Software": None}}
    pdf = {"format": "pdf", "metadata": {"CreationDate": None, "Creator": None}}
    paths = []
    for suffix, options in (("png", png), ("pdf", pdf)):
        path = out_dir / f"{stem}.{suffix}"
        atomic_write(path, lambda tmp, o=options: fig.savefig(tmp, bbox_inches="tight", **o))
        paths.append(path)
    plt.close(fig)
    return paths


def plot_mean_band(ax: plt.Axes, curves: pd.DataFrame, label: str, **line_kwargs: Any) -> None:
    """Mean over replicas per epoch, with a +-1 std band (NaN epochs skipped)."""
    grouped = curves.groupby("epoch")["value"]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    (line,) = ax.plot(mean.index, mean.to_numpy(), label=label, **line_kwargs)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.fill_between(
        mean.index,
        (mean - std).to_numpy(),
        (mean + std).to_numpy(),
        color=line.get_color(),
        alpha=0.2,
        linewidth=0,
    )


def plot_cell_bars(
    ax: plt.Axes, data: PaperData, bars: Sequence[tuple[str, str]], by: str | None = None
) -> None:
    """Bars of the paper metric per cell: mean +- std over replicas, a dot at the best one.

    With ``by`` (a replica column such as the learning rate) each cell gets one bar per value.
    Cells without runs are labelled "not run".
    """
    levels: list[Any] = [None]
    if by and not data.replicas.empty and by in data.replicas.columns:
        levels = sorted(data.replicas[by].dropna().unique(), reverse=True) or [None]
    width = 0.8 / len(levels)
    for position, (_, key) in enumerate(bars):
        frame = data.cell(key)
        if frame.empty:
            ax.text(position, 2, NOT_RUN, ha="center", va="bottom", rotation=90, color="gray")
            continue
        for index, level in enumerate(levels):
            part = frame if level is None else frame[frame[by] == level]
            values = pd.to_numeric(part[data.spec.metric], errors="coerce").to_numpy(float)
            values = values[np.isfinite(values)] * data.spec.scale
            if values.size == 0:
                continue
            x = position - 0.4 + width * (index + 0.5)
            std = values.std(ddof=1) if values.size > 1 else 0.0
            label = None if level is None or position else f"{by.rsplit('.', 1)[-1]} {level:g}"
            ax.bar(
                x,
                values.mean(),
                width,
                yerr=std,
                color=f"C{index}",
                alpha=0.7,
                capsize=3,
                label=label,
            )
            ax.plot(x, values.max(), "k.", markersize=6)
    ax.set_xticks(range(len(bars)), [label for label, _ in bars])
    if levels != [None] and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def mark_not_run(ax: plt.Axes, text: str = NOT_RUN) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
