"""Shared machinery of the paper figure modules.

A paper module (``repro/figures/<paper>.py``) defines a :class:`PaperSpec`: its cells (exact
experiment names -> table row and column, with the paper's numbers), its tables, its claims (each
with a rule in words and the same rule in code) and a plot function. :func:`generate` turns run
dirs into ``paper_figures/<paper>/``:

- ``tables.md``: the paper's numbers beside ours;
- ``*.png`` / ``*.pdf``: the figures the plot function draws;
- ``claims.json``: one entry per claim with our value, the paper's value, the verdict
  (``reproduced`` / ``not reproduced`` / ``not run``) and the command;
- ``README.md``: the command, the run dirs used (git commit, wall time), unfinished jobs.

Our per-run number is ``spec.metric`` of each replica (by default the final test accuracy), in
percent. A cell with no finished replica is "not run"; nothing is ever filled in for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window, never need a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from repro.aggregate import (
    JobRecord,
    load_runs,
    markdown_table,
    read_metrics,
    replicas_frame,
)

VERDICTS = ("reproduced", "not reproduced", "not run")
# Overrides that select or file a run without changing what it computes (conf/config.yaml
# keeps the same keys out of run directory names).
NEUTRAL_KEYS = frozenset(
    {
        "experiment",
        "sweep_name",
        "logger",
        "paths.output_root",
        "paths.data_dir",
        "trainer.progress",
        "trainer.overwrite",
        "trainer.chunks_per_epoch",
        "trainer.checkpoint_every_epochs",
        "trainer.checkpoint_max_to_keep",
    }
)
NOT_RUN = "not run"


# ----------------------------------------------------------------------------- spec types


@dataclasses.dataclass(frozen=True)
class PaperNumber:
    """The paper's best / average over its runs, in percent (None: not reported)."""

    best: float | None
    mean: float | None
    unconfirmed: bool = False

    def format(self) -> str:
        parts = ["-" if v is None else f"{v:.1f}" for v in (self.best, self.mean)]
        text = " / ".join(parts)
        return text + " (unconfirmed)" if self.unconfirmed else text

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "mean": self.mean, "unconfirmed": self.unconfirmed}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: ``name`` is matched exactly against summary.json's experiment name.

    ``key`` is the short id the tables, claims and plots use, so renaming an experiment means
    editing ``name`` only. ``where`` selects part of the experiment's replicas by the value of
    replica columns (e.g. ``{"noise.eta": 0.0}`` when one run holds a grid over eta).
    """

    key: str
    name: str
    paper: PaperNumber | None = None
    where: tuple[tuple[str, Any], ...] = ()
    experiment: str | None = None  # Hydra `experiment=` option that runs it; None: ``name``

    @property
    def experiment_option(self) -> str:
        return self.experiment or self.name

    @property
    def label(self) -> str:
        """The experiment name, plus the replica selection if any: ``demo[noise.eta=0.0]``."""
        if not self.where:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in self.where) + "]"


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A table layout: each row is a label and one cell key (or None: "-") per column."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str | None, ...]], ...]
    note: str = ""


class NotEvaluableError(Exception):
    """The cells exist but the rule cannot be applied (e.g. no replicas to pair)."""


@dataclasses.dataclass(frozen=True)
class ClaimOutcome:
    passed: bool
    ours: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim with its verdict rule; ``evaluate`` implements ``rule`` on the cells' data."""

    id: str
    claim: str
    setting: str
    rule: str
    cells: tuple[str, ...]  # cell keys the rule needs; any missing -> "not run"
    paper: dict[str, Any]
    evaluate: Callable[[PaperData], ClaimOutcome]


@dataclasses.dataclass(frozen=True)
class PaperSpec:
    name: str
    title: str
    cells: tuple[Cell, ...]
    tables: tuple[TableSpec, ...]
    claims: tuple[Claim, ...]
    plot: Callable[[PaperData, Path], list[Path]]
    sweeps: tuple[str, ...] = ()  # default sweep dirs: $REPRO_OUTPUT_ROOT/multirun/<sweep>
    script: str = ""
    metric: str = "final.test_accuracy"
    scale: float = 100.0  # fractions -> percent
    unit: str = "%"
    breakdown: str | None = None  # a replica column to split the means by, in a second table
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [cell.key for cell in self.cells]
        names = [(cell.name, cell.where) for cell in self.cells]
        for what, values in (("cell key", keys), ("cell name and where", names)):
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"{what}s must be unique in paper {self.name}, got {duplicates}")
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
        for claim in self.claims:
            unknown = [key for key in claim.cells if key not in keys]
            if unknown:
                raise ValueError(f"claim {claim.id} cells must be cell keys, got {unknown}")

    def cell(self, key: str) -> Cell:
        for cell in self.cells:
            if cell.key == key:
                return cell
        raise KeyError(f"no cell {key!r} in paper {self.name}")


