"""Demo of the whole chain: digits MLP with vs without gradient noise, then its figures.

    python scripts/demo.py                  # train (about a minute on CPU), then figures
    python scripts/demo.py --skip-train     # figures only
    python scripts/demo.py trainer.epochs=2 # any Hydra override

Runs `python -m repro.train -m experiment=demo sweep_name=demo`, then
`python -m repro.figures demo` -> paper_figures/demo/ (tables.md, curves.png/pdf,
claims.json, replicas.csv, README.md). With overrides that change results (a smoke run) the
figures go to $REPRO_OUTPUT_ROOT/figures/demo/ instead, matched to the runs by those overrides.
The cells and the sanity claims live in repro/figures/demo.py.
"""

import sys

from repro.figures.sweep import run_paper

if __name__ == "__main__":
    sys.exit(run_paper("demo", sys.argv[1:]))
