"""What a paper module imports: spec types, claim rules, data access and plot helpers.

The machinery lives in one module per concern: :mod:`~repro.figures.spec` (cells, tables,
paper spec), :mod:`~repro.figures.identity` (runs matched to cells by config),
:mod:`~repro.figures.data` (per-cell replicas), :mod:`~repro.figures.stats` (paired
differences, intervals, TOST), :mod:`~repro.figures.verdicts` (the verdict vocabulary and
rules), :mod:`~repro.figures.claims` (claims.json), :mod:`~repro.figures.tables`,
:mod:`~repro.figures.plots`, :mod:`~repro.figures.readme` and :mod:`~repro.figures.generate`.
"""

from repro.figures.data import CellStats, PaperData, load_paper_data
from repro.figures.generate import generate
from repro.figures.plots import mark_not_run, plot_cell_bars, plot_mean_band, save_figure
from repro.figures.spec import Cell, PaperNumber, PaperSpec, TableSpec
from repro.figures.stats import NotEvaluableError, PairedDifference
from repro.figures.verdicts import (
    EQUIVALENCE,
    INCONCLUSIVE,
    NON_INFERIORITY,
    NOT_REPRODUCED,
    NOT_RUN,
    QUALITATIVE,
    REPRODUCED,
    SUPERIORITY,
    VERDICTS,
    Check,
    Claim,
    Comparison,
    MeasuredClaim,
    checked,
    paired_difference,
    require_values,
    statistic,
)

__all__ = [
    "EQUIVALENCE",
    "INCONCLUSIVE",
    "NON_INFERIORITY",
    "NOT_REPRODUCED",
    "NOT_RUN",
    "QUALITATIVE",
    "REPRODUCED",
    "SUPERIORITY",
    "VERDICTS",
    "Cell",
    "CellStats",
    "Check",
    "Claim",
    "Comparison",
    "MeasuredClaim",
    "NotEvaluableError",
    "PairedDifference",
    "PaperData",
    "PaperNumber",
    "PaperSpec",
    "TableSpec",
    "checked",
    "generate",
    "load_paper_data",
    "mark_not_run",
    "paired_difference",
    "plot_cell_bars",
    "plot_mean_band",
    "require_values",
    "save_figure",
    "statistic",
]
