"""Provenance of a run: git commit, package versions, hardware, command line, times.

Everything is best-effort and local (no network): a missing git binary or a source tree
outside a repository gives null fields rather than an error.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "hydra-core",
    "omegaconf",
    "numpy",
    "wandb",
    "tensorflow-datasets",
    "scikit-learn",
)


INSTALLED_CONF = "share/repro/conf"  # where pyproject's data-files put conf/ (under a prefix)


def repo_root() -> Path:
    """The checkout the `repro` package is imported from."""
    return Path(__file__).resolve().parents[1]


def installed_config_dirs() -> list[Path]:
    """Where a non-editable install put conf/: the files of the installed distribution
    (pip's RECORD knows the prefix, --user included), then `sys.prefix`."""
    found: list[Path] = []
    try:
        files = importlib.metadata.distribution("repro").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if str(file).endswith(f"{INSTALLED_CONF}/config.yaml"):
            found.append(Path(str(file.locate())).resolve().parent)
    found.append(Path(sys.prefix) / INSTALLED_CONF)
    return found


def find_config_dir(checkout: Path, installed: list[Path]) -> Path | None:
    """The first of `checkout/conf` (a source tree or editable install) and the installed
    copies that holds config.yaml; None if none does."""
    for candidate in [checkout / "conf", *installed]:
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def config_dir() -> Path:
    """The Hydra config directory of `python -m repro.train` (see `find_config_dir`); the
    checkout's conf/ path when none is found (the CLI then says how to install)."""
    return find_config_dir(repo_root(), installed_config_dirs()) or repo_root() / "conf"


MISSING_CONFIG = (
    "repro's config directory conf/ was not found (looked in {checkout} and {installed}); "
    "install from a checkout with `pip install -e .`, or `pip install .` from a checkout "
    "(which ships conf/ to <prefix>/share/repro/conf)"
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_info() -> dict[str, Any]:
    """{"git_commit": sha or None, "git_dirty": bool or None}."""
    commit = _git("rev-parse", "HEAD")
    # Untracked files count: a new, uncommitted module changes what a run computes.
    status = _git("status", "--porcelain", "--untracked-files=normal")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """JAX backend and devices (imports jax lazily)."""
    import jax

    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "count": len(devices),
        "kinds": sorted({d.device_kind for d in devices}),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def collect(start_time: str | None = None) -> dict[str, Any]:
    """Metadata for `summary.json`; `end_time`/`wall_time_s` are added by the caller."""
    return {
        **git_info(),
        "command": command_line(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "devices": device_info(),
        "versions": package_versions(),
        "start_time": start_time or now_iso(),
    }


def command_line() -> str:
    """The command as a user would retype it: ``python -m repro.train ...`` for the app (sys.argv
    holds the script's absolute path there), else the interpreter and argv as they were."""
    program, *args = sys.argv
    if Path(program).name == "train.py" and Path(program).parent.name == "repro":
        return " ".join(["python", "-m", "repro.train", *(shlex.quote(a) for a in args)])
    return " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
