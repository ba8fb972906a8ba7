"""Runs over several processes (hosts) through `jax.distributed`: the `distributed` node.

Every process runs the same program on a global mesh over all processes' devices (JAX's
multi-controller model). `initialize` calls `jax.distributed.initialize` before JAX starts
its backends; after it, `jax.devices()` lists every process's devices, so the replica mesh
(sharding.py) spans the processes, and only `jax.local_devices()` are this process's own.

- Explicit: `distributed.coordinator_address=host:port distributed.num_processes=N
  distributed.process_id=i` (all three, e.g. several processes on one machine).
- Detected: `distributed.enabled=true` alone lets JAX read the cluster's environment (SLURM,
  Open MPI, Cloud TPU pods, Kubernetes); `hydra/launcher=slurm_multinode` starts one process
  per task.

Only process 0 writes metrics, summaries, loggers and the progress bar (`is_writer`); every
process takes part in the checkpoints (Orbax writes each process's shards) and in every
compiled program. The node lies outside the run's identity (run_identity.py): the same run on
another topology is the same run, in the same directory.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from repro.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "coordinator_address": None,
    "num_processes": None,
    "process_id": None,
    "initialization_timeout_s": 300,
    "heartbeat_timeout_s": 100,
}
_ADDRESS = re.compile(r"^(?P<host>\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")
_EXPLICIT = ("coordinator_address", "num_processes", "process_id")


def complete(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The node with every key (None: one process)."""
    merged = dict(DEFAULTS)
    merged.update(dict(node or {}))
    unknown = sorted(set(merged) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"distributed.{unknown[0]} is not a setting; allowed: {', '.join(DEFAULTS)}"
        )
    if any(merged[key] is not None for key in _EXPLICIT):
        merged["enabled"] = True
    return merged


def _check_int(key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"distributed.{key} must be an integer >= {low}, got {value!r}")


def validate(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The completed node; ConfigError (one line naming the setting) unless it describes a
    process group: all of coordinator_address/num_processes/process_id or none of them (then
    JAX detects them), process_id in [0, num_processes), positive timeouts. Needs no JAX."""
    spec = complete(node)
    if not isinstance(spec["enabled"], bool):
        raise ConfigError(f"distributed.enabled must be true or false, got {spec['enabled']!r}")
    given = [key for key in _EXPLICIT if spec[key] is not None]
    if given and len(given) != len(_EXPLICIT):
        missing = [key for key in _EXPLICIT if spec[key] is None]
        raise ConfigError(
            f"distributed.{given[0]} is set but distributed.{missing[0]} is not: give all of "
            f"{', '.join('distributed.' + k for k in _EXPLICIT)}, or none of them with "
            "distributed.enabled=true to detect them from the cluster (SLURM, TPU pod, MPI)"
        )
    for key in ("initialization_timeout_s", "heartbeat_timeout_s"):
        _check_int(key, spec[key], 1)
    if not given:
        return spec
    _check_int("num_processes", spec["num_processes"], 1)
    _check_int("process_id", spec["process_id"], 0)
    if spec["process_id"] >= spec["num_processes"]:
        raise ConfigError(
            f"distributed.process_id must be in [0, {spec['num_processes'] - 1}] for "
            f"distributed.num_processes={spec['num_processes']}, got {spec['process_id']}"
        )
    address = spec["coordinator_address"]
    match = _ADDRESS.match(str(address))
    if not isinstance(address, str) or not match or not 0 < int(match["port"]) < 65536:
        raise ConfigError(
            f"distributed.coordinator_address must be host:port (port 1-65535), got {address!r}"
        )
    return spec


def _wait_for_coordinator(address: str, timeout_s: int) -> None:
    """Poll the coordinator's port until it accepts a connection: a process other than 0
    that cannot reach it fails with one line after `timeout_s` instead of JAX's abort."""
    match = _ADDRESS.match(address)
    assert match is not None  # validated
    host, port = match["host"].strip("[]"), int(match["port"])
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"distributed.coordinator_address={address}: no coordinator answered "
                    f"within distributed.initialization_timeout_s={timeout_s} s "
                    f"({error.strerror or error})"
                ) from None
            time.sleep(0.2)


def initialize(node: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Join the process group the node describes (None when it describes one process).
    Must run before JAX starts its backends. Returns {process_id, num_processes, ...}."""
    spec = validate(node)
    if not spec["enabled"]:
        return None
    import jax

    if spec["process_id"] is not None and spec["process_id"] > 0:
        _wait_for_coordinator(spec["coordinator_address"], spec["initialization_timeout_s"])
    if spec["process_id"] is not None:
        print(
            f"distributed: process {spec['process_id']} of {spec['num_processes']}, coordinator "
            f"{spec['coordinator_address']} (timeout {spec['initialization_timeout_s']} s)",
            file=sys.stderr,
            flush=True,
        )
    jax.distributed.initialize(
        coordinator_address=spec["coordinator_address"],
        num_processes=spec["num_processes"],
        process_id=spec["process_id"],
        initialization_timeout=spec["initialization_timeout_s"],
        heartbeat_timeout_seconds=spec["heartbeat_timeout_s"],
    )
    return describe()


def describe() -> dict[str, Any]:
    """The process group as summary.json metadata records it."""
    import jax

    return {
        "process_id": jax.process_index(),
        "num_processes": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
    }


def is_writer() -> bool:
    """True in the process that writes the run's files (process 0; the only one without
    jax.distributed). Does not start JAX's backends by itself when JAX is not imported."""
    if "jax" not in sys.modules:
        return True
    import jax

    return jax.process_index() == 0
