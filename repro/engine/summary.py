"""summary.json's dict from a run's config and its metrics records (schema: OUTPUTS.md).

`build_summary` needs only the resolved config and the `metrics.jsonl` records, so anything
that holds those (the engine at the end of a run, the W&B import in repro/figures) builds
the same summary. The objective metric and mode default to the task's (`test_accuracy`/max
for classification, `test_loss`/min for mse, `test_corpus_token_error_rate`/min for ctc,
`test_wer`/min for asr).

Diverged replicas (frozen at the step their loss became non-finite) stay out of the
objective and of the means over replicas (`aggregate`, `aggregate_by_grid`, each stats entry
counting them in `diverged`) unless `objective.include_diverged=true`: the test accuracy of
frozen parameters (0.1, chance, for a net that blew up) is no result. A run in which every
replica diverged has status `diverged` and a null objective (the CLI exits with code 3).
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


STATUS_FINISHED = "finished"
STATUS_DIVERGED = "diverged"  # every replica diverged
DONE_STATUSES = (STATUS_FINISHED, STATUS_DIVERGED)  # a run dir holding one is not rerun


def objective_spec(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """(metric, mode, reduce) of the run's objective: `objective.*` or the task's defaults."""
    objective = config.get("objective") or {}
    task = get_task(config.get("task", "classification"))
    metric = objective.get("metric") or task.default_objective
    mode = objective.get("mode") or task.default_mode
    return metric, mode, objective.get("reduce") or "mean"


def includes_diverged(config: Mapping[str, Any]) -> bool:
    """`objective.include_diverged` (default false)."""
    return bool((config.get("objective") or {}).get("include_diverged", False))


def counted_replicas(config: Mapping[str, Any], diverged: Sequence[bool]) -> list[int]:
    """Indices of the replicas that enter objective and means: the healthy ones, or all with
    `objective.include_diverged=true`."""
    include = includes_diverged(config)
    return [i for i, flag in enumerate(diverged) if include or not flag]


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


def _scalar_keys(last: Mapping[str, Any]) -> list[str]:
    """Per-replica keys with one number per replica (a hook's spectrum, [R, k], or decoded
    transcripts have no mean)."""
    return [
        k
        for k in _per_replica_keys(last)
        if all(v is None or isinstance(v, int | float) for v in last[k])
    ]


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


def _stats(
    values: Sequence[Any], members: Sequence[int], counted: set[int], diverged: Sequence[bool]
) -> dict[str, Any]:
    stats = out.aggregate_stats([values[i] for i in members if i in counted])
    stats["diverged"] = sum(bool(diverged[i]) for i in members)
    return stats


def _aggregates(
    plan: rep.ReplicaPlan, last: Mapping[str, Any], counted: set[int], diverged: Sequence[bool]
) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = _scalar_keys(last)
    everyone = range(plan.num_replicas)
    aggregate = {k: _stats(last[k], everyone, counted, diverged) for k in keys}
    by_grid: dict[str, Any] = {}
    for g, value in enumerate(plan.grid_values if plan.grid_key is not None else ()):
        members = [i for i in everyone if plan.grid_index[i] == g]
        by_grid[repr(value)] = {k: _stats(last[k], members, counted, diverged) for k in keys}
    return aggregate, by_grid


def _objectives(
    plan: rep.ReplicaPlan, values: Sequence[Any], counted: set[int], how: str
) -> tuple[float | None, dict[str, float | None]]:
    """The objective over the counted replicas, and the same per grid value (arm); None
    where no counted replica has a finite value."""
    values = list(values) or [None] * plan.num_replicas

    def objective(members: list[int]) -> float | None:
        value = reduce_finite([values[i] for i in members], how)
        return None if np.isnan(value) else value

    by_grid = {}
    for g, value in enumerate(plan.grid_values if plan.grid_key is not None else ()):
        by_grid[repr(value)] = objective([i for i in sorted(counted) if plan.grid_index[i] == g])
    return objective(sorted(counted)), by_grid


def build_summary(
    config: Mapping[str, Any],
    records: list[dict[str, Any]],
    *,
    steps: int,
    diverged_step: Sequence[int] | None = None,
) -> dict[str, Any]:
    """summary.json without `metadata` and `overrides` (added by the caller): per-replica
    final and best values, aggregates over replicas (and per grid value) of the last record,
    and the objective = `objective.reduce` over the counted replicas (`counted_replicas`) of
    the last record's metric, overall and per grid value (`objective_by_grid`).

    `config` is the resolved run config; `diverged_step` the step each replica diverged at
    (< 0: never), known only to the engine (None: null for every replica).
    """
    plan = rep.plan_from_config(config)
    metric, mode, how = objective_spec(config)
    last = final_record(records)
    diverged = [bool(d) for d in (last.get("diverged") or [False] * plan.num_replicas)]
    counted = set(counted_replicas(config, diverged))
    aggregate, by_grid = _aggregates(plan, last, counted, diverged)
    objective, objective_by_grid = _objectives(plan, last.get(metric, []), counted, how)
    return {
        "status": STATUS_DIVERGED if all(diverged) else STATUS_FINISHED,
        "experiment": config["name"],
        "objective": objective,
        "objective_metric": metric,
        "objective_mode": mode,
        "objective_reduce": how,
        "objective_include_diverged": includes_diverged(config),
        "objective_by_grid": objective_by_grid,
        "num_replicas": plan.num_replicas,
        "num_diverged": sum(diverged),
        "grid_key": plan.grid_key,
        "epochs": int(config["trainer"]["epochs"]),
        "steps": steps,
        "replicas": _replica_entries(plan, records, metric, mode, diverged_step),
        "aggregate": aggregate,
        "aggregate_by_grid": by_grid,
    }
