"""Fetch runs from Weights & Biases into local job dirs, so the offline path reads them.

Optional and needs the network (``wandb.Api()``); the tests use a fake API object. For each
W&B run a dir ``<dest>/<run id>/`` is written in the engine's run-dir layout:

1. files saved with the run (``summary.json``, ``metrics.jsonl``, ``.hydra/overrides.yaml``,
   ``config_resolved.yaml``) are downloaded as they are;
2. otherwise they are rebuilt from what ``repro.loggers.WandbLogger`` logs: the resolved
   config (``name``, ``seed``, ``replicas``, ``trainer.epochs``) and one history row per
   evaluated epoch with per-replica values ``<metric>/r<i>``. Replica ``i`` gets the engine's
   layout (grid-major): grid value ``grid.values[i // seeds]``, seed ``seed + i % seeds``.

summary.json is only written for a run whose W&B state is "finished"; any other run stays an
unfinished job dir. Runs logged with more replicas than ``max_replicas_logged`` have no
per-replica history and cannot be rebuilt (they stay unfinished).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

RUN_FILES = ("summary.json", "metrics.jsonl", ".hydra/overrides.yaml", "config_resolved.yaml")
_REPLICA_KEY = re.compile(r"^(?P<metric>.+)/r(?P<index>\d+)$")


def _download(run: Any, name: str, dest: Path) -> bool:
    try:
        run.file(name).download(root=str(dest), replace=True)
    except Exception:  # wandb raises assorted errors for a missing file; absent is fine
        return False
    return (dest / name).is_file()


def _get(config: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    # W&B may wrap config values as {"value": ...}
    if isinstance(node, dict) and set(node) == {"value"}:
        node = node["value"]
    return node


def history_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """W&B history rows -> metrics.jsonl records with per-replica lists (``<m>/r<i>`` keys)."""
    records = []
    for row in rows:
        if row.get("epoch") is None:
            continue
        lists: dict[str, dict[int, Any]] = {}
        record: dict[str, Any] = {"epoch": int(row["epoch"])}
        for key, value in row.items():
            match = _REPLICA_KEY.match(key)
            if match:
                lists.setdefault(match["metric"], {})[int(match["index"])] = value
            elif not key.startswith("_") and "/" not in key and key != "epoch":
                record[key] = value
        for metric, by_index in lists.items():
            record[metric] = [by_index.get(i) for i in range(max(by_index) + 1)]
        if "diverged" in record and isinstance(record["diverged"], list):
            record["diverged"] = [bool(v) for v in record["diverged"]]
        records.append(record)
    return records


def summary_from_history(
    config: dict[str, Any], records: list[dict[str, Any]], run: Any
) -> dict[str, Any] | None:
    """summary.json rebuilt from the config and per-replica history; None if impossible."""
    per_replica = [k for k, v in (records[-1] if records else {}).items() if isinstance(v, list)]
    if not per_replica:
        return None
    last = records[-1]
    num_replicas = max(len(last[k]) for k in per_replica)
    seed = int(_get(config, "seed", 0) or 0)
    seeds = int(_get(config, "replicas.seeds", 1) or 1)
    grid_key = _get(config, "replicas.grid.key")
    grid_values = list(_get(config, "replicas.grid.values", []) or [])
    objective = _get(config, "objective.metric") or "test_accuracy"
    mode = _get(config, "objective.mode") or "max"
    replicas = []
    for i in range(num_replicas):
        series = [
            (r["epoch"], r[objective][i])
            for r in records
            if isinstance(r.get(objective), list)
            and i < len(r[objective])
            and r[objective][i] is not None
        ]
        best = (max if mode == "max" else min)(series, key=lambda item: item[1], default=None)
        diverged = last.get("diverged")
        replicas.append(
            {
                "index": i,
                "seed": seed + i % seeds,
                "hparams": {grid_key: grid_values[i // seeds]}
                if grid_key and i // seeds < len(grid_values)
                else {},
                "final": {k: last[k][i] for k in per_replica if k != "diverged"},
                "best": {objective: best[1] if best else None, "epoch": best[0] if best else None},
                "diverged": bool(diverged[i]) if isinstance(diverged, list) else False,
            }
        )
    summary = dict(run.summary or {})
    return {
        "status": "finished",
        "experiment": _get(config, "name"),
        "objective": summary.get("objective"),
        "num_replicas": num_replicas,
        "grid_key": grid_key,
        "epochs": _get(config, "trainer.epochs"),
        "replicas": replicas,
        "metadata": {
            "source": f"wandb:{getattr(run, 'path', run.id)}",
            "wall_time_s": summary.get("_runtime"),
            "end_time": getattr(run, "heartbeat_at", None),
        },
        "overrides": [],
    }


def materialize_run(run: Any, dest: Path) -> Path:
    """Write one W&B run as a job dir under ``dest``; returns the job dir."""
    job_dir = dest / str(run.id)
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    present = {name for name in RUN_FILES if _download(run, name, job_dir)}
    config = dict(run.config or {})
    records: list[dict[str, Any]] = []
    if "metrics.jsonl" not in present:
        records = history_records(list(run.scan_history()))
        if records:
            text = "".join(json.dumps(r) + "\n" for r in records)
            (job_dir / "metrics.jsonl").write_text(text)
    if "config_resolved.yaml" not in present and config:
        (job_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    if ".hydra/overrides.yaml" not in present:
        (job_dir / ".hydra" / "overrides.yaml").write_text("[]\n")
    if "summary.json" not in present and run.state == "finished":
        summary = summary_from_history(config, records, run)
        if summary is not None:
            (job_dir / "summary.json").write_text(json.dumps(summary, default=str))
    return job_dir


def fetch_wandb_runs(project: str, dest: Path, api: Any = None) -> Path:
    """Materialise every run of ``project`` (ENTITY/PROJECT) under ``dest``; returns ``dest``."""
    if api is None:
        import wandb

        api = wandb.Api()
    dest.mkdir(parents=True, exist_ok=True)
    for run in api.runs(project):
        materialize_run(run, dest)
    return dest
