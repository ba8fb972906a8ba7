"""Mori, Ziyin, Liu & Ueda 2022 (arXiv 2105.09557): SGD-dynamics simulations and training
runs with the noise diagnostics, then figures.

    python scripts/mori2022.py                       # every cell (CPU scale, see README)
    python scripts/mori2022.py --cells phi_lr0.1     # the phi job (it holds all three lrs)
    python scripts/mori2022.py --skip-train          # figures only
    python scripts/mori2022.py --cells phi_lr0.1 dynamics.num_samples=500     # smoke runs:
    python scripts/mori2022.py --cells noise_vs_loss,spectrum trainer.epochs=2  # one kind each

Runs `python -m repro.train -m experiment=mori2022/phi,mori2022/escape,mori2022/noise_vs_loss,
mori2022/spectrum sweep_name=mori2022` (outputs under
${REPRO_OUTPUT_ROOT:-outputs}/multirun/mori2022/), then `python -m repro.figures mori2022` ->
paper_figures/mori2022/. Cells, claims and rules: repro/figures/mori2022.py; the choices the
paper leaves open: paper_figures/mori2022/PREREGISTRATION.md.
"""

import sys

from repro.figures.sweep import run_paper

if __name__ == "__main__":
    sys.exit(run_paper("mori2022", sys.argv[1:]))
