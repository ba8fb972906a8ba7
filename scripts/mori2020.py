"""Mori & Ueda 2020 (noise enhancement): claim 1's measurement, the sweep, then the figures.

    python scripts/mori2020.py                  # covariance traces, 7 jobs, figures
    python scripts/mori2020.py --skip-train     # figures only (from the runs that exist)
    python scripts/mori2020.py --dry-run        # print the three commands
    python scripts/mori2020.py trainer.epochs=2 replicas.seeds=2 data.n_train=2048 --draws 20

Runs, in order (PREREGISTRATION: paper_figures/mori2020/PREREGISTRATION.md):

1. `python -m repro.figures.mori2020_covariance --out <sweep dir>/covariance.json` (claim 1,
   on the protocol's model and data; skipped when the file exists, or with --skip-train);
2. `python -m repro.train -m +sweep=mori2020 [overrides]` (outputs under
   ${REPRO_OUTPUT_ROOT:-outputs}/multirun/mori2020/; finished jobs are skipped on a rerun);
3. `python -m repro.figures mori2020` -> paper_figures/mori2020/ (runs with result-changing
   overrides, e.g. a smoke run: $REPRO_OUTPUT_ROOT/figures/mori2020/, matched to their cells
   with `--overrides`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.figures.mori2020 import NAME
from repro.figures.mori2020_covariance import (
    FILE_NAME,
    NUM_DRAWS,
    measured_with,
    problem_overrides,
)
from repro.figures.sweep import figures_arguments, script_parser, train_then_figures

OUT_DIR = f"paper_figures/{NAME}"


def commands(
    overrides: Sequence[str], out_dir: str | None, draws: int
) -> tuple[list[str], list[str], list[str]]:
    """(covariance argv, training argv, figures argv without `python -m repro.figures`)."""
    root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
    measurement = root / "multirun" / NAME / FILE_NAME
    covariance = [
        sys.executable, "-m", "repro.figures.mori2020_covariance", "--out", str(measurement),
        "--draws", str(draws), *problem_overrides(overrides),
    ]  # fmt: skip
    train = [sys.executable, "-m", "repro.train", "-m", f"+sweep={NAME}", *overrides]
    return covariance, train, figures_arguments(NAME, overrides, out_dir, OUT_DIR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "python scripts/mori2020.py",
        "Measure claim 1, run the Mori & Ueda sweep, then write its figures.",
        OUT_DIR,
    )
    parser.add_argument("--draws", type=int, default=NUM_DRAWS, help="draws per trace")
    args, overrides = parser.parse_known_args(argv)
    covariance, train, figures = commands(overrides, args.out_dir, args.draws)
    path = Path(covariance[covariance.index("--out") + 1])
    # A measurement of another problem (a smoke run's) is redone, never reused.
    measured = path.is_file() and measured_with(json.loads(path.read_text()), overrides)
    print("$ " + shlex.join(covariance) + ("   # done: skipped" if measured else ""))
    if not (args.dry_run or args.skip_train or measured):
        status = subprocess.run(covariance, check=False).returncode
        if status != 0:
            print(f"covariance measurement exited with {status}; claim 1 will be not run")
    return train_then_figures(train, figures, args.skip_train, args.dry_run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
