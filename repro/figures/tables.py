"""tables.md: the paper's numbers beside ours, per table of the paper spec."""

from __future__ import annotations

import numpy as np
import pandas as pd

from repro.aggregate import markdown_table
from repro.figures.data import PaperData
from repro.figures.spec import TableSpec
from repro.figures.verdicts import NOT_RUN


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
        if rows.empty or column not in rows.columns:
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
        "ours adds n (replicas). `not run`: no finished run of that cell's config.\n"
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
