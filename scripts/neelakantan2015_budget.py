"""Neelakantan et al. 2015, training-budget study: sweep, then figures (PREREGISTRATION.md).

    python scripts/neelakantan2015_budget.py                 # 16 jobs x 40 replicas, then figures
    python scripts/neelakantan2015_budget.py --skip-train    # figures only
    python scripts/neelakantan2015_budget.py --dry-run       # print the two commands
    python scripts/neelakantan2015_budget.py trainer.epochs=1 replicas.seeds=2   # smoke run

Runs `python -m repro.train -m +sweep=neelakantan2015_budget [overrides]` (the Table 1 cells of
claims 1-3 x conf/budget/neelakantan2015_b{128,64}.yaml; outputs under
${REPRO_OUTPUT_ROOT:-outputs}/multirun/neelakantan2015_budget/), then
`python -m repro.figures neelakantan2015_budget --out-dir paper_figures/neelakantan2015/budget`
with the result-changing overrides, so a smoke run is matched to its own cells. Re-running the
command skips finished jobs and resumes an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from repro.figures.neelakantan2015_budget import NAME, SWEEP
from repro.figures.sweep import train_then_figures
from repro.run_identity import result_overrides

OUT_DIR = "paper_figures/neelakantan2015/budget"


def commands(overrides: Sequence[str], out_dir: str | None) -> tuple[list[str], list[str]]:
    """(training argv, figures argv without the leading `python -m repro.figures`).

    Runs with result-changing overrides (a smoke run) get their figures in a scratch dir,
    $REPRO_OUTPUT_ROOT/figures/<paper>, unless ``out_dir`` is given: never over the committed
    outputs.
    """
    train = [sys.executable, "-m", "repro.train", "-m", f"+sweep={SWEEP}", *overrides]
    changed = result_overrides(overrides)
    if out_dir is None:
        root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
        out_dir = str(root / "figures" / NAME) if changed else OUT_DIR
    figures = [NAME, "--out-dir", out_dir]
    if changed:
        figures += ["--overrides", *changed]
    return train, figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/neelakantan2015_budget.py",
        description="Run the Neelakantan training-budget sweep, then write its figures. "
        "Unknown arguments are Hydra overrides of every job.",
    )
    parser.add_argument("--skip-train", action="store_true", help="only regenerate figures")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument(
        "--out-dir",
        help=f"figures dir (default {OUT_DIR}; with overrides that change results: "
        f"$REPRO_OUTPUT_ROOT/figures/{NAME})",
    )
    args, overrides = parser.parse_known_args(argv)
    train, figures = commands(overrides, args.out_dir)
    return train_then_figures(train, figures, args.skip_train, args.dry_run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
