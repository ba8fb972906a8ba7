"""A paper's run data: the replicas of each cell, from the jobs whose config is the cell's.

:func:`load_paper_data` reads every job dir under the run paths, matches finished jobs to
cells by identity (:mod:`repro.figures.identity`) and keeps, per cell, one row per replica.
Our per-replica number is ``spec.metric`` (by default the final test accuracy), scaled to
percent. A cell with no matching finished job is "not run"; nothing is ever filled in for it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.aggregate import JobRecord, load_runs, read_metrics, replicas_frame
from repro.figures.identity import CellRuns, Mismatch, expected_config, match_paper
from repro.figures.spec import PaperSpec

REPLICA_KEY_COLUMNS = ("seed",)


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


def _end_time(job: JobRecord) -> float:
    """When a job finished: summary end_time, else the summary file's mtime."""
    end = job.metadata.get("end_time")
    if isinstance(end, int | float) and not isinstance(end, bool):
        return float(end)
    parsed = pd.to_datetime(end, errors="coerce", utc=True) if isinstance(end, str) else None
    if parsed is not None and not pd.isna(parsed):
        return parsed.timestamp()
    return (job.path / "summary.json").stat().st_mtime


def _cell_frame(spec: PaperSpec, key: str, jobs: Sequence[JobRecord]) -> pd.DataFrame:
    """Replicas of the cell's matching jobs; a replica found in two jobs counts once (newest).

    Both jobs have the cell's result config, so such a replica is the same computation run
    twice (e.g. the sweep in two output roots); the older copy is dropped.
    """
    cell = spec.cell(key)
    frame = replicas_frame(sorted(jobs, key=_end_time))
    if frame.empty:
        return frame
    for column, value in cell.where:
        if column not in frame.columns:
            return frame.iloc[0:0]
        frame = frame[frame[column] == value]
    hparams = sorted(
        {
            k
            for job in jobs
            for r in job.summary.get("replicas") or []
            for k in r.get("hparams") or {}
        }
    )
    frame = frame.drop_duplicates(subset=[*REPLICA_KEY_COLUMNS, *hparams], keep="last")
    return frame.assign(cell=key).reset_index(drop=True)


@dataclasses.dataclass
class PaperData:
    """The paper's replicas per cell, with the jobs they came from and those left out."""

    spec: PaperSpec
    runs: dict[str, CellRuns]  # cell key -> matching / mismatching finished jobs
    frames: dict[str, pd.DataFrame]  # cell key -> one row per replica used
    unfinished: list[JobRecord]
    run_paths: list[Path]
    overrides: tuple[str, ...] = ()
    _metrics_cache: dict[Path, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def cell(self, key: str) -> pd.DataFrame:
        self.spec.cell(key)  # KeyError for an unknown key
        return self.frames.get(key, pd.DataFrame())

    def has(self, key: str) -> bool:
        return not self.cell(key).empty

    @property
    def replicas(self) -> pd.DataFrame:
        """Every replica used, once per (cell, job, replica)."""
        frames = [frame for frame in self.frames.values() if not frame.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    @property
    def jobs(self) -> list[JobRecord]:
        """Jobs with at least one replica used, in cell order."""
        used = {
            str(job) for frame in self.frames.values() if not frame.empty for job in frame["job"]
        }
        seen: dict[str, JobRecord] = {}
        for runs in self.runs.values():
            for job in runs.matched:
                if str(job.path) in used:
                    seen.setdefault(str(job.path), job)
        return list(seen.values())

    @property
    def superseded(self) -> list[JobRecord]:
        """Matching jobs none of whose replicas were used (an older copy of the same run)."""
        used = {str(job.path) for job in self.jobs}
        jobs = {str(j.path): j for runs in self.runs.values() for j in runs.matched}
        return [job for path, job in jobs.items() if path not in used]

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for runs in self.runs.values() for m in runs.mismatched]

    def values(self, key: str) -> np.ndarray:
        """Finite per-replica values of the paper metric, scaled (percent)."""
        frame = self.cell(key)
        if frame.empty or self.spec.metric not in frame.columns:
            return np.array([], dtype=float)
        values = pd.to_numeric(frame[self.spec.metric], errors="coerce").to_numpy(float)
        return values[np.isfinite(values)] * self.spec.scale

    def stats(self, key: str) -> CellStats | None:
        frame, values = self.cell(key), self.values(key)
        if frame.empty or values.size == 0:
            return None
        return CellStats(
            n=int(values.size),
            n_missing=len(frame) - int(values.size),
            n_diverged=int(frame["diverged"].astype(bool).sum()),
            best=float(values.min() if self.spec.lower_is_better else values.max()),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if values.size > 1 else math.nan,
        )

    def metrics(self, job_path: str | Path) -> list[dict[str, Any]]:
        path = Path(job_path)
        if path not in self._metrics_cache:
            self._metrics_cache[path] = read_metrics(path)
        return self._metrics_cache[path]

    def curves(self, key: str, metric: str = "test_accuracy") -> pd.DataFrame:
        """Long frame (replica columns..., epoch, value) of a per-epoch metric of one cell.

        Only the replicas used in the tables contribute, so curves and tables agree.
        Accuracies are scaled like the tables (percent).
        """
        frame = self.cell(key)
        if frame.empty:
            return pd.DataFrame(columns=["epoch", "value"])
        columns = [c for c in frame.columns if c != "diverged"]
        scale = self.spec.scale if "accuracy" in metric else 1.0
        records: list[dict[str, Any]] = []
        for job_path, job_rows in frame.groupby("job", sort=False):
            rows = job_rows.to_dict("records")
            for record in self.metrics(job_path):
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
                    if value is not None:
                        entry = {c: row[c] for c in columns}
                        entry.update(epoch=int(record["epoch"]), value=float(value) * scale)
                        records.append(entry)
        return pd.DataFrame(records, columns=[*columns, "epoch", "value"])


def load_paper_data(
    spec: PaperSpec, run_paths: Sequence[str | Path], overrides: Sequence[str] = ()
) -> PaperData:
    """Read the jobs under ``run_paths`` and keep, per cell, the replicas of matching jobs.

    ``overrides`` are the Hydra overrides the whole sweep was run with (e.g. a smoke run's
    ``trainer.epochs=2``): each cell's expected config is its experiment composed with them.
    """
    if overrides and spec.cells:
        expected_config(spec.cells[0], overrides)  # bad overrides: ConfigError before reading
    paths = [Path(p) for p in run_paths]
    collection = load_runs(paths) if paths else None
    finished = collection.finished if collection else []
    names = {cell.name for cell in spec.cells}
    unfinished = [
        job
        for job in (collection.unfinished if collection else [])
        if job.name is None or job.name in names
    ]
    runs = match_paper(spec, finished, overrides)
    frames = {key: _cell_frame(spec, key, list(r.matched)) for key, r in runs.items() if r.matched}
    return PaperData(
        spec=spec,
        runs=runs,
        frames=frames,
        unfinished=unfinished,
        run_paths=paths,
        overrides=tuple(overrides),
    )