# ----------------------------------------------------------------------------- run data


@dataclasses.dataclass(frozen=True)
class CellStats:
    n: int  # replicas with a finite value
    n_missing: int  # replicas whose value is NaN / missing
    n_diverged: int
    best: float
    mean: float
    std: float

    def format(self) -> str:
        text = f"{self.best:.1f} / {self.mean:.1f} (n={self.n}"
        if self.n_diverged:
            text += f", {self.n_diverged} diverged"
        if self.n_missing:
            text += f", {self.n_missing} NaN excluded"
        return text + ")"


def _job_priority(job: JobRecord) -> tuple[float, float]:
    """Which job wins a duplicated replica: the longer run, then the newer (end time, else
    file time). A smoke run (trainer.epochs=1) never displaces the full run of a cell."""
    epochs = job.summary.get("epochs") if job.summary else None
    epochs = float(epochs) if isinstance(epochs, int | float) else 0.0
    end = job.metadata.get("end_time")
    if isinstance(end, int | float) and not isinstance(end, bool):
        return epochs, float(end)
    if isinstance(end, str):
        parsed = pd.to_datetime(end, errors="coerce", utc=True)
        if not pd.isna(parsed):
            return epochs, parsed.timestamp()
    return epochs, (job.path / "summary.json").stat().st_mtime


