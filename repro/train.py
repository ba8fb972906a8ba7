"""Hydra app: `python -m repro.train [group=option ...] [key=value ...]` (also `repro-train`).

The logic lives in `train(cfg)` / `repro.engine.train_and_evaluate(cfg, workdir)`, which tests
call directly; `main` sets up logging and devices, maps bad input (repro.errors.ConfigError) to
one `error: ...` line and exit code 2 (every other exception keeps its traceback: exit code
1), and returns the run's objective so that any Hydra sweeper can optimise it. The output
directory is a function of the experiment name and the command-line overrides that change
results (`run_dirname`), so running the same command again resumes an interrupted run from
its last checkpoint, or prints "already finished" and returns the stored objective.
"""

from __future__ import annotations

import hashlib
import logging
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from repro.cli_checks import checked_command_line
from repro.engine.run_spec import register_trainer_defaults
from repro.errors import ConfigError
from repro.run_identity import result_overrides
from repro.run_metadata import MISSING_CONFIG, config_dir, installed_config_dirs, repo_root

CONFIG_DIR = config_dir()
MAX_DIRNAME = 120
# Orbax logs every save at INFO through absl (dozens of lines per checkpoint), and warns at
# every save of a single-process run that it has no per-process OCDBT files to merge.
QUIET_LOGGERS = ("absl", "orbax", "jax._src.xla_bridge")
HARMLESS_WARNINGS = ("Skipping merge of OCDBT checkpoints",)


def safe_dirname(override_dirname: str) -> str:
    """Directory name for a set of overrides: "default" if none, "/" made safe, long ones hashed."""
    if not override_dirname:
        return "default"
    name = override_dirname.replace("/", "_").replace(" ", "")
    if len(name) > MAX_DIRNAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_DIRNAME - 11]}-{digest}"
    return name


def run_dirname(task_overrides: Iterable[str] | str) -> str:
    """The run directory's name: the command-line overrides that change results
    (`run_identity.result_overrides`), in Hydra's override_dirname format (sorted, joined by
    `,`), made safe by `safe_dirname`. `task_overrides` is `${hydra.overrides.task}`."""
    if isinstance(task_overrides, str):  # an already formatted override_dirname
        return safe_dirname(task_overrides)
    return safe_dirname(",".join(sorted(result_overrides(list(task_overrides)))))


def hydra_subdir(process_id: Any) -> str:
    """Hydra's output_subdir: `.hydra`, or `.hydra/process_<i>` for process i > 0 of a run
    over several processes (they share the run directory)."""
    return ".hydra" if not process_id else f".hydra/process_{int(process_id)}"


def register_resolvers() -> None:
    """Resolvers used by conf/: `${repro.dirname:...}`, `${repro.root:}`; and the `trainer`
    defaults (repro/engine/run_spec.py) as the config group conf/config.yaml selects."""
    OmegaConf.register_new_resolver("repro.dirname", run_dirname, replace=True)
    OmegaConf.register_new_resolver("repro.root", lambda: str(repo_root()), replace=True)
    OmegaConf.register_new_resolver("repro.hydra_subdir", hydra_subdir, replace=True)
    register_trainer_defaults()


register_resolvers()


def _drop_harmless(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in HARMLESS_WARNINGS)


