"""Jasper (Li et al. 2019) at CPU scale: the corpus (if missing), the sweep, then the figures.

    python scripts/jasper2019.py                        # corpus, 5 cells, figures
    python scripts/jasper2019.py --cells deep_none,deep_block
    python scripts/jasper2019.py --skip-train           # figures only
    python scripts/jasper2019.py data=speech_corpus trainer.epochs=1 data.n_train=16 \
        data.n_validation=8 data.n_test=8 replicas.seeds=2      # smoke run (about 9 minutes)

(A multirun checks the overrides that are not swept against the default config, before the
experiments' own data: name `data=speech_corpus` to override keys only it has.)

1. `python -m repro.data.speech build --out $REPRO_SPEECH_DIR/corpus_1h --hours 1` (default
   outputs/speech/corpus_1h; skipped when its corpus.json exists; about 2 minutes);
2. `python -m repro.train -m experiment=jasper2019/<cell>,... sweep_name=jasper2019` (outputs
   under ${REPRO_OUTPUT_ROOT:-outputs}/multirun/jasper2019/; a rerun skips finished cells and
   resumes an interrupted one);
3. `python -m repro.figures jasper2019` -> paper_figures/jasper2019/.

Every choice (cells, grids, epochs, the verdict rules' constants) is fixed in
paper_figures/jasper2019/PREREGISTRATION.md and repro/figures/jasper2019.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from repro.figures.sweep import run_paper
from repro.run_metadata import repo_root

HOURS = "1"


def corpus_dir() -> Path:
    """Where conf/paths/default.yaml's `speech_dir` puts the corpus data=speech_corpus reads."""
    root = os.environ.get("REPRO_SPEECH_DIR") or str(repo_root() / "outputs" / "speech")
    return Path(root) / "corpus_1h"


def build_corpus(dry_run: bool) -> int:
    out = corpus_dir()
    command = [sys.executable, "-m", "repro.data.speech", "build", "--out", str(out)]
    command += ["--hours", HOURS]
    if (out / "corpus.json").is_file():
        print(f"corpus: {out} (exists)")
        return 0
    print("$ " + shlex.join(command))
    return 0 if dry_run else subprocess.run(command, check=False).returncode


def main(argv: list[str]) -> int:
    if "--skip-train" not in argv:
        status = build_corpus("--dry-run" in argv)
        if status:
            print(f"the corpus build exited with {status}", file=sys.stderr)
            return status
    return run_paper("jasper2019", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
