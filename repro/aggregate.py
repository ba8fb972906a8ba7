"""Aggregate Hydra run / multirun directories into one tidy table.

Usage::

    python -m repro.aggregate outputs/multirun/neelakantan2015 [more dirs...]
        [--out results.csv] [--group-by name optimizer.learning_rate]
        [--metric final.test_accuracy] [--mode max|min] [--max-rows 40]

A *job dir* is any directory holding ``summary.json`` or ``.hydra/overrides.yaml`` (the engine
writes the first only when the run finished; Hydra writes the second at job start). The given
paths are searched recursively; the search does not descend into a job dir (checkpoints live
there). Jobs without a finished ``summary.json`` are reported as *unfinished* and never enter
the table.

The tidy table has one row per (job, replica) with columns

- ``job``, ``name`` (``summary["experiment"]``, i.e. the config key ``name``), ``replica``,
  ``seed``;
- one column per replica grid hyperparameter (``summary["replicas"][i]["hparams"]``, e.g.
  ``optimizer.learning_rate``);
- one column per Hydra override key (``optimizer=noisy_sgd`` -> column ``optimizer``); a key
  that clashes with a fixed column or a grid hyperparameter gets the prefix ``override.``;
- ``diverged``, ``diverged_step``, then ``final.<metric>`` and ``best.<metric>`` for every
  metric the summary holds (the engine writes a non-finite value as null: NaN here);
- ``epochs`` (summary), ``wall_time_s`` and ``git_commit`` (summary metadata).

The grouped view reports, per group, ``n`` (rows with a finite metric), ``mean``, ``std``
(sample standard deviation, ddof = 1, so NaN for n = 1), ``best`` (max, or min for losses and
errors) and ``n_diverged``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
CONFIG_FILES = ("config_resolved.yaml", str(Path(".hydra") / "config.yaml"))
# Directories that can never hold a job dir: skipping them keeps the search cheap on big trees.
_SKIP_DIRS = frozenset({".hydra", "checkpoints", "wandb", "__pycache__", ".git"})

FIXED_COLUMNS = ("job", "name", "replica", "seed")
STATUS_COLUMNS = ("diverged", "diverged_step")
TRAILING_COLUMNS = ("epochs", "wall_time_s", "git_commit")
OVERRIDE_PREFIX = "override."
DEFAULT_METRIC = "final.test_accuracy"


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
        return replicas_frame(self.finished)


# ----------------------------------------------------------------------------- discovery


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


# ----------------------------------------------------------------------------- loading


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


# ----------------------------------------------------------------------------- tidy frame


def _flatten(prefix: str, values: dict[str, Any] | None) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in (values or {}).items()}


def replicas_frame(jobs: Sequence[JobRecord]) -> pd.DataFrame:
    """One row per (finished job, replica); see the module docstring for the columns."""
    rows: list[dict[str, Any]] = []
    hparam_keys: dict[str, None] = {}
    override_keys: dict[str, None] = {}
    metric_keys: dict[str, None] = {}
    for job in jobs:
        if not job.finished:
            raise ValueError(f"job {job.path} is not finished ({job.status}); not a result")
        for replica in job.summary.get("replicas") or []:
            for key in replica.get("hparams") or {}:
                hparam_keys[key] = None
        for key in parse_overrides(job.overrides):
            override_keys[key] = None
    reserved = set(FIXED_COLUMNS) | set(STATUS_COLUMNS) | set(TRAILING_COLUMNS) | set(hparam_keys)
    override_column = {
        key: OVERRIDE_PREFIX + key
        if key in reserved or key.startswith(("final.", "best."))
        else key
        for key in override_keys
    }
    for job in jobs:
        overrides = parse_overrides(job.overrides)
        metadata = job.metadata
        for position, replica in enumerate(job.summary.get("replicas") or []):
            row: dict[str, Any] = {
                "job": str(job.path),
                "name": job.name,
                "replica": replica.get("index", position),
                "seed": replica.get("seed"),
            }
            row.update(replica.get("hparams") or {})
            row.update({override_column[key]: value for key, value in overrides.items()})
            row["diverged"] = bool(replica.get("diverged", False))
            row["diverged_step"] = replica.get("diverged_step")
            metrics = _flatten("final", replica.get("final")) | _flatten(
                "best", replica.get("best")
            )
            metric_keys.update(dict.fromkeys(metrics))
            row.update(metrics)
            row["epochs"] = job.summary.get("epochs")
            row["wall_time_s"] = metadata.get("wall_time_s")
            row["git_commit"] = metadata.get("git_commit")
            rows.append(row)
    columns = [
        *FIXED_COLUMNS,
        *hparam_keys,
        *(override_column[k] for k in override_keys),
        *STATUS_COLUMNS,
        *sorted(metric_keys, key=lambda k: (not k.startswith("final."), k)),
        *TRAILING_COLUMNS,
    ]
    return pd.DataFrame(rows, columns=columns)


def resolve_metric(frame: pd.DataFrame, metric: str) -> str:
    """Accept ``final.test_accuracy`` or the short ``test_accuracy`` (meaning the final value)."""
    if metric in frame.columns:
        return metric
    if f"final.{metric}" in frame.columns:
        return f"final.{metric}"
    available = [c for c in frame.columns if c.startswith(("final.", "best."))]
    raise ValueError(f"metric must be one of {available}, got {metric!r}")


def lower_is_better(metric: str) -> bool:
    """Losses and errors are minimised; everything else (accuracy) is maximised."""
    leaf = metric.rsplit(".", 1)[-1]
    return "loss" in leaf or "error" in leaf or leaf in ("wer", "cer", "perplexity")


def group_summary(
    frame: pd.DataFrame,
    group_by: Sequence[str] = ("job",),
    metric: str = DEFAULT_METRIC,
    mode: str | None = None,
) -> pd.DataFrame:
    """Per group: n (finite values), mean, std (ddof = 1), best, n_diverged.

    ``mode`` is "max" or "min" (which value is best); None picks from the metric's name.
    """
    if mode not in (None, "max", "min"):
        raise ValueError(f"mode must be one of ['max', 'min'], got {mode!r}")
    missing = [column for column in group_by if column not in frame.columns]
    if missing:
        raise ValueError(
            f"group_by columns must be among {list(frame.columns)}, got unknown {missing}"
        )
    metric = resolve_metric(frame, metric)
    minimise = lower_is_better(metric) if mode is None else mode == "min"
    keys = list(group_by)
    values = pd.to_numeric(frame[metric], errors="coerce")
    work = frame[keys].copy()
    work["_value"] = values
    work["_diverged"] = frame["diverged"].astype(bool)
    grouped = work.groupby(keys, dropna=False, sort=False)
    result = pd.DataFrame(
        {
            "n": grouped["_value"].count(),
            "mean": grouped["_value"].mean(),
            "std": grouped["_value"].std(ddof=1),
            "best": grouped["_value"].min() if minimise else grouped["_value"].max(),
            "n_diverged": grouped["_diverged"].sum().astype(int),
        }
    ).reset_index()
    if "job" in keys and "name" not in keys and "name" in frame.columns:
        names = frame.groupby("job", sort=False)["name"].first()
        result.insert(keys.index("job") + 1, "name", result["job"].map(names))
    result.attrs["metric"] = metric
    return result


# ----------------------------------------------------------------------------- printing


def _format_cell(value: Any, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format(value, float_format)
    if isinstance(value, bool):
        return str(value)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, float_format: str = ".4g") -> str:
    """GitHub markdown table of ``frame`` (NaN and None print as empty cells)."""
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_format_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)


def unfinished_table(jobs: Sequence[JobRecord]) -> pd.DataFrame:
    """Unfinished jobs with their status, name, overrides and last logged epoch."""
    return pd.DataFrame(
        [
            {
                "job": str(job.path),
                "name": job.name,
                "status": job.status,
                "last_epoch": job.last_epoch,
                "overrides": " ".join(job.overrides),
            }
            for job in jobs
        ],
        columns=["job", "name", "status", "last_epoch", "overrides"],
    )


def _relative_jobs(frame: pd.DataFrame) -> pd.DataFrame:
    # Print job paths relative to their common parent: shorter tables, same information.
    if frame.empty or "job" not in frame.columns:
        return frame
    jobs = frame["job"].astype(str)
    common = os.path.commonpath(list(jobs.unique())) if len(jobs) else ""
    if jobs.nunique() > 1 and common:
        frame = frame.copy()
        frame["job"] = [os.path.relpath(job, common) for job in jobs]
    return frame


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m repro.aggregate",
        description="Tidy table (CSV + markdown) of Hydra run / multirun dirs.",
    )
    parser.add_argument("paths", nargs="+", help="multirun dirs, run dirs, or parents of them")
    parser.add_argument("--out", type=Path, help="CSV path for the per-replica table")
    parser.add_argument(
        "--group-by",
        nargs="+",
        default=["job"],
        help="columns of the grouped view (default: job)",
    )
    parser.add_argument(
        "--metric", default=DEFAULT_METRIC, help=f"metric to summarise (default {DEFAULT_METRIC})"
    )
    parser.add_argument(
        "--mode", choices=["max", "min"], help="best = max or min (default: from the metric name)"
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=40,
        help="rows of the per-replica table to print (0: all; the CSV always has all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status (2 on bad input, 1 when nothing finished)."""
    args = build_parser().parse_args(argv)
    try:
        runs = load_runs(args.paths)
        frame = runs.frame()
        grouped = (
            group_summary(frame, args.group_by, args.metric, args.mode) if not frame.empty else None
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    print(f"# {len(frame)} replica rows from {len(runs.finished)} finished job(s)\n")
    if not frame.empty:
        shown = frame if args.max_rows <= 0 else frame.head(args.max_rows)
        print(markdown_table(_relative_jobs(shown)))
        if len(shown) < len(frame):
            print(f"\n({len(frame) - len(shown)} more rows; all rows are in the CSV)")
        print(f"\n## {grouped.attrs['metric']} by {', '.join(args.group_by)}\n")
        print(markdown_table(_relative_jobs(grouped)))
    if runs.unfinished:
        print(f"\n## {len(runs.unfinished)} unfinished job(s) (not counted)\n")
        print(markdown_table(unfinished_table(runs.unfinished)))
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0 if runs.finished else 1


if __name__ == "__main__":
    sys.exit(main())
