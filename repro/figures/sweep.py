"""Run a paper's sweep through the Hydra app, then its figures (for ``scripts/<paper>.py``).

The training command is one Hydra multirun over the paper's experiments::

    python -m repro.train -m experiment=<paper>/<cell>,<paper>/<cell>,... sweep_name=<sweep> \\
        [extra overrides]

so every job lands under ``$REPRO_OUTPUT_ROOT/multirun/<sweep>/`` where ``python -m
repro.figures <paper>`` looks by default. Finished jobs are skipped by the engine on a rerun,
so an interrupted sweep resumes by running the script again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.errors import ConfigError
from repro.figures.cli import main as figures_main
from repro.figures.registry import get_paper
from repro.figures.spec import PaperSpec
from repro.run_identity import result_overrides


def train_command(
    spec: PaperSpec, cell_keys: Sequence[str] | None = None, overrides: Sequence[str] = ()
) -> list[str]:
    """The ``python -m repro.train -m ...`` argv that runs the chosen cells (default: all)."""
    if cell_keys:
        known = [cell.key for cell in spec.cells]
        unknown = [key for key in cell_keys if key not in known]
        if unknown:
            raise ConfigError(f"--cells must be among {known}, got {unknown}")
        cells = [spec.cell(key) for key in cell_keys]
    else:
        cells = list(spec.cells)
    # One multirun sweeps experiments only: the cells must share their extra overrides.
    cell_overrides = {cell.overrides for cell in cells}
    if len(cell_overrides) > 1:
        raise ConfigError(
            f"--cells must share their overrides to run in one sweep, got {sorted(cell_overrides)}"
        )
    experiments = ",".join(dict.fromkeys(cell.experiment_option for cell in cells))
    sweep = spec.sweeps[0] if spec.sweeps else spec.name
    return [
        sys.executable,
        "-m",
        "repro.train",
        "-m",
        f"experiment={experiments}",
        f"sweep_name={sweep}",
        *(next(iter(cell_overrides)) if cell_overrides else ()),
        *overrides,
    ]


def run_paper(paper: str, argv: Sequence[str] | None = None) -> int:
    """CLI of a paper script: train (unless --skip-train), then write the paper's figures."""
    spec = get_paper(paper)
    parser = argparse.ArgumentParser(
        prog=f"python scripts/{paper}.py",
        description=f"Run the {paper} sweep with `python -m repro.train -m`, then "
        f"`python -m repro.figures {paper}`. Unknown arguments are Hydra overrides "
        "(e.g. trainer.epochs=2 replicas.seeds=2 for a smoke run).",
    )
    parser.add_argument("--cells", help="comma-separated cell keys to run (default: all)")
    parser.add_argument("--skip-train", action="store_true", help="only regenerate figures")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--out-dir",
        help="figures output dir (default paper_figures/<paper>; with overrides that change "
        "results: $REPRO_OUTPUT_ROOT/figures/<paper>)",
    )
    args, overrides = parser.parse_known_args(argv)
    try:
        cells = [key for key in (args.cells or "").split(",") if key]
        command = train_command(spec, cells, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    figures_argv = [paper, "--out-dir", args.out_dir] if args.out_dir else [paper]
    changed = result_overrides(overrides)
    if changed:
        # Runs of another config than the paper's (a smoke run): their figures go to a scratch
        # dir unless --out-dir says otherwise, never over the committed paper_figures/<paper>.
        if not args.out_dir:
            root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
            figures_argv += ["--out-dir", str(root / "figures" / paper)]
        # The figures match runs to cells by config: tell them the overrides the sweep ran with.
        figures_argv += ["--overrides", *changed]
    return train_then_figures(command, figures_argv, args.skip_train, args.dry_run)


def train_then_figures(
    command: Sequence[str], figures_argv: Sequence[str], skip_train: bool, dry_run: bool
) -> int:
    """Print both commands; run the sweep (unless `skip_train`), then the figures, which use
    the jobs that finished even when some did not. Exit status: the sweep's, else the
    figures'."""
    return steps_then_figures([command], figures_argv, skip_train, dry_run)


def steps_then_figures(
    commands: Sequence[Sequence[str]], figures_argv: Sequence[str], skip_train: bool, dry_run: bool
) -> int:
    """`train_then_figures` for several training commands, run in order (each one even when
    an earlier one failed: the figures mark what is missing). Exit status: the first failing
    command's, else the figures'."""
    for command in commands:
        print("$ " + shlex.join(command))
    print("$ " + shlex.join(["python", "-m", "repro.figures", *figures_argv]))
    if dry_run:
        return 0
    status = 0
    for command in [] if skip_train else commands:
        code = subprocess.run(list(command), check=False).returncode
        if code != 0:
            print(f"{shlex.join(command[:4])}... exited with {code}; figures use what finished")
            status = status or code
    figures_status = figures_main(list(figures_argv))
    return status or figures_status


def figures_arguments(
    paper: str, overrides: Sequence[str], out_dir: str | None, committed_dir: str | None = None
) -> list[str]:
    """`python -m repro.figures` arguments after the sweep of a paper script: the committed
    ``committed_dir`` (default paper_figures/<paper>) for the paper's own config; for runs
    with result-changing overrides (a smoke run), a scratch dir
    $REPRO_OUTPUT_ROOT/figures/<paper> unless ``out_dir`` says otherwise, and the overrides,
    so those runs are matched to their own cells."""
    changed = result_overrides(overrides)
    if out_dir is None:
        root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
        committed = committed_dir or f"paper_figures/{paper}"
        out_dir = str(root / "figures" / paper) if changed else committed
    figures = [paper, "--out-dir", out_dir]
    if changed:
        figures += ["--overrides", *changed]
    return figures


def script_parser(prog: str, description: str, default_out_dir: str) -> argparse.ArgumentParser:
    """The arguments every paper script shares: --skip-train, --dry-run, --out-dir (unknown
    arguments are Hydra overrides of every job)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description + " Unknown arguments are Hydra overrides of every job."
    )
    parser.add_argument("--skip-train", action="store_true", help="only regenerate figures")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--out-dir",
        help=f"figures dir (default {default_out_dir}; with overrides that change results: "
        "$REPRO_OUTPUT_ROOT/figures/<paper>)",
    )
    return parser
