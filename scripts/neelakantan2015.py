"""Neelakantan et al. 2015 (gradient noise for very deep networks): sweep, then figures.

    python scripts/neelakantan2015.py                       # all cells (40 replicas each)
    python scripts/neelakantan2015.py --cells zero_clip10,zero_clip10_noise
    python scripts/neelakantan2015.py --skip-train          # figures only
    python scripts/neelakantan2015.py trainer.epochs=1 replicas.seeds=2   # smoke run

Runs `python -m repro.train -m experiment=neelakantan2015/<cell>,... sweep_name=neelakantan2015`
(outputs under ${REPRO_OUTPUT_ROOT:-outputs}/multirun/neelakantan2015/), then
`python -m repro.figures neelakantan2015` -> paper_figures/neelakantan2015/ (a smoke run's
figures: $REPRO_OUTPUT_ROOT/figures/neelakantan2015/). The cells, the paper's numbers and the
claim rules live in repro/figures/neelakantan2015.py.
"""

import sys

from repro.figures.sweep import run_paper

if __name__ == "__main__":
    sys.exit(run_paper("neelakantan2015", sys.argv[1:]))
