"""The run spec: one run's config in the forms the stages need, trainer defaults stated once.

`TrainerSpec` is THE statement of every `trainer.*` setting and its default. The CLI gets
the same defaults: `register_trainer_defaults()` stores them as the Hydra config group
`trainer` (option `default`) that conf/config.yaml selects, so `trainer.epochs=3` overrides a
key that exists, and `python -m repro.train --cfg job` shows them. A Python caller of
`train_and_evaluate` with a partial `trainer` node gets the same values for the keys it
leaves out. A key that is not a trainer setting (`trainer.epoch`, `+trainer.epoch=3`) is a
ConfigError naming the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repro.engine.instantiate import to_plain
from repro.errors import ConfigError

RESIDENT_SPLIT = ("auto", "split", "whole")  # trainer.resident_split (split_data.py)


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
    """`trainer:` settings of a run (types are what validation accepts; see
    repro/engine/config_validation.py for the ranges)."""

    epochs: int = 10
    batch_size: int = 64
    clip_norm: float | None = None  # gradient clipping by global norm (before the noise)
    eval_every_epochs: int = 1  # the last epoch is always evaluated
    eval_batch_size: int = 1000
    eval_train_examples: int = 0  # > 0: also evaluate on the first n training examples
    checkpoint_every_epochs: int = 1  # 0 = only at the end
    checkpoint_max_to_keep: int = 2
    checkpoint_min_interval_s: float = 30.0  # at most one checkpoint per this many s (+ last)
    checkpoint_within_epoch: bool = False  # also save mid-epoch once the interval passed
    chunks_per_epoch: int = 4  # scanned chunks per epoch (progress-bar updates)
    progress: Any = "auto"  # auto (bar after 5 s) | always | never
    shared_data_order: bool = True  # all replicas see the same batches; false: per-seed order
    data_seed: int | None = None  # seed of the shared data order; null = `seed`
    divergence_check: str = "loss"  # loss: NaN/inf loss freezes a replica; full: |grad|, |upd|
    cpu_devices: Any = "auto"  # CLI on CPU: XLA host devices (auto = one per core)
    replica_devices: int | None = None  # at most this many devices for the replica axis
    data_devices: int = 1  # > 1: each batch split over this many devices (replicas x data)
    resident_split: str = "auto"  # resident sets over the data devices: auto | split | whole
    memory_fraction: float | None = None  # GPU: share of its memory each process may take
    stream_chunk_steps: int = 16  # streamed data: steps per host-fed device call
    stream_prefetch: int = 2  # streamed data: pieces prepared ahead by a thread (0: serial)
    overwrite: bool = False  # true: delete this run's previous outputs and start afresh


TRAINER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainerSpec))


def trainer_defaults() -> dict[str, Any]:
    """Every trainer setting with its default value (the `trainer` node of the CLI config)."""
    return dataclasses.asdict(TrainerSpec())


def register_trainer_defaults() -> None:
    """Store the defaults as the Hydra config group option `trainer=default`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="trainer", name="default", node=trainer_defaults())


def closest_keys(key: str, valid: tuple[str, ...], prefix: str = "") -> str:
    """Up to three valid keys closest to a mistyped `key` (difflib), `prefix` prepended."""
    matches = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    return ", ".join(f"{prefix}{m}" for m in matches) if matches else "none close"


def complete_trainer(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `trainer` node with every default filled in; ConfigError for an unknown key."""
    node = dict(node or {})
    unknown = sorted(set(node) - set(TRAINER_KEYS))
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"trainer.{key} is not a trainer setting (closest: "
            f"{closest_keys(key, TRAINER_KEYS, 'trainer.')}; all: repro/engine/run_spec.py)"
        )
    return {**trainer_defaults(), **node}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run's config: `container` as stored in config_resolved.yaml (resolved, lists as
    lists; compared by the work-directory stage), `plain` the same with lists as tuples
    (hashable: Flax attributes, jit static arguments), `trainer` its typed trainer node."""

    container: dict[str, Any]
    plain: dict[str, Any]
    trainer: TrainerSpec

    @property
    def data_seed(self) -> int:
        """Seed of the shared data order: `trainer.data_seed`, else the run's `seed`."""
        seed = self.trainer.data_seed
        return int(self.plain["seed"] if seed is None else seed)

    @property
    def data_dir(self) -> str | None:
        return (self.plain.get("paths") or {}).get("data_dir")


def _resolved_container(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    if "hydra" in cfg:  # composed with return_hydra_config=True: not part of the run's config
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return container


def run_spec(cfg: DictConfig | Mapping[str, Any]) -> RunSpec:
    """The RunSpec of a Hydra-composed config, a DictConfig or a plain (partial) mapping;
    validates the whole config (ConfigError naming the key) before anything slow."""
    from repro.engine.config_validation import validate_config

    container = _resolved_container(cfg)
    container["trainer"] = complete_trainer(container.get("trainer"))
    plain = to_plain(container)
    try:
        validate_config(plain)
    except ConfigError:
        raise
    except ValueError as error:  # the validation stage's checks are all about the input
        raise ConfigError(str(error)) from None
    return RunSpec(container, plain, TrainerSpec(**plain["trainer"]))
