"""Checks of the whole command line before Hydra starts any job of `python -m repro.train`.

Hydra reports a mistyped key in four lines, an unknown experiment by listing only the
top-level ones, and a multirun validates each job only when that job starts (after the jobs
before it trained). `check_command_line` composes every job the command line asks for with
Hydra's compose API, exactly as the sweeper will, and raises one `ConfigError` line for:

* a key that does not exist (`trainer.epoch=3`), with the closest valid keys (difflib), and
  `+key=value` for a key that exists;
* an experiment that does not exist, listing every `<paper>/<cell>` experiment;
* an invalid job, whichever job of a sweep it is (`validate_config`), before any job runs;
* an explicit value of the key that `replicas.grid.key` sweeps (the grid would replace it);
* jobs of one sweep whose replica seed ranges `[seed, seed + replicas.seeds)` overlap.

Command lines with Hydra's own options (`--help`, `--cfg`, `--config-dir`, ...) and sweepers
other than the basic one are left to Hydra unchecked, as are composition errors this module
does not recognise (Hydra then reports them itself).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.errors import ConfigError
from repro.run_identity import override_key, result_config

MULTIRUN_FLAGS = ("-m", "--multirun")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_NOT_A_KEY = re.compile(r"Could not override '([^']+)'")
_ALREADY_A_KEY = re.compile(r"Could not append to config. An item is already at '([^']+)'")


class LeftToHydraError(Exception):
    """The command line is one Hydra reports on itself (its own options, its own errors)."""


# ---------------------------------------------------------------------------- messages


def experiment_names(config_dir: Path) -> list[str]:
    """Every `experiment=` choice: `demo`, `smoke`, ..., `<paper>/<cell>`, sorted."""
    root = Path(config_dir) / "experiment"
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def group_options(config_dir: Path, group: str) -> list[str]:
    """The options of config group `group` (its yaml files, without sub-groups), sorted."""
    root = Path(config_dir) / group
    return sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []


def describe_experiments(names: Sequence[str]) -> str:
    """`demo, smoke, jasper/{smoke}, neelakantan2015/{he_clip10, ...}`: one phrase."""
    top = [n for n in names if "/" not in n]
    papers: dict[str, list[str]] = {}
    for name in names:
        if "/" in name:
            paper, cell = name.rsplit("/", 1)
            papers.setdefault(paper, []).append(cell)
    parts = top + [f"{paper}/{{{', '.join(cells)}}}" for paper, cells in papers.items()]
    return ", ".join(parts)


def dotted_keys(cfg: Any, prefix: str = "") -> Iterator[str]:
    """Every key of a (composed, unresolved) config as a dotted path, nodes included."""
    if not isinstance(cfg, DictConfig):
        return
    for key in cfg:
        dotted = f"{prefix}{key}"
        yield dotted
        yield from dotted_keys(cfg._get_node(key), f"{dotted}.")


def closest_keys(key: str, cfg: DictConfig, limit: int = 3) -> list[str]:
    """The valid keys closest to `key` (difflib ratio >= 0.6 and within 0.1 of the best):
    keys of the same parent node first, then the whole config."""
    keys = [k for k in dotted_keys(cfg) if not k.startswith("hydra.")]
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in keys if parent and k.startswith(f"{parent}.")]
    for pool in (siblings, keys):
        scored = sorted(
            ((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in pool), reverse=True
        )
        if scored and scored[0][0] >= 0.6:
            return [k for score, k in scored[:limit] if score >= max(0.6, scored[0][0] - 0.1)]
    return []


# ---------------------------------------------------------------------------- composition


def split_argv(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """(multirun, overrides) of a command line; LeftToHydraError for Hydra's own options."""
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    rest = [arg for arg in argv if arg not in MULTIRUN_FLAGS]
    if any(arg.startswith("-") for arg in rest):
        raise LeftToHydraError
    return multirun, rest