def configure_logging() -> None:
    """Quiet the checkpoint library's per-save INFO lines and its single-process warning."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if _drop_harmless not in logging.getLogger("absl").filters:
        logging.getLogger("absl").addFilter(_drop_harmless)


def output_dir_from_hydra() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


EXIT_DIVERGED = 3  # every replica diverged: status "diverged", no objective


def _fmt_stats(stats: Mapping[str, Any]) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    return (
        f"mean {stats['mean']:.4f} +- {stats['std']:.4f} "
        f"(min {stats['min']:.4f}, max {stats['max']:.4f}, n={stats['count']})"
    )


def _final_lines(summary: Mapping[str, Any], metric: str) -> list[str]:
    """Final metric over the counted replicas, per grid value (arm) if there is a grid."""
    replicas = summary.get("replicas", [])
    by_grid = summary.get("aggregate_by_grid") or {}
    if not by_grid:
        stats = (summary.get("aggregate") or {}).get(metric, {})
        diverged = sum(r["diverged"] for r in replicas)
        return [f"  final {metric} {_fmt_stats(stats)}; diverged {diverged}/{len(replicas)}"]
    key = summary.get("grid_key")
    lines = []
    for value, stats in by_grid.items():
        members = [r for r in replicas if repr(float(r["hparams"][key])) == value]
        diverged = sum(r["diverged"] for r in members)
        lines.append(
            f"  {key}={value}: final {metric} {_fmt_stats(stats.get(metric, {}))}; "
            f"diverged {diverged}/{len(members)}"
        )
    return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


def _objective_lines(summary: Mapping[str, Any], metric: str) -> list[str]:
    """The objective, labelled with what it is; per arm when there is a grid (the overall
    value then mixes the arms: it is what a sweeper optimises, not a result of one arm)."""
    if summary.get("status") == "diverged":
        return [f"  every replica diverged: no objective (status diverged, exit {EXIT_DIVERGED})"]
    how = summary.get("objective_reduce", "mean")
    over = "all replicas" if summary.get("objective_include_diverged") else "replicas not diverged"
    what = f"{how} of final {metric} over {over}, {summary.get('objective_mode')} is better"
    lines = []
    arms = summary.get("objective_by_grid") or {}
    if len(arms) >= 2:
        key = summary.get("grid_key")
        shown = ", ".join(
            f"{key}={v} {x:.4f}" if _is_number(x) else f"{key}={v} n/a" for v, x in arms.items()
        )
        lines.append(f"  objective per arm ({what}): {shown}")
        what = f"{how} over the replicas of all {len(arms)} arms together; what main() returns"
    objective = summary.get("objective")
    if _is_number(objective):
        lines.append(f"  objective ({what}): {objective:.4f}")
    return lines


def describe(summary: Mapping[str, Any], workdir: Path | None = None) -> str:
    """Short human-readable report of a finished run (printed at the end of `train`)."""
    metric = summary.get("objective_metric", "test_accuracy")
    seconds = summary.get("metadata", {}).get("wall_time_s", 0)
    lines = [
        f"{summary.get('experiment')}: {summary.get('num_replicas')} replica(s), "
        f"{summary.get('epochs')} epochs, {seconds:.0f} s",
        *_final_lines(summary, metric),
    ]
    if len(summary.get("aggregate_by_grid") or {}) >= 2:
        lines.extend(_paired_differences(summary, metric))
    lines.extend(_objective_lines(summary, metric))
    if workdir is not None:
        lines.append(f"  outputs: {workdir}")
    return "\n".join(lines)


def _paired_differences(summary: Mapping[str, Any], metric: str) -> list[str]:
    """Mean over seeds of (value at grid value g) - (value at the first grid value), over the
    seeds whose replicas at both values did not diverge."""
    key = summary["grid_key"]
    by_seed: dict[int, dict[float, float]] = {}
    for replica in summary["replicas"]:
        value = replica["final"].get(metric)
        if value is not None and not replica["diverged"]:
            by_seed.setdefault(replica["seed"], {})[float(replica["hparams"][key])] = value
    values = [float(v) for v in summary["aggregate_by_grid"]]
    lines = []
    for other in values[1:]:
        diffs = [s[other] - s[values[0]] for s in by_seed.values() if other in s and values[0] in s]
        if diffs:
            wins = sum(d > 0 for d in diffs)
            lines.append(
                f"  {key}={other!r} vs {values[0]!r}: {metric} {sum(diffs) / len(diffs):+.4f} "
                f"on average over {len(diffs)} seeds (higher for {wins}/{len(diffs)})"
            )
    return lines


def train(cfg: DictConfig, workdir: str | Path | None = None) -> dict[str, Any]:
    """Run the experiment `cfg` in `workdir` (default: Hydra's output dir); return the summary."""
    from repro.engine import train_and_evaluate

    workdir = Path(workdir) if workdir is not None else output_dir_from_hydra()
    if cfg.get("dynamics") is not None:  # an SGD-dynamics simulation, not epochs (repro/dynamics)
        from repro.dynamics import describe as describe_dynamics
        from repro.dynamics import run_dynamics

        summary = run_dynamics(cfg, workdir)
        done = summary.get("already_finished")
        print(f"already finished: {workdir}" if done else describe_dynamics(summary, workdir))
        return summary
    summary = train_and_evaluate(cfg, workdir)
    if summary.get("already_finished"):
        print(f"already finished: {workdir} (objective {summary.get('objective')})")
    else:
        print(describe(summary, workdir))
    return summary


@checked_command_line(CONFIG_DIR, "config")  # the whole command line, before any job
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Entry point (one call per job, in whichever process the launcher runs it): bad input
    (ConfigError) -> `error: <message>` on stderr and exit code 2; any other exception keeps
    its traceback (exit code 1); a run in which every replica diverged exits with code 3."""
    from repro.engine import distributed
    from repro.engine.config_validation import validate_trainer
    from repro.engine.run_spec import complete_trainer
    from repro.engine.runtime import (
        configure_compilation_cache,
        configure_cpu_devices,
        configure_memory_fraction,
    )

    configure_logging()
    try:
        trainer = complete_trainer(OmegaConf.to_container(cfg.trainer, resolve=True))
        validate_trainer(trainer)  # needs no JAX: trainer.cpu_devices is used before it starts
        # Before JAX starts its CPU client: one XLA host device per core, so that the
        # replicas, sharded over devices, run on every core (trainer.cpu_devices=1: off).
        configure_cpu_devices(trainer["cpu_devices"])
        configure_memory_fraction(trainer["memory_fraction"])
        node = cfg.get("distributed")  # before JAX starts its backends, like the devices
        distributed.initialize(None if node is None else OmegaConf.to_container(node))
        configure_compilation_cache(cfg.paths.get("jax_cache_dir"))
        summary = train(cfg)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if summary.get("status") == "diverged":
        sys.exit(EXIT_DIVERGED)
    objective = summary.get("objective")
    return None if objective is None else float(objective)


def cli() -> None:
    """Console entry point (`repro-train`, `python -m repro.train`): one line and exit code 2
    when the config directory is missing (an install without conf/), else the Hydra app."""
    if not (CONFIG_DIR / "config.yaml").is_file():
        where = ", ".join(str(p) for p in installed_config_dirs())
        print(
            "error: " + MISSING_CONFIG.format(checkout=CONFIG_DIR, installed=where),
            file=sys.stderr,
        )
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
