"""Hydra app: `python -m repro.train [group=option ...] [key=value ...]` (also `repro-train`).

The logic lives in `train(cfg)` / `repro.engine.train_and_evaluate(cfg, workdir)`, which tests
call directly; `main` only maps bad input to one `error: ...` line and exit code 2, and
returns the run's objective so that any Hydra sweeper can optimise it. The output directory
is a function of the experiment name and the command-line overrides (conf/config.yaml), so
running the same command again resumes an interrupted run from its last checkpoint, or prints
"already finished" and returns the stored objective.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from repro.cli_checks import checked_command_line
from repro.run_metadata import repo_root

CONFIG_DIR = repo_root() / "conf"
MAX_DIRNAME = 120


def safe_dirname(override_dirname: str) -> str:
    """Directory name for a set of overrides: "default" if none, "/" made safe, long ones hashed."""
    if not override_dirname:
        return "default"
    name = override_dirname.replace("/", "_").replace(" ", "")
    if len(name) > MAX_DIRNAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_DIRNAME - 11]}-{digest}"
    return name


def register_resolvers() -> None:
    """Resolvers used by conf/: `${repro.dirname:...}`, `${repro.root:}`."""
    OmegaConf.register_new_resolver("repro.dirname", safe_dirname, replace=True)
    OmegaConf.register_new_resolver("repro.root", lambda: str(repo_root()), replace=True)


register_resolvers()


def output_dir_from_hydra() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def describe(summary: Mapping[str, Any], workdir: Path | None = None) -> str:
    """Short human-readable report of a finished run (printed at the end of `train`)."""
    metric = summary.get("objective_metric", "test_accuracy")
    lines = [
        f"{summary.get('experiment')}: {summary.get('num_replicas')} replica(s), "
        f"{summary.get('epochs')} epochs, {summary.get('metadata', {}).get('wall_time_s', 0):.0f} s"
    ]

    def fmt(stats: Mapping[str, Any]) -> str:
        if not stats or stats.get("mean") is None:
            return "n/a"
        return (
            f"mean {stats['mean']:.4f} +- {stats['std']:.4f} "
            f"(min {stats['min']:.4f}, max {stats['max']:.4f}, n={stats['count']})"
        )

    replicas = summary.get("replicas", [])
    by_grid = summary.get("aggregate_by_grid") or {}
    if by_grid:
        key = summary.get("grid_key")
        for value, stats in by_grid.items():
            members = [r for r in replicas if repr(float(r["hparams"][key])) == value]
            diverged = sum(r["diverged"] for r in members)
            lines.append(
                f"  {key}={value}: final {metric} {fmt(stats.get(metric, {}))}; "
                f"diverged {diverged}/{len(members)}"
            )
    else:
        stats = (summary.get("aggregate") or {}).get(metric, {})
        diverged = sum(r["diverged"] for r in replicas)
        lines.append(f"  final {metric} {fmt(stats)}; diverged {diverged}/{len(replicas)}")
    if by_grid and len(by_grid) >= 2:
        lines.extend(_paired_differences(summary, metric))
    objective = summary.get("objective")
    if objective is not None and not (isinstance(objective, float) and math.isnan(objective)):
        lines.append(f"  objective ({metric}, {summary.get('objective_mode')}): {objective:.4f}")
    if workdir is not None:
        lines.append(f"  outputs: {workdir}")
    return "\n".join(lines)


def _paired_differences(summary: Mapping[str, Any], metric: str) -> list[str]:
    """Mean over seeds of (value at grid value g) - (value at the first grid value)."""
    key = summary["grid_key"]
    by_seed: dict[int, dict[float, float]] = {}
    for replica in summary["replicas"]:
        value = replica["final"].get(metric)
        if value is not None:
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
    summary = train_and_evaluate(cfg, workdir)
    if summary.get("already_finished"):
        print(f"already finished: {workdir} (objective {summary.get('objective')})")
    else:
        print(describe(summary, workdir))
    return summary


@checked_command_line(CONFIG_DIR, "config")  # the whole command line, before any job
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Entry point; bad input -> `error: <message>` on stderr and exit code 2."""
    from repro.engine.runtime import configure_compilation_cache, configure_cpu_devices

    # Before JAX starts its CPU client: one XLA host device per core, so that the replicas,
    # sharded over devices, run on every core (trainer.cpu_devices=1 turns this off).
    configure_cpu_devices(cfg.trainer.get("cpu_devices", "auto"))
    configure_compilation_cache(cfg.paths.get("jax_cache_dir"))
    try:
        summary = train(cfg)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    objective = summary.get("objective")
    return None if objective is None else float(objective)


if __name__ == "__main__":
    main()
