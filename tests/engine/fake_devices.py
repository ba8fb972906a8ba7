"""Run a Python script in a subprocess with N fake XLA CPU devices (the device count is fixed
before JAX starts, so tests of meshes cannot run in pytest's own process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_on_fake_devices(script: str, devices: int, cache_dir: Path, timeout: float = 300) -> dict:
    """The JSON the script prints on its line starting with "RESULT " (run from the repo root);
    an assertion error with the script's stderr when it fails."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        REPRO_JAX_CACHE_DIR=str(cache_dir),
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))
