"""Whole-config validation, run before any data loading or compilation.

Every check raises ``ConfigError`` with one line naming the full config key, the value and the
allowed range, e.g. ``optimizer.learning_rate must be > 0, got -1.0``. Checks that need the
data (batch size vs. training-set size) live in `validate_against_data`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from repro.engine import distributed
from repro.engine.instantiate import get_dotted
from repro.engine.optimizers import NOISE_KINDS
from repro.engine.replicas import plan_from_config
from repro.engine.run_spec import RESIDENT_SPLIT, complete_trainer
from repro.engine.schedules import validate_batch_scaling, validate_schedule
from repro.engine.tasks import TASKS
from repro.errors import ConfigError
from repro.loggers import check_wandb_credentials

LOGGERS = ("none", "wandb")
WANDB_MODES = ("online", "offline", "disabled")
OBJECTIVE_REDUCE = ("mean", "median", "max", "min")
PROGRESS = ("auto", "always", "never", True, False)

# Optimizer/noise arguments with a known valid range, checked wherever they appear.
_POSITIVE = ("learning_rate",)
_NONNEGATIVE = ("eta", "gamma", "weight_decay", "eps", "eps_root", "alpha", "scale")
_UNIT_INTERVAL_OPEN = ("momentum", "b1", "b2", "decay")
# Arguments that fix shapes or switch code paths: never traced, so never a replica grid key.
_POSITIVE_INT = ("ghost_size", "num_noisy", "batch_size")
_SWITCHES = ("nesterov", "anneal", "centered", "grad_averaging", "decoupled_weight_decay")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _require_int(key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")


def _require_number(key: str, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def check_hparam(key: str, value: Any) -> None:
    """Range (or type) check of one optimizer/noise hyperparameter by its last name component."""
    leaf = key.rsplit(".", 1)[-1]
    if value is None:
        return
    if leaf in _POSITIVE_INT:
        _require_int(key, value, 1)
    if leaf in _SWITCHES and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    if leaf in _POSITIVE and _require_number(key, value) <= 0:
        raise ValueError(f"{key} must be > 0, got {value!r}")
    if leaf in _NONNEGATIVE and _require_number(key, value) < 0:
        raise ValueError(f"{key} must be >= 0, got {value!r}")
    if leaf in _UNIT_INTERVAL_OPEN and not 0 <= _require_number(key, value) < 1:
        raise ValueError(f"{key} must be in [0, 1), got {value!r}")
    if key == "trainer.clip_norm" and _require_number(key, value) <= 0:
        raise ValueError(f"{key} must be > 0 or null, got {value!r}")


def check_grid_key_is_traceable(key: str, current: Any, values: Any) -> None:
    """A replica grid value arrives as a traced float32: integers (shapes) and switches
    (code paths) cannot be grid keys; they are swept with Hydra multirun, one program each."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _SWITCHES or isinstance(current, bool):
        what, shown = "a true/false switch", "true,false"
    elif leaf in _POSITIVE_INT:
        what = "an integer setting (it fixes shapes)"
        shown = ",".join(str(int(v)) if _is_number(v) else str(v) for v in values)
    elif isinstance(current, str):
        what, shown = "a string setting", ",".join(str(v) for v in values)
    else:
        return
    raise ConfigError(
        f"replicas.grid.key={key!r} is {what}, which the replicas of one compiled program "
        f"cannot vary; sweep it with Hydra multirun instead (-m {key}={shown})"
    )