class JobComposer:
    """Composes job configs with Hydra's compose API, turning the composition errors of new
    users into one-line `ConfigError`s."""

    def __init__(self, config_dir: Path, config_name: str) -> None:
        self.config_dir = Path(config_dir)
        self.config_name = config_name

    def __call__(self, overrides: Sequence[str], hydra_node: bool = False) -> DictConfig:
        from hydra import compose
        from hydra.errors import HydraException, MissingConfigException

        try:
            return compose(self.config_name, list(overrides), return_hydra_config=hydra_node)
        except MissingConfigException as error:
            missing = error.missing_cfg_file or ""
            if missing.startswith("experiment/"):
                choice = missing.split("/", 1)[1]
                names = describe_experiments(experiment_names(self.config_dir))
                raise ConfigError(f"no experiment {choice!r}; experiment= takes: {names}") from None
            group, _, choice = missing.rpartition("/")
            options = group_options(self.config_dir, group) if group else []
            if options:
                # e.g. optimizer=foo: name the group and what it takes, in one line
                raise ConfigError(
                    f"{group}={choice}: no such option; {group}= takes: {', '.join(options)}"
                ) from None
            raise LeftToHydraError from error
        except HydraException as error:
            if match := _ALREADY_A_KEY.search(str(error)):
                key = match.group(1)
                given = next((o for o in overrides if override_key(o) == key), key)
                raise ConfigError(
                    f"{given}: {key} already exists, so '+' (add a key) does not apply; set it "
                    f"with {given.lstrip('+')}"
                ) from None
            if match := _NOT_A_KEY.search(str(error)):
                raise self._unknown_key(match.group(1), overrides) from None
            raise LeftToHydraError from error

    def _unknown_key(self, key: str, overrides: Sequence[str]) -> ConfigError:
        given = next((o for o in overrides if override_key(o) == key), key)
        rest = [o for o in overrides if o != given]
        try:
            cfg = self(rest)
        except (ConfigError, LeftToHydraError):
            cfg = None
        close = closest_keys(key, cfg) if cfg is not None else []
        hint = f"closest valid keys: {', '.join(close)}" if close else "see them with --cfg job"
        return ConfigError(f"{given}: no config key {key!r}; {hint}")


def sweep_jobs(compose_job: JobComposer, overrides: Sequence[str]) -> list[list[str]]:
    """The override lists of the jobs a basic-sweeper multirun launches, in its order
    (`hydra.sweeper.params` of the config, then the command line, as BasicSweeper does)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeper = compose_job(fixed, hydra_node=True).hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        raise LeftToHydraError
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides([*params, *overrides]), None)
    return batch


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved job config without the `hydra` node, as plain Python values."""
    from omegaconf.errors import OmegaConfBaseException

    from repro.engine.instantiate import to_plain

    kept = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        return to_plain(OmegaConf.to_container(kept, resolve=True))
    except OmegaConfBaseException as error:  # e.g. a missing ${oc.env:...}: Hydra says so
        raise LeftToHydraError from error


# ---------------------------------------------------------------------------- the checks


