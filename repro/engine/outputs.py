"""Run outputs: `metrics.jsonl`, `summary.json`, `config_resolved.yaml` (schema: OUTPUTS.md).

JSON has no NaN/inf: non-finite floats are written as null (a diverged replica's training
loss). `summary.json` is written atomically (temp file + rename), and only for a finished run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config_resolved.yaml"
CHECKPOINT_DIR = "checkpoints"


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/JAX scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, str | bytes):
        array = np.asarray(value)
        return jsonable(array.tolist()) if array.ndim else jsonable(array.item())
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON to `path` so that readers see either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(jsonable(payload), f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricsLog:
    """Append-only `metrics.jsonl` with truncation to a restored epoch on resume."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """All complete records (a torn last line from a killed run is ignored)."""
        if not self.path.exists():
            return []
        records = []
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def truncate_after_epoch(self, epoch: int) -> list[dict[str, Any]]:
        """Keep records with `epoch <= epoch` (those a restored checkpoint has seen)."""
        kept = [r for r in self.read() if int(r.get("epoch", 0)) <= epoch]
        self._rewrite(kept)
        return kept

    def _rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as f:
            for record in records:
                f.write(json.dumps(jsonable(record)) + "\n")
        os.replace(tmp, self.path)

    def append(self, record: Mapping[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable(record)) + "\n")
            f.flush()


def aggregate_stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """mean/std/min/max/median over finite values, plus how many were finite."""
    finite = np.asarray(
        [v for v in values if v is not None and math.isfinite(float(v))], np.float64
    )
    if finite.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "median": None, "count": 0}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "min": float(finite.min()),
        "max": float(finite.max()),
        "median": float(np.median(finite)),
        "count": int(finite.size),
    }


def read_summary(workdir: Path) -> dict[str, Any] | None:
    path = Path(workdir) / SUMMARY_FILE
    if not path.exists():
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
