"""The `distributed` node and the accelerator-memory setting, checked before JAX starts
(repro/engine/distributed.py, runtime.py); the two-process runs are in test_multiprocess.py."""

from __future__ import annotations

import pytest

from repro.engine import distributed
from repro.engine.runtime import MEMORY_FRACTION_VARIABLE, configure_memory_fraction
from repro.errors import ConfigError
from repro.run_identity import is_result_key

EXPLICIT = {"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}


def test_one_process_by_default() -> None:
    assert distributed.validate(None)["enabled"] is False
    assert distributed.initialize(None) is None
    assert distributed.initialize({"enabled": False}) is None


def test_explicit_group_enables_it() -> None:
    spec = distributed.validate(EXPLICIT)
    assert spec["enabled"] is True and spec["process_id"] == 3
    assert distributed.validate({**EXPLICIT, "coordinator_address": "[::1]:80"})["enabled"]
    # All three left to the cluster (SLURM, TPU pod): only enabled=true.
    assert distributed.validate({"enabled": True})["num_processes"] is None


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"num_processes": 2}, "distributed.num_processes is set but distributed."),
        ({**EXPLICIT, "process_id": 4}, "distributed.process_id must be in [0, 3]"),
        ({**EXPLICIT, "process_id": -1}, "distributed.process_id must be an integer >= 0"),
        ({**EXPLICIT, "num_processes": 0}, "distributed.num_processes must be an integer >= 1"),
        ({**EXPLICIT, "coordinator_address": "host"}, "must be host:port"),
        ({**EXPLICIT, "coordinator_address": "host:70000"}, "must be host:port"),
        ({"initialization_timeout_s": 0}, "initialization_timeout_s must be an integer >= 1"),
        ({"enabled": "yes"}, "distributed.enabled must be true or false"),
        ({"processes": 2}, "distributed.processes is not a setting"),
    ],
)
def test_bad_groups_are_one_line_config_errors(node: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        distributed.validate(node)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_topology_is_not_part_of_a_runs_identity() -> None:
    assert not is_result_key("distributed.process_id")
    assert not is_result_key("trainer.memory_fraction")
    assert is_result_key("trainer.data_devices")  # it changes float rounding


def test_memory_fraction_sets_the_variable_unless_the_environment_has_one(monkeypatch) -> None:
    monkeypatch.delenv(MEMORY_FRACTION_VARIABLE, raising=False)
    assert configure_memory_fraction(None) is None
    assert configure_memory_fraction(0.3) == 0.3
    import os

    assert os.environ[MEMORY_FRACTION_VARIABLE] == "0.3"
    monkeypatch.setenv(MEMORY_FRACTION_VARIABLE, "0.5")
    assert configure_memory_fraction(0.2) is None
    assert os.environ[MEMORY_FRACTION_VARIABLE] == "0.5"


@pytest.mark.parametrize("bad", [0, 1.5, "half"])
def test_bad_memory_fraction_is_a_config_error(bad: object) -> None:
    from repro.engine.config_validation import validate_trainer
    from repro.engine.run_spec import complete_trainer

    with pytest.raises(ConfigError, match=r"trainer.memory_fraction must be in \(0, 1\] or null"):
        validate_trainer(complete_trainer({"memory_fraction": bad}))
