"""`run_dynamics(cfg, workdir)`: an SGD-dynamics simulation (a `dynamics:` config node) from
config to summary.json, in the same run-directory layout as a training run.

`python -m repro.train experiment=mori2022/phi` runs here instead of the epoch engine because
the experiment sets `dynamics:` (repro/train.py). The directory holds `config_resolved.yaml`,
`dynamics.npz` (the raw records: samples of u = (L - L*) / L*, first-passage steps),
`records.json` (one fit per replica) and, once finished, `summary.json` whose `replicas` are
the fits (so `repro.aggregate` tables and `repro.figures` cells read them like any run):

- `kind: stationary`: a replica per (learning rate, batch size, run): phi fitted on its
  samples (repro/dynamics/power_law.py) beside the theory phi = 1 + B / (lr h*);
- `kind: escape`: a replica per dimension d: the log-log slope of the mean first-passage
  time to L > c L* against c, over `runs` runs, beside the theory B / (lr h*) + 1 - d / 2.

Running the same command again returns the stored summary (`already finished`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from repro import run_metadata
from repro.engine import outputs as out
from repro.engine.workdir import WorkdirState, open_workdir, save_config
from repro.errors import ConfigError

RECORDS_FILE = "records.json"
ARRAYS_FILE = "dynamics.npz"
KINDS = ("stationary", "escape")
SQUARED_ERROR_TASKS = ("mse",)


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"dynamics.{key} must be {allowed}, got {value!r}")


def _ints(node: Mapping[str, Any], key: str, low: int = 1) -> tuple[int, ...]:
    value = node.get(key)
    values = value if isinstance(value, list | tuple) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise _fail(key, value, f"an integer >= {low} or a non-empty list of them")
    return tuple(int(v) for v in values)


def _positives(node: Mapping[str, Any], key: str, above: float = 0.0) -> tuple[float, ...]:
    value = node.get(key)
    values = value if isinstance(value, list | tuple) else [value]
    ok = values and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > above for v in values
    )
    if not ok:
        raise _fail(key, value, f"a number > {above:g} or a non-empty list of them")
    return tuple(float(v) for v in values)


def validate(container: Mapping[str, Any]) -> dict[str, Any]:
    """The checked `dynamics` node (ConfigError naming the key); needs no JAX."""
    task = container.get("task")
    if task not in SQUARED_ERROR_TASKS:
        raise ConfigError(
            f"task must be 'mse' for a dynamics experiment (its theory needs a mean-square "
            f"loss), got {task!r}"
        )
    node = dict(container["dynamics"])
    if node.get("kind") not in KINDS:
        raise _fail("kind", node.get("kind"), f"one of {list(KINDS)}")
    (num_train,) = _ints(node, "num_train")
    _ints(node, "runs")
    sizes = _ints(node, "batch_sizes")
    if max(sizes) > num_train:
        raise ConfigError(
            f"dynamics.batch_sizes must be <= dynamics.num_train={num_train}, got {list(sizes)}"
        )
    _positives(node, "learning_rates")
    if node["kind"] == "stationary":
        for key in ("dim", "burn_in", "sample_every", "num_samples"):
            _ints(node, key)
        quantile = node.get("tail_quantile")
        if not isinstance(quantile, int | float) or not 0 <= quantile < 1:
            raise _fail("tail_quantile", quantile, "a number in [0, 1)")
    else:
        for key in ("learning_rates", "batch_sizes"):
            if isinstance(node[key], list | tuple) and len(node[key]) != 1:
                raise _fail(key, node[key], "one value for kind=escape")
        _ints(node, "max_steps")
        thresholds = _thresholds(node)
        for dim in _ints(node, "dims"):
            if dim not in thresholds:
                raise _fail("thresholds", node["thresholds"], f"a c grid for dim {dim}")
    return node


def _thresholds(node: Mapping[str, Any]) -> dict[int, tuple[float, ...]]:
    """dim -> its c grid (keys as written: ints from YAML, strings from some overrides)."""
    value = node.get("thresholds")
    if not isinstance(value, Mapping) or not value:
        raise _fail("thresholds", value, "a mapping dim -> list of c > 1")
    grids: dict[int, tuple[float, ...]] = {}
    for key, grid in value.items():
        if not str(key).isdigit() or int(key) in grids:
            raise _fail("thresholds", value, "a mapping with one integer key per dim")
        grids[int(key)] = _positives({"thresholds": grid}, "thresholds", 1.0)
    return grids


def _problem(num_train: int, dim: int, seed: int) -> Any:
    from repro.data import make_linear_regression
    from repro.dynamics.linear_sgd import Problem

    arrays = make_linear_regression(num_train=num_train, num_test=1, dim=dim, seed=seed)
    train = arrays.train_arrays()
    return Problem.from_data(np.asarray(train["x"]), np.asarray(train["y"])[:, 0])


def run_stationary(node: Mapping[str, Any], seed: int) -> tuple[list[dict], dict[str, Any]]:
    """Replica entries (one per lr x B x run, grid-major) and the raw arrays."""
    import jax

    from repro.dynamics.linear_sgd import stationary_samples
    from repro.dynamics.power_law import fit_phi

    problem = _problem(int(node["num_train"]), int(node["dim"]), int(node["data_seed"]))
    lrs, sizes = _positives(node, "learning_rates"), _ints(node, "batch_sizes")
    runs = int(node["runs"])
    grid = [(lr, b, r) for lr in lrs for b in sizes for r in range(runs)]
    keys = jax.random.split(jax.random.key(seed), len(grid))
    thetas = stationary_samples(
        problem,
        np.array([g[0] for g in grid]),
        np.array([g[1] for g in grid]),
        keys,
        burn_in=int(node["burn_in"]),
        sample_every=int(node["sample_every"]),
        num_samples=int(node["num_samples"]),
    )
    excess = problem.relative_excess(thetas)  # [R, S]
    h_star = problem.typical_eigenvalue
    entries = []
    for index, (lr, b, run) in enumerate(grid):
        tail = fit_phi(excess[index], int(node["dim"]), float(node["tail_quantile"]))
        full = fit_phi(excess[index], int(node["dim"]), 0.0)
        theory = 1.0 + b / (lr * h_star)
        final = {
            "phi": tail.phi,
            "phi_profile_low": tail.low,
            "phi_profile_high": tail.high,
            "phi_all_samples": full.phi,
            "phi_theory": theory,
            "relative_deviation": tail.phi / theory - 1.0,
            "tail_threshold": tail.threshold,
            "finite_fraction": float(np.mean(np.isfinite(excess[index]))),
        }
        entries.append(_entry(index, run, {"lr": lr, "batch_size": b}, final))
    arrays = {"excess": excess, "learning_rate": np.array([g[0] for g in grid])}
    arrays |= {"batch_size": np.array([g[1] for g in grid]), "run": np.array([g[2] for g in grid])}
    return entries, arrays | {"h_star": np.array(h_star), "loss_star": np.array(problem.loss_star)}


def run_escape(node: Mapping[str, Any], seed: int) -> tuple[list[dict], dict[str, Any]]:
    """One replica entry per dimension, and the first-passage steps of every run."""
    import jax

    from repro.dynamics.linear_sgd import first_passage_steps
    from repro.dynamics.power_law import escape_slope

    (lr,), (b,) = _positives(node, "learning_rates"), _ints(node, "batch_sizes")
    entries, arrays = [], {}
    for index, dim in enumerate(_ints(node, "dims")):
        thresholds = np.array(_thresholds(node)[dim])
        problem = _problem(int(node["num_train"]), dim, int(node["data_seed"]))
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), dim), int(node["runs"]))
        steps = first_passage_steps(
            problem, lr, b, keys, thresholds, max_steps=int(node["max_steps"])
        )
        censored = int(np.sum(steps < 0))
        theory = b / (lr * problem.typical_eigenvalue) + 1.0 - dim / 2.0
        final: dict[str, Any] = {"slope_theory": theory, "censored": censored}
        if censored == 0:  # a censored run would bias the mean time down: no fit
            fit = escape_slope(thresholds, lr * steps)
            final |= {"slope": fit.slope, "slope_low": fit.low, "slope_high": fit.high}
            final["relative_deviation"] = fit.slope / theory - 1.0
        entries.append(_entry(index, 0, {"dim": dim}, final))
        arrays[f"passage_steps_d{dim}"] = steps
        arrays[f"thresholds_d{dim}"] = thresholds
    return entries, arrays | {"learning_rate": np.array(lr), "batch_size": np.array(b)}


def _entry(index: int, seed: int, hparams: Mapping[str, Any], final: Mapping[str, Any]) -> dict:
    return {
        "index": index,
        "seed": seed,
        "hparams": dict(hparams),
        "final": dict(final),
        "best": {},
        "diverged": False,
        "diverged_step": None,
    }


def _summary(
    container: Mapping[str, Any], entries: Sequence[dict], start: str, seconds: float
) -> dict[str, Any]:
    metadata = run_metadata.collect(start)
    metadata |= {"end_time": run_metadata.now_iso(), "wall_time_s": seconds}
    return {
        "experiment": container.get("name"),
        "status": "finished",
        "kind": container["dynamics"]["kind"],
        "num_replicas": len(entries),
        "epochs": None,
        "replicas": list(entries),
        "objective": None,
        "objective_metric": "relative_deviation",
        "metadata": metadata,
    }


def run_dynamics(cfg: DictConfig | Mapping[str, Any], workdir: str | Path) -> dict[str, Any]:
    """Run (or skip, when finished) the simulation of `cfg.dynamics` in `workdir`."""
    container = (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    )
    node = validate(container)
    overwrite = bool((container.get("trainer") or {}).get("overwrite", False))
    work = open_workdir(workdir, container, overwrite)
    if work.state is WorkdirState.FINISHED:
        return {**(work.finished_summary or {}), "already_finished": True}
    save_config(work, container)
    start, clock = run_metadata.now_iso(), time.perf_counter()
    run = run_stationary if node["kind"] == "stationary" else run_escape
    entries, arrays = run(node, int(container.get("seed", 0)))
    np.savez_compressed(work.path / ARRAYS_FILE, **arrays)
    records = json.dumps([out.jsonable(e) for e in entries], indent=1)
    out.write_text_atomic(work.path / RECORDS_FILE, records + "\n")
    summary = _summary(container, entries, start, time.perf_counter() - clock)
    out.write_json_atomic(work.path / out.SUMMARY_FILE, summary)
    return summary


def describe(summary: Mapping[str, Any], workdir: Path | None = None) -> str:
    """Short report: one line per replica fit."""
    seconds = (summary.get("metadata") or {}).get("wall_time_s", 0.0)
    lines = [f"{summary.get('experiment')}: {summary.get('num_replicas')} fit(s), {seconds:.0f} s"]
    for entry in summary.get("replicas") or []:
        final, hp = entry["final"], entry["hparams"]
        what = ", ".join(f"{k}={v}" for k, v in hp.items())
        if "phi" in final:
            lines.append(
                f"  {what} run {entry['seed']}: phi {final['phi']:.3g} "
                f"(theory {final['phi_theory']:.3g})"
            )
        elif "slope" in final:
            lines.append(
                f"  {what}: slope {final['slope']:.3g} [{final['slope_low']:.3g}, "
                f"{final['slope_high']:.3g}] (theory {final['slope_theory']:.3g})"
            )
        else:
            lines.append(f"  {what}: {final.get('censored')} censored runs, no slope")
    if workdir is not None:
        lines.append(f"  outputs: {workdir}")
    return "\n".join(lines)
