"""Process-level JAX settings made by `python -m repro.train` before anything compiles.

- XLA host devices: one per usable core (`trainer.cpu_devices`), so that replicas sharded
  over devices (sharding.py) run on every core; XLA_FLAGS must be set before JAX starts its
  CPU client, and an XLA_FLAGS that already names the count wins.
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
