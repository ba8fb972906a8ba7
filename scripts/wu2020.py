"""Wu et al. 2020 (noise classes that generalize as SGD): CPU-scale sweep, then figures.

    python scripts/wu2020.py                            # all 8 cells, 5 seeds each
    python scripts/wu2020.py --cells gd,sgd,fisher      # some cells
    python scripts/wu2020.py --skip-train               # figures only
    python scripts/wu2020.py trainer.epochs=1 replicas.seeds=2   # smoke run

Runs `python -m repro.train -m experiment=wu2020/<cell>,... sweep_name=wu2020` (outputs under
${REPRO_OUTPUT_ROOT:-outputs}/multirun/wu2020/), then `python -m repro.figures wu2020` ->
paper_figures/wu2020/. The cells, the matching rules and the claim rules live in
repro/figures/wu2020.py; the choices fixed before any run in
paper_figures/wu2020/PREREGISTRATION.md. The faithful 10,000-iteration protocol (for an
accelerator): python -m repro.train -m 'experiment=glob(wu2020/full/*)'.
"""

import sys

from repro.figures.sweep import run_paper

if __name__ == "__main__":
    sys.exit(run_paper("wu2020", sys.argv[1:]))
