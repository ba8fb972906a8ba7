"""``python -m repro.aggregate``: the tidy table (CSV + markdown) of run / multirun dirs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.aggregate.jobs import load_runs
from repro.aggregate.markdown import markdown_table, relative_jobs, unfinished_table
from repro.aggregate.table import DEFAULT_METRIC, group_summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro.aggregate",
        description="Tidy table (CSV + markdown) of Hydra run / multirun dirs.",
    )
    parser.add_argument("paths", nargs="+", help="multirun dirs, run dirs, or parents of them")
    parser.add_argument("--out", type=Path, help="CSV path for the per-replica table")
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=["job"],
        help="columns of the grouped view (default: job)",
    )
    parser.add_argument(
        "--metric", default=DEFAULT_METRIC, help=f"metric to summarise (default {DEFAULT_METRIC})"
    )
    parser.add_argument(
        "--mode", choices=["max", "min"], help="best = max or min (default: from the metric name)"
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=40,
        help="rows of the per-replica table to print (0: all; the CSV always has all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 on bad input, 1 when nothing finished)."""
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.paths)
        frame = runs.frame()
        grouped = (
            group_summary(frame, args.group_by, args.metric, args.mode) if not frame.empty else None
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(f"# {len(frame)} replica rows from {len(runs.finished)} finished job(s)\n")
    if not frame.empty:
        shown = frame if args.max_rows <= 0 else frame.head(args.max_rows)
        print(markdown_table(relative_jobs(shown)))
        if len(shown) < len(frame):
            print(f"\n({len(frame) - len(shown)} more rows; all rows are in the CSV)")
        print(f"\n## {grouped.attrs['metric']} by {', '.join(args.group_by)}\n")
        print(markdown_table(relative_jobs(grouped)))
    if runs.unfinished:
        print(f"\n## {len(runs.unfinished)} unfinished job(s) (not counted)\n")
        print(markdown_table(unfinished_table(runs.unfinished)))
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0 if runs.finished else 1
