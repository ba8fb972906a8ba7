"""The run spec: trainer defaults stated once, unknown trainer keys, trainer value checks."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from repro.engine.config_validation import validate_trainer
from repro.engine.run_spec import TRAINER_KEYS, TrainerSpec, complete_trainer, run_spec
from repro.errors import ConfigError

# The smallest config a Python caller can write: no trainer settings beyond the required.
PARTIAL = {
    "name": "partial",
    "seed": 0,
    "task": "classification",
    "data": {"_target_": "repro.data.load_sklearn_digits"},
    "model": {"_target_": "repro.models.Linear"},
    "optimizer": {"_target_": "optax.sgd", "learning_rate": 0.1},
    "noise": {"kind": "none"},
    "trainer": {"epochs": 2, "batch_size": 64},
}


def test_cli_trainer_node_is_the_spec_defaults(compose_cfg) -> None:
    """The CLI's `trainer` node comes from TrainerSpec: same keys, same values."""
    cfg = compose_cfg("~experiment", tiny=False)
    assert OmegaConf.to_container(cfg.trainer) == dataclasses.asdict(TrainerSpec())


def test_python_caller_with_a_partial_config_gets_the_cli_defaults(compose_cfg) -> None:
    partial = run_spec(PARTIAL).trainer
    cli = run_spec(compose_cfg("~experiment", "trainer.epochs=2", tiny=False)).trainer
    assert partial == cli
    # The values that used to disagree between the YAML and the code.
    assert partial.chunks_per_epoch == 4 and partial.checkpoint_min_interval_s == 30


@pytest.mark.parametrize(
    ("trainer", "closest"),
    [({"epoch": 3}, "trainer.epochs"), ({"chunks_per_epok": 2}, "trainer.chunks_per_epoch")],
)
def test_unknown_trainer_key_names_the_closest(trainer: dict, closest: str) -> None:
    with pytest.raises(ConfigError, match=rf"trainer\.{next(iter(trainer))} is not a trainer "):
        complete_trainer(trainer)
    with pytest.raises(ConfigError) as info:
        run_spec({**PARTIAL, "trainer": {**PARTIAL["trainer"], **trainer}})
    assert closest in str(info.value) and "\n" not in str(info.value)


def test_appended_trainer_key_on_the_command_line_is_refused(compose_cfg) -> None:
    with pytest.raises(ConfigError, match=r"trainer\.epoch is not .*closest: trainer\.epochs"):
        run_spec(compose_cfg("+trainer.epoch=3"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cpu_devices", "abc", "trainer.cpu_devices must be 'auto' or an integer >= 1"),
        ("cpu_devices", 0, "trainer.cpu_devices must be 'auto' or an integer >= 1, got 0"),
        ("overwrite", "maybe", "trainer.overwrite must be true or false"),
        ("shared_data_order", 1, "trainer.shared_data_order must be true or false"),
        ("replica_devices", 0, "trainer.replica_devices must be an integer >= 1"),
        ("chunks_per_epoch", 0, "trainer.chunks_per_epoch must be an integer >= 1"),
    ],
)
def test_bad_trainer_values_are_config_errors(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        validate_trainer(complete_trainer({key: value}))


def test_the_defaults_pass_validation() -> None:
    validate_trainer(complete_trainer({}))
    assert set(complete_trainer({})) == set(TRAINER_KEYS)
