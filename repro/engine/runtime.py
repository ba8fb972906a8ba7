"""Process-level JAX settings made by `python -m repro.train` before anything compiles.

- XLA host devices: one per usable core (`trainer.cpu_devices`), so that replicas sharded
  over devices (sharding.py) run on every core; XLA_FLAGS must be set before JAX starts its
  CPU client, and an XLA_FLAGS that already names the count wins.
- Accelerator memory (`trainer.memory_fraction`): JAX preallocates 75 % of a GPU's memory
  per process, so several jobs on one GPU (a local joblib sweep) fail unless each takes a
  share; XLA_PYTHON_CLIENT_MEM_FRACTION must be set before the backend starts, and one set
  in the environment wins.
- Persistent compilation cache (`paths.jax_cache_dir`): a second run of the same program
  (a resumed job, the next job of a sweep, a rerun) loads the executables instead of
  compiling them again; XLA:CPU takes seconds for a deep MLP's initialisation alone. A
  cached executable is the same program, so results are unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CPU_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configure_cpu_devices(requested: Any) -> int | None:
    """Ask XLA for `requested` host devices ("auto": one per usable core) by setting
    XLA_FLAGS, unless the flag is set already. Must run before JAX initialises its backends;
    returns the count set, or None when nothing was changed."""
    if requested in (None, False, 1, "1", "off"):
        return None
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_DEVICES_FLAG in flags:
        return None
    count = usable_cores() if requested in ("auto", True) else int(requested)
    if count <= 1:
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICES_FLAG}={count}".strip()
    return count


MEMORY_FRACTION_VARIABLE = "XLA_PYTHON_CLIENT_MEM_FRACTION"


def configure_memory_fraction(fraction: float | None) -> float | None:
    """Let each process preallocate only `fraction` of an accelerator's memory (None: JAX's
    default), unless the environment sets it already; returns the fraction set, or None."""
    if fraction is None or MEMORY_FRACTION_VARIABLE in os.environ:
        return None
    os.environ[MEMORY_FRACTION_VARIABLE] = f"{float(fraction):.4g}"
    return float(fraction)


def configure_compilation_cache(directory: str | os.PathLike[str] | None) -> Path | None:
    """Enable JAX's persistent compilation cache in `directory` (None: leave it off)."""
    if not directory:
        return None
    import jax

    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program that took noticeable time to compile, small ones included.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path
