"""Which runs belong to which cell: identity by result config, never by name alone.

A cell's expected config is what ``python -m repro.train experiment=<cell> <overrides>``
would run: Hydra's compose API on ``conf/`` (the same files the CLI reads), resolved. A
finished job belongs to the cell iff the experiment name matches and its
``config_resolved.yaml``, restricted to the settings that change results
(:func:`repro.run_identity.result_config`), equals the cell's. Anything else with the cell's
name (a longer ad-hoc run, a smoke run, another seed or batch size, a run from before a config
change) is a :class:`Mismatch`: listed with the differing keys, never merged.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from repro.aggregate import JobRecord
from repro.errors import ConfigError
from repro.figures.spec import Cell, PaperSpec
from repro.run_identity import config_differences, result_config

CONFIG_FILE = "config_resolved.yaml"
MAX_DIFFERENCES_SHOWN = 4


def composed_config(overrides: Sequence[str]) -> dict[str, Any]:
    """The resolved config ``python -m repro.train <overrides>`` runs (a fresh copy)."""
    return copy.deepcopy(_composed(tuple(overrides)))


@functools.lru_cache(maxsize=256)
def _composed(overrides: tuple[str, ...]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from repro.train import CONFIG_DIR  # registers the resolvers conf/ uses

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            config = compose(config_name="config", overrides=list(overrides))
        return OmegaConf.to_container(config, resolve=True)
    except (HydraException, OmegaConfBaseException) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"overrides {list(overrides)} do not compose a config of conf/: {first}"
        ) from error


def expected_config(cell: Cell, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The result config a run of ``cell`` has (``overrides``: those of the whole sweep)."""
    options = (f"experiment={cell.experiment_option}", *cell.overrides, *overrides)
    return result_config(_composed(tuple(options)))


def run_config(job: JobRecord) -> dict[str, Any] | None:
    """The job's result config (None when it has no readable config_resolved.yaml)."""
    path = Path(job.path) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return result_config(config) if isinstance(config, Mapping) else None


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "<missing>"
        node = node[part]
    return node


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A finished job named like a cell whose result config differs from the cell's."""

    job: JobRecord
    cell: str
    differences: tuple[tuple[str, Any, Any], ...]  # (key, cell's value, run's value)

    def describe(self) -> str:
        if not self.differences:
            return f"{self.job.path}: no {CONFIG_FILE}"
        shown = [f"{k}: {want!r} -> {got!r}" for k, want, got in self.differences]
        extra = len(shown) - MAX_DIFFERENCES_SHOWN
        text = "; ".join(shown[:MAX_DIFFERENCES_SHOWN]) + (f"; +{extra} more" if extra > 0 else "")
        return f"{self.job.path} ({text})"


@dataclasses.dataclass(frozen=True)
class CellRuns:
    """The finished jobs of one cell, split by identity."""

    matched: tuple[JobRecord, ...]
    mismatched: tuple[Mismatch, ...]


def match_cell(cell: Cell, jobs: Iterable[JobRecord], overrides: Sequence[str] = ()) -> CellRuns:
    """Split the finished jobs named ``cell.name`` into matching and mismatching ones."""
    candidates = [job for job in jobs if job.name == cell.name]
    if not candidates:
        return CellRuns((), ())
    expected = expected_config(cell, overrides)
    matched, mismatched = [], []
    for job in candidates:
        actual = run_config(job)
        if actual is None:
            mismatched.append(Mismatch(job, cell.key, ()))
            continue
        keys = config_differences(expected, actual)
        if keys:
            rows = tuple((key, _lookup(expected, key), _lookup(actual, key)) for key in keys)
            mismatched.append(Mismatch(job, cell.key, rows))
        else:
            matched.append(job)
    return CellRuns(tuple(matched), tuple(mismatched))


def match_paper(
    spec: PaperSpec, jobs: Sequence[JobRecord], overrides: Sequence[str] = ()
) -> dict[str, CellRuns]:
    """{cell key: its matching and mismatching finished jobs}, for every cell of ``spec``."""
    return {cell.key: match_cell(cell, jobs, overrides) for cell in spec.cells}
