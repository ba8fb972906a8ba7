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

import sys
from collections.abc import Sequence

from repro.figures.neelakantan2015_budget import NAME, SWEEP
from repro.figures.sweep import figures_arguments, script_parser, train_then_figures

OUT_DIR = "paper_figures/neelakantan2015/budget"


def commands(overrides: Sequence[str], out_dir: str | None) -> tuple[list[str], list[str]]:
    """(training argv, figures argv without the leading `python -m repro.figures`).

    Runs with result-changing overrides (a smoke run) get their figures in a scratch dir,
    $REPRO_OUTPUT_ROOT/figures/<paper>, unless ``out_dir`` is given: never over the committed
    outputs.
    """
    train = [sys.executable, "-m", "repro.train", "-m", f"+sweep={SWEEP}", *overrides]
    return train, figures_arguments(NAME, overrides, out_dir, OUT_DIR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "python scripts/neelakantan2015_budget.py",
        "Run the Neelakantan training-budget sweep, then write its figures.",
        OUT_DIR,
    )
    args, overrides = parser.parse_known_args(argv)
    train, figures = commands(overrides, args.out_dir)
    return train_then_figures(train, figures, args.skip_train, args.dry_run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
