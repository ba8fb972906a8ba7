"""NovoGrad (Ginsburg et al. 2019) at CPU scale: memory, the sweeps, then the figures.

    python scripts/novograd2019.py                 # memory, MLP study, warmup arm, figures
    python scripts/novograd2019.py --cnn           # ... and the CNN study (about 10x slower)
    python scripts/novograd2019.py --skip-train    # figures only (from the runs that exist)
    python scripts/novograd2019.py --dry-run       # print the commands
    python scripts/novograd2019.py trainer.epochs=1 data.n_train=4096   # smoke run

Runs, in order (PREREGISTRATION: paper_figures/novograd2019/PREREGISTRATION.md):

1. `python -m repro.figures.novograd2019_memory --out <sweep dir>/memory.json` (claim N1;
   skipped when the file exists for the same model / optimizer overrides);
2. `python -m repro.train -m +sweep=novograd2019 [overrides]` (24 jobs: 6 optimizers x 4
   batch sizes), `... +sweep=novograd2019_warmup`, and with --cnn `... +sweep=novograd2019_cnn`
   (outputs under ${REPRO_OUTPUT_ROOT:-outputs}/multirun/novograd2019/; finished jobs are
   skipped on a rerun, an interrupted one resumes from its checkpoint);
3. `python -m repro.figures novograd2019` -> paper_figures/novograd2019/ (runs with
   result-changing overrides: $REPRO_OUTPUT_ROOT/figures/novograd2019/, matched to their cells
   with `--overrides`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Sequence

from repro.figures.novograd2019 import NAME
from repro.figures.novograd2019_memory import default_path, problem_overrides
from repro.figures.sweep import figures_arguments, script_parser, steps_then_figures

SWEEPS = ("novograd2019", "novograd2019_warmup")
CNN_SWEEP = "novograd2019_cnn"


def train_commands(overrides: Sequence[str], cnn: bool) -> list[list[str]]:
    sweeps = [*SWEEPS, CNN_SWEEP] if cnn else list(SWEEPS)
    return [
        [sys.executable, "-m", "repro.train", "-m", f"+sweep={sweep}", *overrides]
        for sweep in sweeps
    ]


def measure_memory(overrides: Sequence[str], dry_run: bool) -> None:
    """Step 1: memory.json beside the runs, unless it exists for the same problem."""
    path = default_path()
    problem = problem_overrides(overrides)
    command = [sys.executable, "-m", "repro.figures.novograd2019_memory", "--out", str(path)]
    command += problem
    done = path.is_file() and json.loads(path.read_text()).get("overrides") == problem
    print("$ " + shlex.join(command) + ("   # done: skipped" if done else ""))
    if not (dry_run or done):
        status = subprocess.run(command, check=False).returncode
        if status != 0:
            print(f"memory measurement exited with {status}; claim N1 will be not run")


def main(argv: Sequence[str] | None = None) -> int:
    parser = script_parser(
        "python scripts/novograd2019.py",
        "Measure optimizer memory, run the NovoGrad sweeps, then write the figures.",
        f"paper_figures/{NAME}",
    )
    parser.add_argument("--cnn", action="store_true", help="also run the CNN study")
    args, overrides = parser.parse_known_args(argv)
    if not args.skip_train:
        measure_memory(overrides, args.dry_run)
    figures = figures_arguments(NAME, overrides, args.out_dir)
    commands = train_commands(overrides, args.cnn)
    return steps_then_figures(commands, figures, args.skip_train, args.dry_run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