def _require_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def validate_trainer(trainer: Mapping[str, Any]) -> None:
    """ConfigError naming the first invalid `trainer.*` value of a complete trainer node
    (repro.engine.run_spec.complete_trainer); needs no JAX (the CLI checks it before JAX
    starts, trainer.cpu_devices sets up its devices)."""
    try:
        _validate_trainer(trainer)
    except ConfigError:
        raise
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _validate_trainer(trainer: Mapping[str, Any]) -> None:
    for key, low in (
        ("epochs", 1),
        ("batch_size", 1),
        ("eval_batch_size", 1),
        ("eval_every_epochs", 1),
        ("checkpoint_every_epochs", 0),
        ("checkpoint_max_to_keep", 1),
        ("chunks_per_epoch", 1),
        ("eval_train_examples", 0),
        ("data_devices", 1),
        ("stream_chunk_steps", 1),
        ("stream_prefetch", 0),
    ):
        _require_int(f"trainer.{key}", trainer[key], low)
    for key in ("checkpoint_within_epoch", "shared_data_order", "overwrite"):
        _require_bool(f"trainer.{key}", trainer[key])
    interval = trainer["checkpoint_min_interval_s"]
    if not _is_number(interval) or interval < 0:
        raise ConfigError(f"trainer.checkpoint_min_interval_s must be >= 0, got {interval!r}")
    for key in ("data_seed", "replica_devices"):
        if trainer[key] is not None:
            _require_int(f"trainer.{key}", trainer[key], 0 if key == "data_seed" else 1)
    cpu_devices = trainer["cpu_devices"]
    if cpu_devices not in ("auto", None) and (
        not isinstance(cpu_devices, int) or isinstance(cpu_devices, bool) or cpu_devices < 1
    ):
        raise ConfigError(
            f"trainer.cpu_devices must be 'auto' or an integer >= 1, got {cpu_devices!r}"
        )
    fraction = trainer["memory_fraction"]
    if fraction is not None and (not _is_number(fraction) or not 0 < fraction <= 1):
        raise ConfigError(f"trainer.memory_fraction must be in (0, 1] or null, got {fraction!r}")
    check_hparam("trainer.clip_norm", trainer["clip_norm"])
    if trainer["progress"] not in PROGRESS:
        raise ConfigError(
            f"trainer.progress must be one of auto/always/never, got {trainer['progress']!r}"
        )
    if trainer["resident_split"] not in RESIDENT_SPLIT:
        raise ConfigError(
            f"trainer.resident_split must be one of {'/'.join(RESIDENT_SPLIT)}, "
            f"got {trainer['resident_split']!r}"
        )
    if trainer["resident_split"] == "split" and trainer["data_devices"] < 2:
        raise ConfigError(
            "trainer.resident_split=split needs trainer.data_devices >= 2 (the sets are split "
            f"over the data devices), got data_devices={trainer['data_devices']}"
        )
    if trainer["divergence_check"] not in ("loss", "full"):
        raise ConfigError(
            "trainer.divergence_check must be 'loss' or 'full', "
            f"got {trainer['divergence_check']!r}"
        )


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first invalid key of the plain (resolved) config."""
    try:
        _validate_config(cfg)
    except ConfigError:
        raise
    except ValueError as error:  # the one-line ValueErrors of the shared checks
        raise ConfigError(str(error)) from None


def _validate_replicas(cfg: Mapping[str, Any]) -> None:
    """replicas.seeds, and the grid key and values of replicas.grid."""
    replicas = cfg.get("replicas") or {}
    _require_int("replicas.seeds", replicas.get("seeds", 1), 1)
    plan = plan_from_config(cfg)
    if plan.grid_key is not None:
        try:
            current = get_dotted(cfg, plan.grid_key)
        except KeyError:
            group = plan.grid_key.split(".", 1)[0]
            keys = sorted(k for k in (cfg.get(group) or {}) if not k.startswith("_"))
            raise ValueError(
                f"replicas.grid.key={plan.grid_key!r} names no key of the config "
                f"({group} has: {', '.join(keys)})"
            ) from None
        check_grid_key_is_traceable(plan.grid_key, current, replicas["grid"]["values"])
        for value in plan.grid_values:
            check_hparam(plan.grid_key, value)


def _validate_optimizer(optimizer: Mapping[str, Any], epochs: int) -> None:
    """The optimizer node: target, learning rate, hyperparameter ranges, schedule, scaling."""
    if "_target_" not in optimizer:
        raise ValueError("optimizer._target_ is missing (choose one with optimizer=<name>)")
    if "learning_rate" not in optimizer:
        raise ValueError("optimizer.learning_rate is missing")
    for key, value in optimizer.items():
        if key not in ("schedule", "batch_scaling") and not key.startswith("_"):
            check_hparam(f"optimizer.{key}", value)
    validate_schedule(optimizer.get("schedule"), epochs)
    validate_batch_scaling(optimizer.get("batch_scaling"))


def _validate_config(cfg: Mapping[str, Any]) -> None:
    if not isinstance(cfg.get("name"), str) or not cfg["name"]:
        raise ValueError(f"name must be a non-empty string, got {cfg.get('name')!r}")
    _require_int("seed", cfg.get("seed"), 0)
    if cfg.get("task") not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {cfg.get('task')!r}")

    trainer = complete_trainer(cfg.get("trainer"))
    validate_trainer(trainer)
    distributed.validate(cfg.get("distributed"))

    _validate_replicas(cfg)
    _validate_optimizer(cfg.get("optimizer") or {}, int(trainer["epochs"]))

    noise = cfg.get("noise") or {}
    kind = noise.get("kind", "none")
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise.kind must be one of {NOISE_KINDS}, got {kind!r}")
    if kind != "none" and "_target_" not in noise:
        raise ValueError(f"noise._target_ is missing for noise.kind={kind!r}")
    for key, value in noise.items():
        if not key.startswith("_") and key != "kind":
            check_hparam(f"noise.{key}", value)

    model = cfg.get("model") or {}
    if "_target_" not in model:
        raise ValueError("model._target_ is missing (choose one with model=<name>)")
    data = cfg.get("data") or {}
    if "_target_" not in data:
        raise ValueError("data._target_ is missing (choose one with data=<name>)")
    if trainer["data_devices"] > 1 and not trainer["shared_data_order"]:
        raise ValueError(
            "trainer.data_devices > 1 needs trainer.shared_data_order=true (the batch shared "
            "by the replicas is what is split over the data devices)"
        )
    if data.get("stream") and data.get("n_validation") is not None:
        raise ValueError(
            f"data.n_validation={data['n_validation']!r} needs a resident data set; a stream "
            f"(data {data['_target_']}) cannot hold out a validation split: set it to null"
        )
    if data.get("stream") and not trainer["shared_data_order"]:
        raise ValueError(
            "trainer.shared_data_order=false cannot be used with a streamed data set (data "
            f"{data['_target_']}): a stream has one data order shared by all replicas"
        )

    logger = cfg.get("logger") or {}
    if logger.get("name", "none") not in LOGGERS:
        raise ValueError(f"logger.name must be one of {LOGGERS}, got {logger.get('name')!r}")
    if logger.get("name") == "wandb" and logger.get("mode", "offline") not in WANDB_MODES:
        raise ValueError(f"logger.mode must be one of {WANDB_MODES}, got {logger.get('mode')!r}")
    check_wandb_credentials(logger)

    objective = cfg.get("objective") or {}
    if objective.get("reduce", "mean") not in OBJECTIVE_REDUCE:
        raise ValueError(
            f"objective.reduce must be one of {OBJECTIVE_REDUCE}, got {objective.get('reduce')!r}"
        )
    if objective.get("mode") not in (None, "max", "min"):
        raise ValueError(f"objective.mode must be max or min, got {objective.get('mode')!r}")
    _require_bool("objective.include_diverged", objective.get("include_diverged", False))


def validate_against_data(cfg: Mapping[str, Any], num_train: int, examples_per_step: int) -> None:
    """Checks that need the training-set size (ConfigError naming the trainer key)."""
    batch_size = cfg["trainer"]["batch_size"]
    if examples_per_step > num_train:
        extra = (
            f" (the noise consumes {examples_per_step} examples per step)"
            if examples_per_step != batch_size
            else ""
        )
        raise ConfigError(
            f"trainer.batch_size={batch_size} is larger than the training set "
            f"({num_train} examples){extra}"
        )
    eval_train = cfg["trainer"].get("eval_train_examples", 0) or 0
    if eval_train > num_train:
        raise ConfigError(
            f"trainer.eval_train_examples must be <= the training-set size {num_train}, "
            f"got {eval_train}"
        )
