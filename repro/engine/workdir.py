"""The work-directory stage: is this directory a fresh run, one to resume, or finished?

The directory is a function of the command line (repro/train.py), so the same command finds
it again. What it may hold, and what the stage decides:

- nothing (or only Hydra's files): **fresh**;
- outputs of a run whose stored config equals this one outside `run_identity.NON_RESULT_KEYS`
  (progress bars, checkpoint cadence, devices, ...): **resume** from its latest checkpoint,
  or **finished** when it has a finished `summary.json` (the stored summary is returned);
- outputs of a run with another config: **refused** (ConfigError naming the keys that differ),
  unless `trainer.overwrite=true`, which deletes them and starts afresh.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from repro import run_identity
from repro.engine import outputs as out
from repro.engine.summary import DONE_STATUSES
from repro.errors import ConfigError


class WorkdirState(enum.Enum):
    FRESH = "fresh"
    RESUME = "resume"
    FINISHED = "finished"


@dataclasses.dataclass(frozen=True)
class Workdir:
    path: Path
    state: WorkdirState
    finished_summary: dict[str, Any] | None = None  # the stored summary when FINISHED


def _output_paths(workdir: Path) -> tuple[Path, Path, Path]:
    return workdir / out.METRICS_FILE, workdir / out.SUMMARY_FILE, workdir / out.CHECKPOINT_DIR


def _refuse_other_config(workdir: Path, container: Mapping[str, Any]) -> None:
    stored_config = workdir / out.CONFIG_FILE
    if not stored_config.exists():
        return
    stored = OmegaConf.to_container(OmegaConf.load(stored_config), resolve=False)
    assert isinstance(stored, dict)
    diffs = run_identity.result_differences(stored, container)
    if diffs:
        shown = ", ".join(diffs[:5]) + (" ..." if len(diffs) > 5 else "")
        raise ConfigError(
            f"{workdir} holds a run with a different config (differs in: {shown}); "
            "pass trainer.overwrite=true to replace it, or use another output dir"
        )


def open_workdir(path: str | Path, container: Mapping[str, Any], overwrite: bool) -> Workdir:
    """Decide what `path` holds for the run `container` (resolved config); with `overwrite`,
    delete the previous outputs first. Creates the directory."""
    workdir = Path(path)
    workdir.mkdir(parents=True, exist_ok=True)
    outputs = _output_paths(workdir)
    if overwrite:
        for file in outputs[:2]:
            file.unlink(missing_ok=True)
        shutil.rmtree(outputs[2], ignore_errors=True)
        return Workdir(workdir, WorkdirState.FRESH)
    if not any(p.exists() for p in outputs):
        return Workdir(workdir, WorkdirState.FRESH)
    _refuse_other_config(workdir, container)
    summary = out.read_summary(workdir)
    if summary is not None and summary.get("status") in DONE_STATUSES:
        return Workdir(workdir, WorkdirState.FINISHED, summary)
    return Workdir(workdir, WorkdirState.RESUME)


def save_config(workdir: Workdir, container: Mapping[str, Any]) -> None:
    """Store the run's resolved config (what the next start compares against)."""
    text = OmegaConf.to_yaml(OmegaConf.create(dict(container)))
    out.write_text_atomic(workdir.path / out.CONFIG_FILE, text)


def shared_decision(decide: Callable[[], Workdir], path: Path) -> Workdir:
    """`decide()` in process 0, its outcome in every process: with several processes sharing
    the run directory only process 0 locks, reads and writes it, and the others must start,
    resume or skip as it does. A ConfigError of process 0 (another config in the directory,
    a busy lock) stops every process with exit code 2."""
    import jax

    if jax.process_count() == 1:
        return decide()
    from jax.experimental import multihost_utils

    states = list(WorkdirState)
    code, error = -1, None
    if jax.process_index() == 0:
        try:
            code = states.index(decide().state)
        except ConfigError as refused:
            error = refused
    code = int(multihost_utils.broadcast_one_to_all(np.int32(code)))
    if error is not None:
        raise error
    if code < 0:
        raise ConfigError(f"{path}: process 0 refused the run directory (its error says why)")
    state = states[code]
    summary = out.read_summary(path) if state is WorkdirState.FINISHED else None
    return Workdir(path, state, summary)
