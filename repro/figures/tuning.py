"""A learning rate chosen from a grid on the validation split (the tuned arms of a study).

A grid cell trains every rate of its grid with the same seeds, as replicas of one program;
its `lr_table` (one row per rate, sorted by rate, with the mean "validation" metric over
seeds) is the paper module's. The chosen rate is the best validation mean, ties going to the
smaller rate; a rate at an end of the grid means the grid may not have bracketed the best
one, which the claims that compare tuned arms report.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from repro.figures.stats import NotEvaluableError


@dataclasses.dataclass(frozen=True)
class GridChoice:
    """The chosen row of a cell's lr table, the cell's replicas at that rate, and whether the
    rate is an end of the grid."""

    row: pd.Series
    replicas: pd.DataFrame
    edge: bool


def choose_rate(
    table: pd.DataFrame, frame: pd.DataFrame, lr_key: str, lower_is_better: bool, key: str
) -> GridChoice:
    """The rate of `table` with the best "validation" mean (module docstring); `frame` holds
    the cell's replicas with their rate in column `lr_key`. NotEvaluableError when the cell
    has no replica with a rate."""
    if table.empty:
        raise NotEvaluableError(f"cell {key} has no replicas with {lr_key}")
    values = table["validation"].to_numpy()
    index = int(np.argmin(values) if lower_is_better else np.argmax(values))
    row = table.iloc[index]
    return GridChoice(row, frame[frame[lr_key] == row["lr"]], index in (0, len(table) - 1))
