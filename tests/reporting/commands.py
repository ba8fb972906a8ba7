"""Run the project's command lines as a user would: ``python -m <module> ...`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_module(
    module: str, *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd`` with a minimal environment plus ``env``.

    Only PATH and PYTHONPATH (the repo) are inherited, so a test never depends on the caller's
    REPRO_OUTPUT_ROOT, WANDB_* or MPLBACKEND; W&B stays off unless ``env`` says otherwise.
    """
    base = {
        "PYTHONPATH": str(REPO),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(cwd)),
        "MPLBACKEND": "Agg",
        "WANDB_MODE": "disabled",
    }
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**base, **(env or {})},
    )
