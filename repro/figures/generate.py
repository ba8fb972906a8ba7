"""Write ``paper_figures/<paper>/`` from run dirs: tables, figures, claims, replicas, README.

- ``tables.md``: the paper's numbers beside ours (:mod:`repro.figures.tables`);
- ``*.png`` / ``*.pdf``: what the paper's plot function draws;
- ``claims.json``: every claim judged (:mod:`repro.figures.claims`);
- ``replicas.csv``: one row per replica used (cell, job, seed, grid values, metrics, commit),
  so every number in the tables and the README can be checked;
- ``README.md``: command, verdict table, the runs used and those left out.

Every file is written atomically (:mod:`repro.figures.files`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from repro.figures.claims import evaluate_claims, write_claims
from repro.figures.data import PaperData, load_paper_data
from repro.figures.files import atomic_write, write_text
from repro.figures.readme import readme_markdown
from repro.figures.spec import PaperSpec
from repro.figures.tables import tables_markdown

REPLICAS_FILE = "replicas.csv"


def write_replicas(path: Path, data: PaperData) -> Path:
    frame = data.replicas
    if not frame.empty:
        frame = frame[["cell", *(c for c in frame.columns if c != "cell")]]
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def generate(
    spec: PaperSpec,
    run_paths: Sequence[str | Path],
    out_dir: Path,
    command: str,
    overrides: Sequence[str] = (),
    data: PaperData | None = None,
) -> dict[str, Any]:
    """Write every output of ``spec`` into ``out_dir``; returns data, claims and files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = load_paper_data(spec, run_paths, overrides)
    files = [write_text(out_dir / "tables.md", tables_markdown(data))]
    files += spec.plot(data, out_dir)
    claims = evaluate_claims(data, command)
    write_claims(out_dir / "claims.json", data, command, claims)
    files.append(out_dir / "claims.json")
    files.append(write_replicas(out_dir / REPLICAS_FILE, data))
    readme = out_dir / "README.md"
    write_text(readme, readme_markdown(data, command, [*files, readme], claims))
    files.append(readme)
    return {"data": data, "claims": claims, "files": files}
