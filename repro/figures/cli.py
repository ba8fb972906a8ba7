"""``python -m repro.figures <paper>``: regenerate ``paper_figures/<paper>/`` from run dirs."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.figures.core import NOT_RUN, default_run_paths, generate
from repro.figures.registry import PAPERS, get_paper


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro.figures",
        description="Tables, figures, claims.json and README for one paper from its run dirs.",
    )
    parser.add_argument("paper", nargs="?", help=f"one of {sorted(PAPERS)}")
    parser.add_argument("--list", action="store_true", help="list the registered papers")
    parser.add_argument(
        "--runs",
        nargs="+",
        type=Path,
        help="run / multirun dirs to search (default: $REPRO_OUTPUT_ROOT/multirun/<sweep> "
        "for the paper's sweeps and runs/ dirs; REPRO_OUTPUT_ROOT defaults to outputs)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="output directory (default: paper_figures/<paper>)",
    )
    parser.add_argument(
        "--wandb-project",
        help="ENTITY/PROJECT: fetch the runs' files from W&B first (needs network)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 on bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.list:
        for name in sorted(PAPERS):
            print(f"{name}: {get_paper(name).title}")
        return 0
    if not args.paper:
        print(f"error: paper is required, one of {sorted(PAPERS)}", file=sys.stderr)
        return 2
    try:
        spec = get_paper(args.paper)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = args.out_dir or Path("paper_figures") / spec.name
    run_paths = list(args.runs) if args.runs else default_run_paths(spec)
    if args.wandb_project:
        from repro.figures.wandb_source import fetch_wandb_runs

        run_paths.append(fetch_wandb_runs(args.wandb_project, out_dir / ".wandb_cache"))
    missing = [path for path in run_paths if not Path(path).exists()]
    if missing:
        print(f"error: run path does not exist: {missing[0]}", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "repro.figures", *argv])
    result = generate(spec, run_paths, out_dir, command)
    data = result["data"]
    print(
        f"{spec.name}: {len(data.jobs)} finished job(s), {len(data.replicas)} replica(s), "
        f"{len(data.unfinished)} unfinished job(s) not counted"
    )
    for label, settings in data.mixed_settings().items():
        print(f"  warning: {label} mixes runs with different settings: {'; '.join(settings)}")
    for claim in result["claims"]:
        reason = f" ({claim['reason']})" if claim["verdict"] == NOT_RUN and claim["reason"] else ""
        print(f"  claim {claim['id']}: {claim['verdict']}{reason}")
    print(f"wrote {out_dir}/: " + ", ".join(sorted(Path(f).name for f in result["files"])))
    return 0
