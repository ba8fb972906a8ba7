"""summary.json's dict from a run's config and its metrics records (schema: OUTPUTS.md).

`build_summary` needs only the resolved config and the `metrics.jsonl` records, so anything
that holds those (the engine at the end of a run, the W&B import in repro/figures) builds
the same summary. The objective metric and mode default to the task's (`test_accuracy`/max
for classification, `test_loss`/min for mse, `test_corpus_token_error_rate`/min for ctc).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from repro.engine import outputs as out
from repro.engine import replicas as rep
from repro.engine.tasks import get_task

REDUCERS: dict[str, Callable[..., Any]] = {
    "mean": np.mean,
    "median": np.median,
    "max": np.max,
    "min": np.min,
}


def objective_spec(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """(metric, mode, reduce) of the run's objective: `objective.*` or the task's defaults."""
    objective = config.get("objective") or {}
    task = get_task(config.get("task", "classification"))
    metric = objective.get("metric") or task.default_objective
    mode = objective.get("mode") or task.default_mode
    return metric, mode, objective.get("reduce") or "mean"


def reduce_finite(values: Sequence[float | None], how: str) -> float:
    """`how` (mean/median/max/min) over the finite values; NaN (null in JSON) if none."""
    finite = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(REDUCERS[how](finite)) if finite else float("nan")


def best_epoch(records: list[dict[str, Any]], metric: str, mode: str, index: int) -> dict:
    """{metric: best value of replica `index` over the records, "epoch": its epoch}."""
    series = [
        (r["epoch"], r[metric][index])
        for r in records
        if isinstance(r.get(metric), list)
        and index < len(r[metric])
        and r[metric][index] is not None
    ]
    if not series:
        return {metric: None, "epoch": None}
    pick = max if mode == "max" else min
    epoch, value = pick(series, key=lambda item: item[1])
    return {metric: value, "epoch": epoch}


def final_record(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The record of the last epoch (the largest `epoch`), not simply the last line: a file
    that a second writer appended to can end with an older epoch."""
    return dict(max(records, key=lambda r: int(r["epoch"]))) if records else {}


def _per_replica_keys(last: Mapping[str, Any]) -> list[str]:
    return [k for k, v in last.items() if isinstance(v, list) and k != "diverged"]


def _replica_entries(
    plan: rep.ReplicaPlan,
    records: list[dict[str, Any]],
    metric: str,
    mode: str,
    diverged_step: Sequence[int] | None,
) -> list[dict[str, Any]]:
    last = final_record(records)
    keys = _per_replica_keys(last)
    diverged = last.get("diverged") or [False] * plan.num_replicas
    entries = []
    for i in range(plan.num_replicas):
        step = None if diverged_step is None or diverged_step[i] < 0 else int(diverged_step[i])
        entries.append(
            {
                "index": i,
                "seed": plan.seeds[i],
                "hparams": plan.hparams(i),
                "final": {k: last[k][i] for k in keys},
                "best": best_epoch(records, metric, mode, i),
                "diverged": bool(diverged[i]),
                "diverged_step": step,
            }
        )
    return entries


def _aggregates(
    plan: rep.ReplicaPlan, last: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = _per_replica_keys(last)
    aggregate = {k: out.aggregate_stats(last[k]) for k in keys}
    by_grid: dict[str, Any] = {}
    if plan.grid_key is not None:
        for g, value in enumerate(plan.grid_values):
            members = [i for i in range(plan.num_replicas) if plan.grid_index[i] == g]
            by_grid[repr(value)] = {
                k: out.aggregate_stats([last[k][i] for i in members]) for k in keys
            }
    return aggregate, by_grid


def build_summary(
    config: Mapping[str, Any],
    records: list[dict[str, Any]],
    *,
    steps: int,
    diverged_step: Sequence[int] | None = None,
) -> dict[str, Any]:
    """summary.json without `metadata` and `overrides` (added by the caller): per-replica
    final and best values, aggregates over replicas (and per grid value) of the last record,
    and the objective = `objective.reduce` over replicas of the last record's metric.

    `config` is the resolved run config; `diverged_step` the step each replica diverged at
    (< 0: never), known only to the engine (None: null for every replica).
    """
    plan = rep.plan_from_config(config)
    metric, mode, how = objective_spec(config)
    last = final_record(records)
    aggregate, by_grid = _aggregates(plan, last)
    return {
        "status": "finished",
        "experiment": config["name"],
        "objective": reduce_finite(last.get(metric, []), how),
        "objective_metric": metric,
        "objective_mode": mode,
        "num_replicas": plan.num_replicas,
        "grid_key": plan.grid_key,
        "epochs": int(config["trainer"]["epochs"]),
        "steps": steps,
        "replicas": _replica_entries(plan, records, metric, mode, diverged_step),
        "aggregate": aggregate,
        "aggregate_by_grid": by_grid,
    }
