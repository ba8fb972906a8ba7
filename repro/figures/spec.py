"""What a paper module declares: its cells, tables, claims and where the paper's numbers are.

A paper module (``repro/figures/<paper>.py``) defines a :class:`PaperSpec`. A :class:`Cell` is
one experiment as the paper ran it: the Hydra ``experiment=`` option (plus any overrides) that
runs it, which fixes the config a run must have to belong to the cell
(:mod:`repro.figures.identity`), and the paper's number for it with its source (table, row).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from repro.figures.data import PaperData
    from repro.figures.verdicts import Claim


@dataclasses.dataclass(frozen=True)
class PaperNumber:
    """The paper's best / average over its runs, in percent (None: not reported).

    ``source`` says where in the paper the number is printed (e.g. "Table 1, row 3").
    """

    best: float | None
    mean: float | None
    source: str = ""
    unconfirmed: bool = False

    def format(self) -> str:
        parts = ["-" if v is None else f"{v:.1f}" for v in (self.best, self.mean)]
        text = " / ".join(parts)
        return text + " (unconfirmed)" if self.unconfirmed else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "mean": self.mean,
            "source": self.source,
            "unconfirmed": self.unconfirmed,
        }


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment of the paper.

    ``key`` is the short id tables, claims and plots use; ``name`` is the experiment name a
    run records (summary.json ``experiment``). A run belongs to the cell only when its result
    config equals the config of ``experiment=<experiment option> <overrides...>``. ``where``
    selects part of a run's replicas by the value of replica columns (e.g.
    ``{"noise.eta": 0.0}`` when one run holds a grid over eta).
    """

    key: str
    name: str
    paper: PaperNumber | None = None
    where: tuple[tuple[str, Any], ...] = ()
    experiment: str | None = None  # Hydra `experiment=` option that runs it; None: ``name``
    overrides: tuple[str, ...] = ()  # further Hydra overrides of the cell (e.g. a budget)

    @property
    def experiment_option(self) -> str:
        return self.experiment or self.name

    @property
    def label(self) -> str:
        """The experiment name, plus overrides and replica selection: ``demo[noise.eta=0.0]``."""
        parts = [*self.overrides, *(f"{k}={v}" for k, v in self.where)]
        return self.name + ("[" + ",".join(parts) + "]" if parts else "")


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A table layout: each row is a label and one cell key (or None: "-") per column."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str | None, ...]], ...]
    note: str = ""


def _duplicates(values: list[Any]) -> list[Any]:
    return sorted({repr(v) for v in values if values.count(v) > 1})


@dataclasses.dataclass(frozen=True)
class PaperSpec:
    """A paper: cells, tables, claims, plot function, default sweep dirs and its citation.

    ``citation`` names the paper by arXiv id; every PaperNumber's ``source`` and every claim's
    paper effect point into it, so the numbers can be checked without files outside the repo.
    """

    name: str
    title: str
    citation: str
    cells: tuple[Cell, ...]
    tables: tuple[TableSpec, ...]
    claims: tuple[Claim, ...]
    plot: Callable[[PaperData, Path], list[Path]]
    sweeps: tuple[str, ...] = ()  # default sweep dirs: $REPRO_OUTPUT_ROOT/multirun/<sweep>
    script: str = ""
    metric: str = "final.test_accuracy"
    scale: float = 100.0  # fractions -> percent
    unit: str = "%"
    lower_is_better: bool = False  # an error rate: a cell's "best" replica is its lowest
    breakdown: str | None = None  # a replica column to split the means by, in a second table
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [cell.key for cell in self.cells]
        selections = [(cell.name, cell.overrides, cell.where) for cell in self.cells]
        for what, values in (("cell key", keys), ("cell selection", selections)):
            if _duplicates(values):
                raise ValueError(
                    f"{what}s must be unique in paper {self.name}, got {_duplicates(values)}"
                )
        for table in self.tables:
            for label, row_keys in table.rows:
                if len(row_keys) != len(table.columns):
                    raise ValueError(
                        f"table {table.key} row {label!r} must have {len(table.columns)} cells, "
                        f"got {len(row_keys)}"
                    )
                unknown = [key for key in row_keys if key is not None and key not in keys]
                if unknown:
                    raise ValueError(f"table {table.key} cells must be cell keys, got {unknown}")
        claim_ids = [claim.id for claim in self.claims]
        if _duplicates(claim_ids):
            raise ValueError(f"claim ids must be unique, got {_duplicates(claim_ids)}")
        for claim in self.claims:
            unknown = [key for key in claim.cells if key not in keys]
            if unknown:
                raise ValueError(f"claim {claim.id} cells must be cell keys, got {unknown}")

    def cell(self, key: str) -> Cell:
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"no cell {key!r} in paper {self.name}")
