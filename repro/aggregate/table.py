"""The tidy per-replica table of finished jobs and its grouped view (columns: see the package
docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from repro.aggregate.jobs import JobRecord, parse_overrides

FIXED_COLUMNS = ("job", "name", "replica", "seed")
STATUS_COLUMNS = ("diverged", "diverged_step")
TRAILING_COLUMNS = ("epochs", "wall_time_s", "git_commit")
OVERRIDE_PREFIX = "override."
DEFAULT_METRIC = "final.test_accuracy"


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