def check_grid_override(cfg: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """ConfigError when the command line sets the key that the replica grid sweeps: every
    replica takes its value from `replicas.grid.values`, so the explicit value would be lost."""
    grid = (cfg.get("replicas") or {}).get("grid") or {}
    key = grid.get("key")
    if key is None:
        return
    for override in overrides:
        if override.startswith("~") or override_key(override) != key:
            continue
        value = override.split("=", 1)[1]
        values = list(grid.get("values") or [])
        raise ConfigError(
            f"{override} is replaced by the replica grid replicas.grid.key={key} (values "
            f"{values}); to train {key}={value} alone add replicas.grid.key=null, to train it "
            f"next to the others add it to replicas.grid.values"
        )


def check_seed_ranges(jobs: Sequence[tuple[Sequence[str], Mapping[str, Any]]]) -> None:
    """ConfigError when two jobs of one sweep that differ only in `seed` train overlapping
    replica seeds: job seed s trains seeds s .. s + replicas.seeds - 1."""
    groups: dict[str, list[tuple[int, int]]] = {}
    for _, cfg in jobs:
        identity = result_config(cfg)
        identity.pop("seed", None)
        seeds = int((cfg.get("replicas") or {}).get("seeds", 1))
        key = json.dumps(identity, sort_keys=True, default=str)
        groups.setdefault(key, []).append((int(cfg["seed"]), seeds))
    for ranges in groups.values():
        ranges.sort()
        for (first, count), (second, _) in itertools.pairwise(ranges):
            if second < first + count:
                raise ConfigError(
                    f"jobs seed={first} and seed={second} with replicas.seeds={count} train "
                    f"overlapping replica seeds ({first}-{first + count - 1} and "
                    f"{second}-{second + count - 1}); sweep seeds replicas.seeds apart "
                    f"(seed={first},{first + count}) or raise replicas.seeds instead"
                )


def check_jobs(compose_job: JobComposer, jobs: Sequence[Sequence[str]]) -> None:
    """Compose and validate every job; one ConfigError naming the first invalid job."""
    checked: list[tuple[Sequence[str], dict[str, Any]]] = []
    invalid: list[tuple[int, Sequence[str], str]] = []
    for index, overrides in enumerate(jobs):
        try:
            cfg = plain_config(compose_job(overrides))
            # Imported only now: it imports JAX (seconds), which a mistyped key need not wait for.
            from repro.engine.config_validation import validate_config

            validate_config(cfg)  # its contract: a one-line ValueError for bad input
            check_grid_override(cfg, overrides)
        except ValueError as error:
            invalid.append((index, overrides, str(error)))
            continue
        checked.append((overrides, cfg))
    if invalid and len(jobs) == 1:
        raise ConfigError(invalid[0][2])
    if invalid:
        index, overrides, message = invalid[0]
        swept = [o for o in overrides if o in _varying(jobs)] or list(overrides)
        more = f" (and {len(invalid) - 1} more invalid jobs)" if len(invalid) > 1 else ""
        raise ConfigError(
            f"job {index + 1} of {len(jobs)} ({' '.join(swept)}): {message}{more}; no job was run"
        )
    check_seed_ranges(checked)


def _varying(jobs: Sequence[Sequence[str]]) -> set[str]:
    """Overrides that are not common to every job (the swept values)."""
    common = set(jobs[0]).intersection(*map(set, jobs[1:]))
    return {o for job in jobs for o in job if o not in common}


@contextmanager
def _hydra_initialized(config_dir: Path) -> Iterator[None]:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name="train"):
        yield
    GlobalHydra.instance().clear()


def check_command_line(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """ConfigError (one line) for the traps above; returns silently for a command line that
    is fine or that Hydra itself reports on."""
    try:
        multirun, overrides = split_argv(argv)
        with _hydra_initialized(config_dir):
            compose_job = JobComposer(config_dir, config_name)
            jobs = sweep_jobs(compose_job, overrides) if multirun else [overrides]
            check_jobs(compose_job, jobs)
    except LeftToHydraError:
        return


def checked_command_line(config_dir: Path, config_name: str) -> Callable[[Callable], Callable]:
    """Decorator for the `@hydra.main` function: `check_command_line(sys.argv[1:])` first;
    a ConfigError prints `error: <message>` and exits with code 2 before Hydra starts."""

    def decorate(hydra_main: Callable) -> Callable:
        @functools.wraps(hydra_main)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:  # called as the program, not with a config
                try:
                    check_command_line(sys.argv[1:], config_dir, config_name)
                except ConfigError as error:
                    print(f"error: {error}", file=sys.stderr)
                    sys.exit(2)
            return hydra_main(*args, **kwargs)

        return run

    return decorate
