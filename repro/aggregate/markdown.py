"""Markdown rendering of tables (GitHub flavour) for the aggregate CLI and the figures."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from repro.aggregate.jobs import JobRecord


def _format_cell(value: Any, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, float_format)
    if isinstance(value, bool):
        return str(value)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, float_format: str = ".4g") -> str:
    """GitHub markdown table of ``frame`` (NaN and None print as empty cells)."""
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_format_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)


def unfinished_table(jobs: Sequence[JobRecord]) -> pd.DataFrame:
    """Unfinished jobs with their status, name, overrides and last logged epoch."""
    return pd.DataFrame(
        [
            {
                "job": str(job.path),
                "name": job.name,
                "status": job.status,
                "last_epoch": job.last_epoch,
                "overrides": " ".join(job.overrides),
            }
            for job in jobs
        ],
        columns=["job", "name", "status", "last_epoch", "overrides"],
    )


def relative_jobs(frame: pd.DataFrame) -> pd.DataFrame:
    # Print job paths relative to their common parent: shorter tables, same information.
    if frame.empty or "job" not in frame.columns:
        return frame
    jobs = frame["job"].astype(str)
    common = os.path.commonpath(list(jobs.unique())) if len(jobs) else ""
    if jobs.nunique() > 1 and common:
        frame = frame.copy()
        frame["job"] = [os.path.relpath(job, common) for job in jobs]
    return frame
