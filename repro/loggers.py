"""Experiment loggers: none (default, nothing touches the network) and Weights & Biases.

`metrics.jsonl` is always written by the engine and stays the source for figures; a logger
only mirrors it. W&B: mode online/offline/disabled from `logger.mode`; the full resolved
config; `group` = experiment or sweep name; a run id derived from the output directory, so a
requeued or restarted job resumes the same W&B run (`resume="allow"`); `finish()` is always
called (the engine calls it in a `finally`), so multirun jobs never log into each other.
"""

from __future__ import annotations

import hashlib
import netrc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from repro.errors import ConfigError

LOGGER_NAMES = ("none", "wandb")
WANDB_MODES = ("online", "offline", "disabled")
WANDB_DEFAULT_HOST = "https://api.wandb.ai"


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


def _netrc_has_host(path: Path, host: str) -> bool:
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return path.is_file()  # unreadable or malformed: W&B itself reports on it


def check_wandb_credentials(
    spec: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> None:
    """ConfigError when `logger=wandb logger.mode=online` finds no W&B credentials where W&B
    looks for them ($WANDB_API_KEY, $WANDB_IDENTITY_TOKEN_FILE, the netrc file ($NETRC or
    ~/.netrc) entry of $WANDB_BASE_URL's host): checked before anything connects, because
    W&B would otherwise prompt for a key (or fail) in a job that may already have trained."""
    if spec.get("name") != "wandb" or spec.get("mode", "offline") != "online":
        return
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return
    host = urlparse(env.get("WANDB_BASE_URL") or WANDB_DEFAULT_HOST).hostname or ""
    home_dir = Path(home) if home is not None else Path.home()
    if env.get("NETRC"):  # as for W&B: the variable, when set, is the only netrc file
        candidates = [Path(env["NETRC"]).expanduser()]
    else:
        candidates = [home_dir / ".netrc", home_dir / "_netrc"]
    if any(_netrc_has_host(path, host) for path in candidates):
        return
    raise ConfigError(
        f"logger.mode=online found no W&B credentials (no $WANDB_API_KEY, no {host} entry in "
        f"{candidates[0]}): run `wandb login` once, or log locally with logger.mode=offline "
        "(upload later with `wandb sync`)"
    )


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
        check_wandb_credentials(spec)
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
