"""Fetch runs from Weights & Biases into local job dirs, so the offline path reads them.

Optional and needs the network (``wandb.Api()``); the tests use a fake API object. For each
W&B run a dir ``<dest>/<run id>/`` gets the files the engine saved with the run
(``summary.json``, ``metrics.jsonl``, ``.hydra/overrides.yaml``, ``config_resolved.yaml``).
Where the run has no ``summary.json`` file but its W&B summary holds ``replicas`` (the engine
logged the summary dict), summary.json is rebuilt from it; where ``metrics.jsonl`` is missing it
is rebuilt from the run's history. A run with neither stays an unfinished job dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_FILES = ("summary.json", "metrics.jsonl", ".hydra/overrides.yaml", "config_resolved.yaml")


def _download(run: Any, name: str, dest: Path) -> bool:
    try:
        run.file(name).download(root=str(dest), replace=True)
    except Exception:
        return False
    return (dest / name).is_file()


def materialize_run(run: Any, dest: Path) -> Path:
    """Write one W&B run as a job dir under ``dest``; returns the job dir."""
    job_dir = dest / str(run.id)
    (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    present = {name for name in RUN_FILES if _download(run, name, job_dir)}
    if "summary.json" not in present:
        summary = dict(run.summary or {})
        if run.state == "finished" and "replicas" in summary:
            summary.setdefault("status", "finished")
            summary.setdefault("experiment", (run.config or {}).get("name"))
            (job_dir / "summary.json").write_text(json.dumps(summary, default=str))
    if "metrics.jsonl" not in present:
        lines = [
            json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, default=str)
            for row in run.scan_history()
            if row.get("epoch") is not None
        ]
        if lines:
            (job_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if ".hydra/overrides.yaml" not in present:
        overrides = (run.config or {}).get("overrides") or []
        text = "".join(f"- {json.dumps(str(o))}\n" for o in overrides) or "[]\n"
        (job_dir / ".hydra" / "overrides.yaml").write_text(text)
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
