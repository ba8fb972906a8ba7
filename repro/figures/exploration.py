"""README of a protocol exploration, regenerated from its committed per-replica table.

A protocol exploration (e.g. ``paper_figures/neelakantan2015/protocol_exploration/``) commits
``replicas.csv`` (``python -m repro.aggregate ... --out``: one row per replica, with each job's
git commit and wall time) and a README whose prose says what was tried and chosen. This module
writes that README from the CSV, so its results table, wall time and the list of EVERY commit
the runs came from are the CSV's, never typed by hand::

    python -m repro.figures.exploration neelakantan2015
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from repro.aggregate import group_summary, markdown_table
from repro.errors import ConfigError
from repro.figures.files import write_text

REPLICAS_FILE = "replicas.csv"
# Paper -> module defining EXPLORATION (an Exploration).
EXPLORATIONS = {"neelakantan2015": "repro.figures.neelakantan2015_protocol"}


@dataclasses.dataclass(frozen=True)
class Exploration:
    """The prose of an exploration; the numbers come from ``<directory>/replicas.csv``."""

    directory: Path
    title: str
    intro: str  # what the paper leaves open and how the choice was made
    command: str  # the commands that ran the exploration and wrote replicas.csv
    group_by: tuple[str, ...]  # columns of the results table
    metric: str
    findings: str  # what we saw, and what was chosen


def jobs_table(frame: pd.DataFrame, settings: Sequence[str]) -> pd.DataFrame:
    """One row per job: its experiment, settings, replicas, wall time and git commit."""
    columns = ["name", *settings]
    grouped = frame.groupby("job", sort=False)
    jobs = grouped[columns].first()
    jobs["replicas"] = grouped.size()
    jobs["wall s"] = grouped["wall_time_s"].first().round(0).astype(int)
    jobs["git commit"] = grouped["git_commit"].first().str[:12]
    return jobs.reset_index(drop=True)


def readme_text(exploration: Exploration, frame: pd.DataFrame) -> str:
    settings = [c for c in exploration.group_by if c not in ("name", "optimizer.learning_rate")]
    jobs = jobs_table(frame, settings)
    commits = list(dict.fromkeys(frame["git_commit"].str[:12]))
    results = group_summary(frame, list(exploration.group_by), exploration.metric)
    return "\n".join(
        [
            f"# {exploration.title}",
            "",
            exploration.intro.strip(),
            "",
            "Commands:",
            "",
            "\n".join("    " + line for line in exploration.command.strip().splitlines()),
            "",
            f"## Results: {results.attrs['metric']} (fraction), per job and learning rate",
            "",
            markdown_table(results),
            "",
            f"## Runs ({len(jobs)} jobs, {int(jobs['replicas'].sum())} replicas, "
            f"{jobs['wall s'].sum() / 60:.1f} min of wall time in total)",
            "",
            markdown_table(jobs),
            "",
            f"The runs came from {len(commits)} commit(s): "
            + ", ".join(f"`{c}`" for c in commits)
            + f". Every row of `{REPLICAS_FILE}` names its job's commit.",
            "",
            exploration.findings.strip(),
            "",
        ]
    )


def write_readme(exploration: Exploration) -> Path:
    frame = pd.read_csv(exploration.directory / REPLICAS_FILE)
    return write_text(exploration.directory / "README.md", readme_text(exploration, frame))


def get_exploration(paper: str) -> Exploration:
    if paper not in EXPLORATIONS:
        raise ConfigError(f"paper must be one of {sorted(EXPLORATIONS)}, got {paper!r}")
    return importlib.import_module(EXPLORATIONS[paper]).EXPLORATION


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1:
            raise ConfigError(f"give one paper, one of {sorted(EXPLORATIONS)}, got {args}")
        path = write_readme(get_exploration(args[0]))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