@dataclasses.dataclass
class PaperData:
    """The paper's replicas (deduplicated) plus the jobs they came from."""

    spec: PaperSpec
    replicas: pd.DataFrame
    jobs: list[JobRecord]
    unfinished: list[JobRecord]
    run_paths: list[Path]
    duplicates_dropped: int = 0
    superseded: list[JobRecord] = dataclasses.field(default_factory=list)
    _metrics_cache: dict[Path, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def has(self, key: str) -> bool:
        return not self.cell(key).empty

    def cell(self, key: str) -> pd.DataFrame:
        cell = self.spec.cell(key)
        if self.replicas.empty:
            return self.replicas
        selected = self.replicas["name"] == cell.name
        for column, value in cell.where:
            if column not in self.replicas.columns:
                return self.replicas.iloc[0:0]
            selected &= self.replicas[column] == value
        return self.replicas[selected]

    def values(self, key: str) -> np.ndarray:
        """Finite per-replica values of the paper metric, scaled (percent)."""
        frame = self.cell(key)
        if frame.empty or self.spec.metric not in frame.columns:
            return np.array([], dtype=float)
        values = pd.to_numeric(frame[self.spec.metric], errors="coerce").to_numpy(float)
        return values[np.isfinite(values)] * self.spec.scale

    def stats(self, key: str) -> CellStats | None:
        frame = self.cell(key)
        values = self.values(key)
        if frame.empty or values.size == 0:
            return None
        return CellStats(
            n=int(values.size),
            n_missing=len(frame) - int(values.size),
            n_diverged=int(frame["diverged"].astype(bool).sum()),
            best=float(values.max()),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if values.size > 1 else math.nan,
        )

    def mixed_settings(self) -> dict[str, list[str]]:
        """Cells whose replicas come from jobs run with different settings.

        Compares each job's Hydra overrides (minus those that do not change the computation)
        and its summary's epoch count; {cell label: one description per distinct setting}.
        """
        mixed = {}
        jobs = {str(job.path): job for job in self.jobs}
        for cell in self.spec.cells:
            frame = self.cell(cell.key)
            settings = {}
            for job_path in dict.fromkeys(frame["job"]) if not frame.empty else ():
                job = jobs[job_path]
                overrides = sorted(
                    o for o in job.overrides if o.lstrip("+~").split("=")[0] not in NEUTRAL_KEYS
                )
                text = " ".join(overrides) or "(no overrides)"
                settings[f"{text}, {job.summary.get('epochs')} epochs"] = None
            if len(settings) > 1:
                mixed[cell.label] = list(settings)
        return mixed

    def metrics(self, job: JobRecord) -> list[dict[str, Any]]:
        if job.path not in self._metrics_cache:
            self._metrics_cache[job.path] = read_metrics(job.path)
        return self._metrics_cache[job.path]

    def curves(self, key: str, metric: str = "test_accuracy") -> pd.DataFrame:
        """Long frame (replica columns..., epoch, value) of a per-epoch metric of one cell.

        Only the replicas kept in :attr:`replicas` contribute, so curves and tables agree.
        Accuracies are scaled like the tables (percent).
        """
        frame = self.cell(key)
        columns = [c for c in frame.columns if c not in ("diverged",)]
        records: list[dict[str, Any]] = []
        jobs = {str(job.path): job for job in self.jobs}
        scale = self.spec.scale if "accuracy" in metric else 1.0
        for job_path, job_rows in frame.groupby("job", sort=False):
            rows = job_rows.to_dict("records")
            for record in self.metrics(jobs[job_path]):
                series = record.get(metric)
                if series is None or record.get("epoch") is None:
                    continue
                for row in rows:
                    replica = int(row["replica"])
                    # Per-replica lists are indexed by replica; a scalar is shared by all.
                    if isinstance(series, list):
                        value = series[replica] if replica < len(series) else None
                    else:
                        value = series
                    if value is None:
                        continue
                    entry = {c: row[c] for c in columns}
                    entry["epoch"] = int(record["epoch"])
                    entry["value"] = float(value) * scale
                    records.append(entry)
        return pd.DataFrame(records, columns=[*columns, "epoch", "value"])


def default_run_paths(spec: PaperSpec) -> list[Path]:
    """Existing ``$REPRO_OUTPUT_ROOT/multirun/<sweep>`` (paper's sweeps) and runs/ dirs."""
    root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
    candidates = [root / "multirun" / sweep for sweep in spec.sweeps] + [
        root / "runs",
        Path("runs"),
    ]
    unique = dict.fromkeys(candidates)
    return [path for path in unique if path.exists()]


def load_paper_data(spec: PaperSpec, run_paths: Sequence[str | Path]) -> PaperData:
    """Load the finished jobs whose experiment name is one of the paper's cells.

    A replica (same cell, seed and grid hyperparameters) found in several jobs -- a sweep run
    twice, or a smoke run beside the full one -- counts once: the job with the most epochs
    wins, then the most recently finished; the jobs left without a replica are listed in the
    README as superseded.
    """
    paths = [Path(p) for p in run_paths]
    runs = load_runs(paths) if paths else None
    names = {cell.name for cell in spec.cells}
    finished = [job for job in (runs.finished if runs else []) if job.name in names]
    unfinished = [
        job for job in (runs.unfinished if runs else []) if job.name is None or job.name in names
    ]
    finished.sort(key=_job_priority)
    frame = replicas_frame(finished)
    hparam_keys = dict.fromkeys(
        key
        for job in finished
        for replica in job.summary.get("replicas") or []
        for key in replica.get("hparams") or {}
    )
    before = len(frame)
    if not frame.empty:
        frame = frame.drop_duplicates(subset=["name", "seed", *hparam_keys], keep="last")
    used = set(frame["job"]) if not frame.empty else set()
    return PaperData(
        spec=spec,
        replicas=frame.reset_index(drop=True),
        jobs=[job for job in finished if str(job.path) in used],
        unfinished=unfinished,
        run_paths=paths,
        duplicates_dropped=before - len(frame),
        superseded=[job for job in finished if str(job.path) not in used],
    )


# ----------------------------------------------------------------------------- claim helpers


def require_values(data: PaperData, key: str) -> np.ndarray:
    values = data.values(key)
    if values.size == 0:
        raise NotEvaluableError(f"cell {key} has no finite {data.spec.metric} value")
    return values


def paired_difference(
    data: PaperData, treated: str, control: str, keys: Sequence[str]
) -> dict[str, Any]:
    """Per-replica differences treated - control, paired on ``keys`` (e.g. seed, lr).

    Returns n_pairs, mean_diff, se_diff (std / sqrt(n), ddof = 1), n_treated_better and the keys
    used. Raises NotEvaluableError when a key is missing or not unique in a cell, or nothing pairs.
    """
    metric, scale = data.spec.metric, data.spec.scale
    frames = {}
    for role, key in (("treated", treated), ("control", control)):
        frame = data.cell(key)
        missing = [k for k in keys if k not in frame.columns or frame[k].isna().all()]
        if missing:
            raise NotEvaluableError(f"cell {key} has no column {missing} to pair on")
        if frame.duplicated(subset=list(keys)).any():
            raise NotEvaluableError(f"pairing keys {list(keys)} are not unique within cell {key}")
        part = frame[list(keys)].copy()
        part[role] = pd.to_numeric(frame[metric], errors="coerce") * scale
        frames[role] = part
    merged = frames["treated"].merge(frames["control"], on=list(keys), how="inner").dropna()
    if merged.empty:
        raise NotEvaluableError(
            f"no replica of {treated} pairs with one of {control} on {list(keys)}"
        )
    diff = (merged["treated"] - merged["control"]).to_numpy(float)
    return {
        "pair_keys": list(keys),
        "n_pairs": len(diff),
        "mean_diff": float(diff.mean()),
        "se_diff": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else None,
        "n_treated_better": int((diff > 0).sum()),
    }


def evaluate_claims(data: PaperData, command: str) -> list[dict[str, Any]]:
    """Apply every claim's rule; missing cells or an inapplicable rule give "not run"."""
    commands_by_name: dict[str, list[str]] = {}
    for job in data.jobs:
        command_line = job.metadata.get("command")
        if command_line:
            runs = commands_by_name.setdefault(job.name, [])
            if command_line not in runs:
                runs.append(command_line)
    entries = []
    for claim in data.spec.claims:
        cells = {key: data.spec.cell(key).label for key in claim.cells}
        missing = [key for key in claim.cells if not data.has(key)]
        entry: dict[str, Any] = {
            "id": claim.id,
            "claim": claim.claim,
            "setting": claim.setting,
            "rule": claim.rule,
            "cells": cells,
            "metric": data.spec.metric,
            "ours": None,
            "paper": claim.paper,
            "verdict": NOT_RUN,
            "reason": "",
            "command": command,
            "run_commands": list(
                dict.fromkeys(
                    command_line
                    for key in claim.cells
                    for command_line in commands_by_name.get(data.spec.cell(key).name, [])
                )
            ),
        }
        if missing:
            entry["reason"] = "no finished runs for cell(s): " + ", ".join(
                cells[key] for key in missing
            )
        else:
            try:
                outcome = claim.evaluate(data)
            except NotEvaluableError as error:
                entry["reason"] = str(error)
            else:
                entry["ours"] = outcome.ours
                entry["verdict"] = "reproduced" if outcome.passed else "not reproduced"
        entries.append(entry)
    return entries


def _json_safe(value: Any) -> Any:
    # NaN / inf are not JSON; numpy scalars are not JSON-serialisable.
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # 6 significant digits: percent values to 1e-4 points, no float32 noise in the file.
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


def write_claims(path: Path, paper: str, command: str, entries: list[dict[str, Any]]) -> None:
    payload = {"paper": paper, "command": command, "claims": entries}
    path.write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- tables


def paper_table(data: PaperData, table: TableSpec) -> str:
    """Markdown: one row per setting, for each column the paper's best / mean beside ours."""
    header = ["setting"]
    for column in table.columns:
        header += [f"{column}: paper", f"{column}: ours"]
    body = []
    for label, row_keys in table.rows:
        line = [label]
        for key in row_keys:
            if key is None:
                line += ["-", "-"]
                continue
            cell = data.spec.cell(key)
            stats = data.stats(key)
            line.append(cell.paper.format() if cell.paper else "-")
            line.append(stats.format() if stats else NOT_RUN)
        body.append(line)
    return markdown_table(pd.DataFrame(body, columns=header))


def breakdown_table(data: PaperData, column: str) -> str:
    """Markdown: mean (n) of every cell that ran, split by the values of one replica column."""
    frame = data.replicas
    if frame.empty or column not in frame.columns:
        return ""
    levels = sorted(frame[column].dropna().unique())
    body = []
    for cell in data.spec.cells:
        rows = data.cell(cell.key)
        if rows.empty:
            continue
        line = [cell.label]
        for level in levels:
            values = pd.to_numeric(rows.loc[rows[column] == level, data.spec.metric], "coerce")
            values = values[np.isfinite(values)] * data.spec.scale
            line.append(f"{values.mean():.1f} (n={len(values)})" if len(values) else "-")
        body.append(line)
    if not body:
        return ""
    return markdown_table(pd.DataFrame(body, columns=["cell", *(f"{column}={v}" for v in levels)]))


def tables_markdown(data: PaperData) -> str:
    spec = data.spec
    unit = f" ({spec.unit})" if spec.unit else ""
    parts = [f"# {spec.title}: paper vs ours\n"]
    parts.append(
        f"Each entry is best / mean over a cell's replicas of `{spec.metric}`{unit}; "
        "ours adds n (replicas). `not run`: no finished run for that cell.\n"
    )
    for table in spec.tables:
        parts.append(f"## {table.title}\n")
        parts.append(paper_table(data, table) + "\n")
        if table.note:
            parts.append(table.note + "\n")
    if spec.breakdown:
        split = breakdown_table(data, spec.breakdown)
        if split:
            parts.append(f"## Mean{unit} by {spec.breakdown}\n")
            parts.append(split + "\n")
    if spec.notes:
        parts.append("## Notes\n")
        parts.extend(f"- {note}" for note in spec.notes)
        parts.append("")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures


def save_figure(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` without timestamps (stable committed files)."""
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None, "Creator": None})
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
    if levels != [None]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def mark_not_run(ax: plt.Axes, text: str = NOT_RUN) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


# ----------------------------------------------------------------------------- README


def _git_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def readme_markdown(
    data: PaperData, command: str, files: Sequence[Path], claims: list[dict[str, Any]]
) -> str:
    spec = data.spec
    lines = [f"# {spec.title}", ""]
    lines += ["Regenerate with:", "", "```bash", command, "```", ""]
    if spec.script:
        lines += [f"Runs the sweep and then this command: `python {spec.script}`.", ""]
    lines += [f"Figures code at repro commit `{_git_commit()}`.", ""]
    lines += ["Run paths searched: " + (", ".join(f"`{p}`" for p in data.run_paths) or "none"), ""]
    lines += ["## Claims", ""]
    lines.append(
        markdown_table(
            pd.DataFrame(
                [[c["id"], c["setting"], c["verdict"], c["reason"]] for c in claims],
                columns=["id", "setting", "verdict", "reason"],
            )
        )
    )
    lines += [
        "",
        "Rules, our values and the paper's values: `claims.json`. Tables: `tables.md`.",
        "",
    ]
    lines += ["## Files", ""] + [f"- `{Path(f).name}`" for f in files] + [""]
    lines += [f"## Runs used ({len(data.jobs)} finished jobs, {len(data.replicas)} replicas)", ""]
    if data.jobs:
        counts = data.replicas.groupby("job").size()
        rows = []
        for job in data.jobs:
            meta = job.metadata
            commit = str(meta.get("git_commit") or "unknown")
            if meta.get("git_dirty"):
                commit += " (dirty)"
            wall = meta.get("wall_time_s")
            rows.append(
                [
                    str(job.path),
                    job.name,
                    int(counts.get(str(job.path), 0)),
                    commit,
                    f"{wall:.0f}" if isinstance(wall, int | float) else "",
                    meta.get("end_time") or "",
                ]
            )
        lines.append(
            markdown_table(
                pd.DataFrame(
                    rows,
                    columns=["job dir", "experiment", "replicas", "git commit", "wall s", "end"],
                )
            )
        )
        lines.append("")
    else:
        lines += ["No finished runs found: every cell is `not run`.", ""]
    mixed = data.mixed_settings()
    if mixed:
        lines += ["## Warning: cells mixing runs with different settings", ""]
        for label, settings in mixed.items():
            lines.append(f"- `{label}`: " + "; ".join(f"`{s}`" for s in settings))
        lines += ["", "Pass `--runs` with only the intended run dirs to separate them.", ""]
    if data.duplicates_dropped:
        lines += [
            f"{data.duplicates_dropped} replica(s) appeared in more than one job (same cell, seed "
            "and grid hyperparameters); the job with the most epochs, then the most recently "
            "finished, was used.",
            "",
        ]
    if data.superseded:
        lines += [f"## Superseded jobs ({len(data.superseded)}, not counted)", ""]
        lines += [
            f"- `{job.path}` ({job.name}, {job.summary.get('epochs')} epochs, "
            f"ended {job.metadata.get('end_time')})"
            for job in data.superseded
        ]
        lines.append("")
    if data.unfinished:
        lines += [f"## Unfinished jobs ({len(data.unfinished)}, not counted)", ""]
        lines += [
            f"- `{job.path}` ({job.name or 'unknown experiment'}, {job.status}, "
            f"last epoch {'none logged' if job.last_epoch is None else job.last_epoch})"
            for job in data.unfinished
        ]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- driver


def generate(
    spec: PaperSpec, run_paths: Sequence[str | Path], out_dir: Path, command: str
) -> dict[str, Any]:
    """Write tables, figures, claims.json and README.md for ``spec`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_paper_data(spec, run_paths)
    files: list[Path] = []
    tables_path = out_dir / "tables.md"
    tables_path.write_text(tables_markdown(data))
    files.append(tables_path)
    files += spec.plot(data, out_dir)
    claims = evaluate_claims(data, command)
    claims_path = out_dir / "claims.json"
    write_claims(claims_path, spec.name, command, claims)
    files.append(claims_path)
    readme_path = out_dir / "README.md"
    readme_path.write_text(readme_markdown(data, command, files, claims))
    files.append(readme_path)
    return {"data": data, "claims": claims, "files": files}
