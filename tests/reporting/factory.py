"""Run-dir factory: synthetic Hydra job dirs following the run-output schema in DESIGN.md.

A finished job dir holds ``.hydra/{config,overrides}.yaml``, ``config_resolved.yaml``,
``metrics.jsonl`` (one line per epoch, per-replica lists) and ``summary.json``; an unfinished
one lacks ``summary.json``. Accuracies are fractions in the files, as the engine writes them.
``config_resolved.yaml`` is the config ``python -m repro.train experiment=<name> <overrides>``
would resolve (Hydra's compose API on conf/), so the figures match the job to its cell by
identity exactly as they match a real run; a name that is no experiment gets a stub config.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from repro.figures.identity import composed_config

LR = "optimizer.learning_rate"
EXPERIMENTS = Path(__file__).resolve().parents[2] / "conf" / "experiment"


def resolved_config(name: str, overrides: Sequence[str]) -> dict[str, Any]:
    """What the engine writes to config_resolved.yaml for ``experiment=name overrides``."""
    if not (EXPERIMENTS / f"{name}.yaml").is_file():
        return {"name": name, "seed": 0, "optimizer": {"learning_rate": 0.1}}
    options = [f"experiment={name}", *(o for o in overrides if not o.startswith("experiment="))]
    return composed_config(options)


def replica(
    seed: int,
    accuracy: float | None,
    learning_rate: float | None = 0.1,
    *,
    diverged: bool = False,
    loss: float | None = None,
    best: float | None = None,
    hparams: dict[str, float] | None = None,
    validation: float | None = None,
) -> dict[str, Any]:
    """Replica spec: seed, grid hparams (default: the learning rate), final accuracy (fraction)
    and, optionally, the final validation accuracy (fraction)."""
    if hparams is None:
        hparams = {} if learning_rate is None else {LR: learning_rate}
    return {
        "seed": seed,
        "hparams": hparams,
        "accuracy": accuracy,
        "diverged": diverged,
        "loss": (1.0 - (accuracy or 0.0)) if loss is None else loss,
        "best": accuracy if best is None else best,
        "validation": validation,
    }


def make_job(
    job_dir: Path,
    name: str,
    replicas: Sequence[dict[str, Any]],
    overrides: Sequence[str] = (),
    *,
    finished: bool = True,
    epochs: int = 3,
    status: str = "finished",
    wall_time_s: float = 12.5,
    end_time: str = "2025-01-01T00:00:00+00:00",
    git_commit: str = "abc1234",
    config: dict[str, Any] | None = None,
) -> Path:
    """Write one job dir. Accuracy curves rise linearly to each replica's final accuracy.

    ``config`` replaces the resolved config (default: composed from the name and overrides).
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / ".hydra").mkdir(exist_ok=True)
    overrides = list(overrides)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = resolved_config(name, overrides) if config is None else config
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / "config_resolved.yaml").write_text(yaml.safe_dump(config))
    (job_dir / "checkpoints").mkdir(exist_ok=True)
    with (job_dir / "metrics.jsonl").open("w") as handle:
        for epoch in range(1, epochs + 1):
            fraction = epoch / epochs
            record = {
                "epoch": epoch,
                "step": epoch * 10,
                "wall_time_s": 1.0 * epoch,
                "examples_per_s": 1000.0,
                "train_loss": [r["loss"] + (1 - fraction) for r in replicas],
                "test_loss": [r["loss"] + (1 - fraction) for r in replicas],
                "test_accuracy": [
                    None if r["accuracy"] is None else r["accuracy"] * fraction for r in replicas
                ],
                "diverged": [r["diverged"] for r in replicas],
            }
            handle.write(json.dumps(record) + "\n")
    if not finished:
        return job_dir
    accuracies = [r["accuracy"] for r in replicas]
    finite = [a for a in accuracies if a is not None]
    grid_keys = sorted({key for r in replicas for key in r["hparams"]})
    summary = {
        "status": status,
        "experiment": name,
        "objective": statistics.mean(finite) if finite else None,
        "objective_metric": "test_accuracy",
        "objective_mode": "max",
        "num_replicas": len(replicas),
        "grid_key": grid_keys[0] if grid_keys else None,
        "epochs": epochs,
        "steps": epochs * 10,
        "replicas": [
            {
                "index": index,
                "seed": r["seed"],
                "hparams": r["hparams"],
                "final": {
                    "test_accuracy": r["accuracy"],
                    "test_loss": r["loss"],
                    "train_loss": r["loss"],
                    **(
                        {"validation_accuracy": r["validation"]}
                        if r.get("validation") is not None
                        else {}
                    ),
                },
                "best": {"test_accuracy": r["best"], "epoch": epochs},
                "diverged": r["diverged"],
                "diverged_step": 7 if r["diverged"] else None,
            }
            for index, r in enumerate(replicas)
        ],
        "aggregate": {
            "test_accuracy": {
                "mean": statistics.mean(finite) if finite else None,
                "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
                "min": min(finite, default=None),
                "max": max(finite, default=None),
                "median": statistics.median(finite) if finite else None,
                "count": len(finite),
            }
        },
        "aggregate_by_grid": {},
        "metadata": {
            "git_commit": git_commit,
            "git_dirty": False,
            "command": "python -m repro.train " + " ".join(overrides),
            "hostname": "testhost",
            "platform": "cpu",
            "devices": ["cpu:0"],
            "versions": {"jax": "0.10.2"},
            "start_time": "2025-01-01T00:00:00+00:00",
            "end_time": end_time,
            "wall_time_s": wall_time_s,
        },
        "overrides": overrides,
    }
    (job_dir / "summary.json").write_text(json.dumps(summary))
    return job_dir


def make_multirun(sweep_dir: Path, jobs: Sequence[dict[str, Any]]) -> list[Path]:
    """``<sweep_dir>/<job num>/`` for each job spec (kwargs of make_job without job_dir)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "MULTIRUN"}}))
    return [make_job(sweep_dir / str(number), **job) for number, job in enumerate(jobs)]


def grid(accuracies: Sequence[float], learning_rates: Sequence[float] = (0.1, 0.01)) -> list:
    """Replicas over seeds x learning rates; accuracies are listed seed-major, in percent."""
    specs = []
    values = iter(accuracies)
    seeds = len(accuracies) // len(learning_rates)
    for seed in range(seeds):
        for learning_rate in learning_rates:
            specs.append(replica(seed, next(values) / 100.0, learning_rate))
    return specs


class RunFactory:
    """What tests use: ``runs.job(...)``, ``runs.multirun(...)``, ``runs.cell(...)``."""

    replica = staticmethod(replica)
    grid = staticmethod(grid)

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0

    def job(self, name: str, replicas: Sequence[dict[str, Any]], **kwargs: Any) -> Path:
        self._count += 1
        return make_job(self.root / "runs" / f"job{self._count}", name, replicas, **kwargs)

    def multirun(self, sweep: str, jobs: Sequence[dict[str, Any]]) -> list[Path]:
        return make_multirun(self.root / "multirun" / sweep, jobs)

    def cell(self, cell_name: str, accuracies_percent: Sequence[float], **kwargs: Any) -> Path:
        """A Neelakantan-style cell: seeds x lrs {0.1, 0.01}, accuracies in percent."""
        overrides = [f"experiment={cell_name}", *kwargs.pop("overrides", ())]
        return self.job(cell_name, grid(accuracies_percent), overrides=overrides, **kwargs)
