"""Atomic file writes: a reader (or a crash) never sees a half-written output file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX file systems, so ``path`` holds either the old or the new
    content; the temporary file is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def json_safe(value: Any) -> Any:
    """NaN / inf -> None, numpy scalars -> Python, floats to 6 significant digits."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # 6 significant digits: percent values to 1e-4 points, no float32 noise in the file.
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


def write_json(path: Path, payload: Any) -> Path:
    return write_text(path, json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")


def read_beside_runs(run_paths: Sequence[Path], name: str) -> tuple[Path, Any] | None:
    """(path, parsed JSON) of the first file ``name`` directly under one of ``run_paths``: a
    measurement a paper script writes beside its sweep (covariance.json, memory.json)."""
    for path in run_paths:
        candidate = Path(path) / name
        if candidate.is_file():
            return candidate, json.loads(candidate.read_text())
    return None
