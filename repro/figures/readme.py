"""README.md of ``paper_figures/<paper>/``: command, verdict table and the runs behind it.

The verdict table shows, per claim, the verdict, our effect with its 95 % interval and n, the
paper's effect and a note (why a claim is not run or inconclusive, or what the interval
shows). The run sections say exactly which job dirs were used (git commit, wall time), which
ones carry a cell's name but another config (not used, with the differing keys), and which
are unfinished, so a regenerated README never hides where its numbers came from.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro.aggregate import JobRecord, markdown_table
from repro.figures.data import PaperData
from repro.figures.verdicts import difference_unit


def git_state() -> str:
    """Short commit of the figures code, `(dirty)` if tracked OR untracked files outside
    paper_figures/ changed."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parent,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return "unknown"
    # The outputs being written (paper_figures/) are not the code that wrote them.
    status = git(
        "status",
        "--porcelain",
        "--untracked-files=normal",
        "--",
        ":(top)",
        ":(top,exclude)paper_figures",
    )
    return commit + (" (dirty)" if status else "")


def format_effect(entry: dict[str, Any]) -> str:
    """``+37.8 [+25.4, +50.3] points (n=40)`` (``40.2 [29.1, 51.3] % (n=4)`` for a level), or
    the requirement values of a check-only claim."""
    effect = entry.get("effect")
    if effect:
        low, high = effect["interval"]
        unit = entry.get("unit", "%")
        if effect.get("kind") == "level":  # a mean, not a difference: no sign, its own unit
            number = "{:.1f}"
        else:
            number, unit = "{:+.1f}", difference_unit(unit)
        estimate, low, high = (number.format(v) for v in (effect["estimate"], low, high))
        return f"{estimate} [{low}, {high}] {unit} (n={effect['n']})"
    checks = entry.get("requirements") or []
    if checks:
        return "; ".join(f"{c['rule'].split(' (')[0]}: {c['value']:.1f}" for c in checks)
    return "-"


def format_paper(entry: dict[str, Any]) -> str:
    paper = entry.get("paper") or {}
    source = paper.get("source", "")
    if entry.get("paper_effect") is not None:
        unit = difference_unit(entry.get("unit", "%"))
        text = f"{entry['paper_effect']:+.1f} {unit}"
    else:
        text = paper.get("statement") or "-"
    return f"{text} ({source})" if source else text


def verdict_table(claims: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            c["id"],
            c["setting"],
            c["verdict"],
            format_effect(c),
            format_paper(c),
            "; ".join(part for part in (c.get("reason"), c.get("finding")) if part),
        ]
        for c in claims
    ]
    columns = ["claim", "setting", "verdict", "ours: effect [95% CI]", "paper", "note"]
    return markdown_table(pd.DataFrame(rows, columns=columns))


def _jobs_table(data: PaperData) -> str:
    rows = []
    for key, frame in data.frames.items():
        counts = frame.groupby("job").size()
        for job in data.runs[key].matched:
            if str(job.path) not in counts:
                continue
            meta = job.metadata
            commit = str(meta.get("git_commit") or "unknown")[:12]
            wall = meta.get("wall_time_s")
            rows.append(
                [
                    key,
                    str(job.path),
                    int(counts[str(job.path)]),
                    commit + (" (dirty)" if meta.get("git_dirty") else ""),
                    f"{wall:.0f}" if isinstance(wall, int | float) else "",
                    meta.get("end_time") or "",
                ]
            )
    columns = ["cell", "job dir", "replicas", "git commit", "wall s", "end"]
    return markdown_table(pd.DataFrame(rows, columns=columns))


def _job_lines(jobs: Sequence[JobRecord], describe: Callable[[JobRecord], str]) -> list[str]:
    return [f"- `{job.path}` ({describe(job)})" for job in jobs]


def runs_sections(data: PaperData) -> list[str]:
    """Runs used, runs of another config, superseded copies and unfinished jobs."""
    jobs = data.jobs
    lines = [f"## Runs used ({len(jobs)} finished jobs, {len(data.replicas)} replicas)", ""]
    if jobs:
        commits = sorted({str(job.metadata.get("git_commit") or "unknown") for job in jobs})
        lines += [
            _jobs_table(data),
            "",
            "Commits the runs came from: " + ", ".join(f"`{c}`" for c in commits),
            "",
        ]
    else:
        lines += ["No finished run of any cell's config: every claim is `not run`.", ""]
    if data.mismatches:
        lines += [f"## Runs of another config ({len(data.mismatches)}, not used)", ""]
        lines += [f"- cell `{m.cell}`: `{m.describe()}`" for m in data.mismatches]
        lines += ["", "Each differs from its cell's config in the keys shown (cell -> run).", ""]
    if data.superseded:
        lines += [f"## Superseded copies of the same runs ({len(data.superseded)}, not used)", ""]
        lines += _job_lines(
            data.superseded, lambda j: f"{j.name}, ended {j.metadata.get('end_time')}"
        )
        lines.append("")
    if data.unfinished:
        lines += [f"## Unfinished jobs ({len(data.unfinished)}, not used)", ""]
        lines += _job_lines(
            data.unfinished,
            lambda j: (
                f"{j.name or 'unknown experiment'}, {j.status}, last epoch "
                f"{'none logged' if j.last_epoch is None else j.last_epoch}"
            ),
        )
        lines.append("")
    return lines


def readme_markdown(
    data: PaperData, command: str, files: Sequence[Path], claims: list[dict[str, Any]]
) -> str:
    spec = data.spec
    lines = [f"# {spec.title}", "", f"Paper: {spec.citation}.", ""]
    lines += ["Regenerate with:", "", "```bash", command, "```", ""]
    if spec.script:
        lines += [f"`python {spec.script}` runs the sweep and then this command.", ""]
    lines += [f"Figures code at repro commit `{git_state()}`.", ""]
    searched = ", ".join(f"`{p}`" for p in data.run_paths) or "none"
    lines += [f"Run paths searched: {searched}.", ""]
    if data.overrides:
        lines += ["Cells' configs composed with: `" + " ".join(data.overrides) + "`.", ""]
    lines += ["## Claims", ""]
    # A study judged elsewhere (e.g. per budget) has no claims here: say where they are.
    lines += [verdict_table(claims), ""] if claims else [f"- {n}" for n in spec.notes] + [""]
    lines += [
        "Verdicts: `reproduced` (holds, effect compatible with the paper's), `reproduced "
        "qualitatively` (holds, effect clearly outside the paper's), `not reproduced`, "
        "`inconclusive` (a stated precondition failed), `not run`. Rules, checks and values: "
        "`claims.json`; tables: `tables.md`; every replica used: `replicas.csv`.",
        "",
    ]
    lines += ["## Files", ""] + [f"- `{Path(f).name}`" for f in files] + [""]
    return "\n".join(lines + runs_sections(data))
