"""Experiment loggers: none (default, nothing touches the network) and Weights & Biases.

`metrics.jsonl` is always written by the engine and stays the source for figures; a logger
only mirrors it. W&B: mode online/offline/disabled from `logger.mode`; the full resolved
config; `group` = experiment or sweep name; a run id derived from the output directory, so a
requeued or restarted job resumes the same W&B run (`resume="allow"`); `finish()` is always
called (the engine calls it in a `finally`), so multirun jobs never log into each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

LOGGER_NAMES = ("none", "wandb")
WANDB_MODES = ("online", "offline", "disabled")


class Logger(Protocol):
    def log_epoch(self, record: Mapping[str, Any], step: int) -> None: ...

    def log_summary(self, summary: Mapping[str, Any]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class NullLogger:
    """Logs nothing."""

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        del record, step

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        del summary

    def finish(self, exit_code: int = 0) -> None:
        del exit_code


def run_id_for(workdir: Path) -> str:
    """Deterministic W&B run id (16 chars [0-9a-f]) from the absolute output directory."""
    return hashlib.sha1(str(Path(workdir).absolute()).encode()).hexdigest()[:16]


def flatten_record(record: Mapping[str, Any], max_replicas: int) -> dict[str, float]:
    """Per-replica lists -> `<key>/mean` and (R <= max_replicas) `<key>/r<i>`; scalars as is."""
    flat: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, list | tuple):
            numbers = [float(v) for v in value if v is not None]
            if numbers:
                flat[f"{key}/mean"] = sum(numbers) / len(numbers)
            if len(value) <= max_replicas:
                for i, v in enumerate(value):
                    if v is not None:
                        flat[f"{key}/r{i}"] = float(v)
        elif isinstance(value, bool | int | float):
            flat[key] = float(value)
    return flat


class WandbLogger:
    """Mirror of the run in Weights & Biases."""

    def __init__(
        self,
        spec: Mapping[str, Any],
        config: Mapping[str, Any],
        workdir: Path,
        run_name: str,
    ) -> None:
        import wandb

        mode = spec.get("mode", "offline")
        if mode not in WANDB_MODES:
            raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {mode!r}")
        self.max_replicas = int(spec.get("max_replicas_logged", 64))
        directory = Path(spec.get("dir") or workdir)
        directory.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(
            project=spec.get("project") or "repro",
            entity=spec.get("entity"),
            group=spec.get("group"),
            job_type=spec.get("job_type"),
            tags=list(spec.get("tags") or ()),
            name=run_name,
            id=spec.get("id") or run_id_for(workdir),
            resume="allow",
            mode=mode,
            dir=str(directory),
            config=dict(config),
            reinit="finish_previous",
        )

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        self.run.log(flatten_record(record, self.max_replicas), step=step)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        flat: dict[str, Any] = {"objective": summary.get("objective")}
        for metric, stats in (summary.get("aggregate") or {}).items():
            for stat, value in stats.items():
                flat[f"final/{metric}/{stat}"] = value
        self.run.summary.update({k: v for k, v in flat.items() if v is not None})

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def build_logger(
    spec: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    workdir: Path,
    run_name: str,
) -> Logger:
    """The logger named by `spec["name"]` (`logger=none` or `logger=wandb`)."""
    name = (spec or {}).get("name", "none")
    if name == "none":
        return NullLogger()
    if name == "wandb":
        return WandbLogger(spec or {}, config, workdir, run_name)
    raise ValueError(f"logger.name must be one of {LOGGER_NAMES}, got {name!r}")
