"""``python -m repro.figures <paper>``: regenerate ``paper_figures/<paper>/`` from run dirs.

It prints, per cell, which runs were used and which runs carry the cell's name but another
config (never merged), then each claim's verdict. The command written into the README and
claims.json names the run paths explicitly (``--runs``), so it works verbatim whatever
``REPRO_OUTPUT_ROOT`` was. An existing output dir is not overwritten by a result in which no
cell has a matching run, unless ``--allow-empty`` is given.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.errors import ConfigError
from repro.figures.data import PaperData, load_paper_data
from repro.figures.generate import generate
from repro.figures.registry import PAPERS, get_paper
from repro.figures.spec import PaperSpec
from repro.figures.verdicts import INCONCLUSIVE, NOT_RUN


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
        help="run / multirun dirs to search (default: $REPRO_OUTPUT_ROOT/multirun/<sweep> for "
        "the paper's sweeps; REPRO_OUTPUT_ROOT defaults to outputs)",
    )
    parser.add_argument(
        "--overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra overrides the sweep was run with (e.g. trainer.epochs=2 replicas.seeds=2): "
        "a run belongs to a cell only if its config is the cell's experiment with these",
    )
    parser.add_argument("--out-dir", type=Path, help="output dir (default: paper_figures/<paper>)")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="write the outputs even when no cell has a matching run (all claims 'not run')",
    )
    parser.add_argument(
        "--wandb-project",
        help="ENTITY/PROJECT: fetch the runs' files from W&B first (needs network)",
    )
    parser.add_argument(
        "--wandb-offline",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="read offline W&B runs (wandb/offline-run-* dirs at or below DIR) as run dirs",
    )
    return parser


def default_run_paths(spec: PaperSpec) -> list[Path]:
    """Existing ``$REPRO_OUTPUT_ROOT/multirun/<sweep>`` dirs of the paper's sweeps."""
    root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
    candidates = dict.fromkeys(root / "multirun" / sweep for sweep in spec.sweeps or (spec.name,))
    return [path for path in candidates if path.exists()]


def figures_command(paper: str, args: argparse.Namespace, run_paths: Sequence[Path]) -> str:
    """The command that regenerates these outputs verbatim (run paths spelled out)."""
    argv = ["python", "-m", "repro.figures", paper, "--runs", *map(str, run_paths)]
    if args.overrides:
        argv += ["--overrides", *args.overrides]
    if args.out_dir:
        argv += ["--out-dir", str(args.out_dir)]
    return shlex.join(argv)


def cell_report(data: PaperData) -> list[str]:
    """One line per cell: the replicas used, or why the cell is not run."""
    lines = []
    for cell in data.spec.cells:
        runs = data.runs[cell.key]
        frame = data.cell(cell.key)
        if not frame.empty:
            text = f"{len(frame)} replica(s) from {frame['job'].nunique()} run(s)"
        elif runs.matched:
            text = f"{NOT_RUN}: its {len(runs.matched)} matching run(s) hold no selected replica"
        else:
            text = f"{NOT_RUN}: no finished run of its config"
        lines.append(f"  cell {cell.key} ({cell.label}): {text}")
        lines += [f"    other config, not used: {m.describe()}" for m in runs.mismatched]
    return lines


def _report(spec: PaperSpec, data: PaperData, claims: list[dict], files: list[Path]) -> None:
    ran = sum(1 for cell in spec.cells if data.has(cell.key))
    print(
        f"{spec.name}: {ran} of {len(spec.cells)} cell(s) have runs of their config; "
        f"{len(data.replicas)} replica(s) used, {len(data.mismatches)} run(s) of another config "
        f"and {len(data.unfinished)} unfinished job(s) not used"
    )
    print("\n".join(cell_report(data)))
    for claim in claims:
        shown = claim["verdict"] in (NOT_RUN, INCONCLUSIVE) and claim["reason"]
        print(
            f"  claim {claim['id']}: {claim['verdict']}"
            + (f" ({claim['reason']})" if shown else "")
        )
    if files:
        out_dir = Path(files[0]).parent
        print(f"wrote {out_dir}/: " + ", ".join(sorted(Path(f).name for f in files)))


def _resolve_runs(args: argparse.Namespace, spec: PaperSpec, out_dir: Path) -> list[Path]:
    run_paths = list(args.runs) if args.runs else default_run_paths(spec)
    if args.wandb_project:
        from repro.figures.wandb_source import fetch_wandb_runs

        run_paths.append(fetch_wandb_runs(args.wandb_project, out_dir / ".wandb_cache"))
    if args.wandb_offline:
        from repro.figures.wandb_source import read_wandb_offline

        absent = [str(path) for path in args.wandb_offline if not path.exists()]
        if absent:
            raise ConfigError(f"--wandb-offline must be existing dirs, got {absent[0]!r}")
        run_paths.append(read_wandb_offline(args.wandb_offline, out_dir / ".wandb_offline"))
    missing = [path for path in run_paths if not Path(path).exists()]
    if missing:
        raise ConfigError(f"--runs must be existing dirs, got {str(missing[0])!r}")
    return run_paths


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list:
        for name in sorted(PAPERS):
            print(f"{name}: {get_paper(name).title}")
        return 0
    try:
        if not args.paper:
            raise ConfigError(f"paper is required, one of {sorted(PAPERS)}")
        spec = get_paper(args.paper)
        out_dir = args.out_dir or Path("paper_figures") / spec.name
        run_paths = _resolve_runs(args, spec, out_dir)
        data = load_paper_data(spec, run_paths, args.overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    nothing = not any(data.has(cell.key) for cell in spec.cells)
    if nothing and (out_dir / "claims.json").exists() and not args.allow_empty:
        _report(spec, data, [], [])
        print(
            f"error: no cell of {spec.name} has a finished run of its config under "
            f"{[str(p) for p in run_paths]}; {out_dir} is left as it is (--allow-empty writes "
            "it anyway)",
            file=sys.stderr,
        )
        return 2
    command = figures_command(spec.name, args, run_paths)
    result = generate(spec, run_paths, out_dir, command, args.overrides, data=data)
    _report(spec, data, result["claims"], result["files"])
    return 0
