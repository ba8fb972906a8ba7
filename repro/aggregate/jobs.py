"""Job dirs: find them under some paths, read their overrides, summary and metrics.

A *job dir* is any directory holding ``summary.json`` or ``.hydra/overrides.yaml`` (the engine
writes the first only when the run finished; Hydra writes the second at job start). The given
paths are searched recursively; the search does not descend into a job dir (checkpoints live
there). Jobs without a finished ``summary.json`` are *unfinished*.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILES = ("config_resolved.yaml", str(Path(".hydra") / "config.yaml"))
# Directories that can never hold a job dir: skipping them keeps the search cheap on big trees.
_SKIP_DIRS = frozenset({".hydra", "checkpoints", "wandb", "__pycache__", ".git"})


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One Hydra job dir: its overrides and, when it finished, its summary."""

    path: Path
    overrides: tuple[str, ...]
    summary: dict[str, Any] | None
    name: str | None
    last_epoch: int | None = None

    @property
    def finished(self) -> bool:
        return self.summary is not None and self.summary.get("status") == "finished"

    @property
    def status(self) -> str:
        if self.summary is None:
            return "no summary.json"
        return str(self.summary.get("status", "missing status"))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict((self.summary or {}).get("metadata") or {})


@dataclasses.dataclass(frozen=True)
class RunCollection:
    """Finished and unfinished jobs found under some paths."""

    finished: list[JobRecord]
    unfinished: list[JobRecord]

    def frame(self) -> pd.DataFrame:
        from repro.aggregate.table import replicas_frame  # the table builds on this module

        return replicas_frame(self.finished)


def _natural_key(path: Path) -> list[Any]:
    # Multirun job dirs are 0, 1, ..., 10: sort 10 after 9, not after 1.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def is_job_dir(path: Path) -> bool:
    """A job dir holds summary.json (finished) or .hydra/overrides.yaml (started by Hydra)."""
    return (path / SUMMARY_FILE).is_file() or (path / OVERRIDES_FILE).is_file()


def find_job_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """All job dirs at or below ``paths`` (sorted naturally, without duplicates).

    Raises:
        FileNotFoundError: a path does not exist.
    """
    found: dict[Path, None] = {}
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            raise FileNotFoundError(f"run path does not exist: {root}")
        if is_job_dir(root):
            found[root] = None
            continue
        for dirpath, dirnames, _ in os.walk(root):
            here = Path(dirpath)
            if here != root and is_job_dir(here):
                found[here] = None
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
    return sorted(found, key=_natural_key)


def parse_override_value(text: str) -> Any:
    """Hydra override value -> int / float / bool / None, else the string itself.

    Lists, dicts and sweep expressions stay strings: they are labels in a table, not numbers.
    """
    stripped = text.strip()
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if stripped == "null":  # Hydra's null; "none" is an ordinary option name (noise=none)
        return None
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    return stripped


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Override strings -> {key: value}.

    ``["optimizer=sgd", "+x.y=1", "~z"]`` -> ``{"optimizer": "sgd", "x.y": 1, "z": "<deleted>"}``.
    """
    parsed: dict[str, Any] = {}
    for override in overrides:
        key, sep, value = str(override).partition("=")
        deleted = key.startswith("~")
        key = key.lstrip("+~").strip()
        if not key:
            continue
        parsed[key] = "<deleted>" if deleted else (parse_override_value(value) if sep else True)
    return parsed


def _read_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def _config_name(job_dir: Path) -> str | None:
    for rel in CONFIG_FILES:
        path = job_dir / rel
        if path.is_file():
            try:
                config = _read_yaml(path)
            except yaml.YAMLError:
                continue
            if isinstance(config, dict) and config.get("name") is not None:
                return str(config["name"])
    return None


def read_metrics(job_dir: Path) -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl``; a torn last line (run still writing) is skipped."""
    path = Path(job_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: invalid JSON line ({error})") from error
    return records


def load_job(job_dir: str | Path) -> JobRecord:
    """Read one job dir (overrides, summary, experiment name, progress of unfinished jobs)."""
    job_dir = Path(job_dir)
    summary: dict[str, Any] | None = None
    summary_path = job_dir / SUMMARY_FILE
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
    overrides: list[str] = []
    if (job_dir / OVERRIDES_FILE).is_file():
        overrides = [str(o) for o in (_read_yaml(job_dir / OVERRIDES_FILE) or [])]
    elif summary is not None:
        overrides = [str(o) for o in summary.get("overrides") or []]
    name = None
    if summary is not None:
        name = summary.get("experiment", summary.get("name"))
    if name is None:
        name = _config_name(job_dir)
    last_epoch = None
    if summary is None or summary.get("status") != "finished":
        epochs = [r.get("epoch") for r in read_metrics(job_dir) if r.get("epoch") is not None]
        last_epoch = max(epochs) if epochs else None
    return JobRecord(
        path=job_dir,
        overrides=tuple(overrides),
        summary=summary,
        name=None if name is None else str(name),
        last_epoch=last_epoch,
    )


def load_runs(paths: Iterable[str | Path]) -> RunCollection:
    """Find and read every job dir under ``paths``; split finished from unfinished."""
    jobs = [load_job(path) for path in find_job_dirs(paths)]
    return RunCollection(
        finished=[job for job in jobs if job.finished],
        unfinished=[job for job in jobs if not job.finished],
    )
