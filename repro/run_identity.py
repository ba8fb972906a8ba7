"""What identifies a run: the settings that change what it computes, and those that do not.

One list, `NON_RESULT_KEYS`, serves every place that asks "is this the same run?": the run
directory's name (overrides of these keys stay out of it, so the same run maps to the same
directory), the resume check (a stored run whose config differs only in these is the same
run), and the figures (a run belongs to a cell when its result config matches the cell's).

An entry names a config node; it covers the node and everything below it (`logger` covers
`logger.mode`). Group choices such as `experiment=...` or `+sweep=...` are listed by their
group name: what they select is in the resolved config, and is compared there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

NON_RESULT_KEYS: tuple[str, ...] = (
    "experiment",
    "sweep",
    "sweep_name",
    "logger",
    "paths",
    "distributed",
    "trainer.progress",
    "trainer.overwrite",
    "trainer.chunks_per_epoch",
    "trainer.checkpoint_every_epochs",
    "trainer.checkpoint_max_to_keep",
    "trainer.checkpoint_min_interval_s",
    "trainer.checkpoint_within_epoch",
    "trainer.cpu_devices",
    "trainer.replica_devices",
    "trainer.resident_split",
    "trainer.memory_fraction",
    "trainer.stream_chunk_steps",
    "trainer.stream_prefetch",
)


# Where data lives is a setting of the machine (`paths`, not a result key). A value derived from
# one of these (`data.path: <paths.data_dir>/mnist.npz`) is compared relative to it, so the same
# run made in another checkout or on another machine is the same run.
LOCATION_KEYS: tuple[str, ...] = ("data_dir", "tfds_data_dir", "speech_dir")  # under `paths`


def override_key(override: str) -> str:
    """The dotted key of a command-line override: `+trainer.x=1` -> `trainer.x`,
    `optimizer/schedule=cosine` -> `optimizer.schedule`."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key.replace("/", ".")


def is_result_key(key: str) -> bool:
    """False when `key` (dotted) is, or lies below, an entry of NON_RESULT_KEYS."""
    key = override_key(key)
    return not any(key == entry or key.startswith(f"{entry}.") for entry in NON_RESULT_KEYS)


def result_overrides(overrides: Iterable[str]) -> list[str]:
    """The overrides that change what a run computes, in their given order."""
    return [override for override in overrides if is_result_key(override)]


def _locations(container: Mapping[str, Any]) -> list[tuple[str, str]]:
    paths = container.get("paths")
    if not isinstance(paths, Mapping):
        return []
    found = [
        (os.path.normpath(paths[key]), f"${{paths.{key}}}")
        for key in LOCATION_KEYS
        if isinstance(paths.get(key), str) and paths[key]
    ]
    return sorted(found, key=lambda item: -len(item[0]))  # the longest prefix first


def _relative(value: Any, locations: list[tuple[str, str]]) -> Any:
    if isinstance(value, Mapping):
        return {k: _relative(v, locations) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, locations) for v in value]
    if isinstance(value, str) and locations and os.sep in value:
        normal = os.path.normpath(value)
        for location, name in locations:
            if normal == location or normal.startswith(location + os.sep):
                return name + normal[len(location) :]
    return value


def result_config(container: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A plain config without the nodes named in NON_RESULT_KEYS; strings under a data
    location (`paths.data_dir`, `paths.tfds_data_dir`) are written relative to it."""
    if not prefix:
        container = _relative(container, _locations(container))
    kept: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if not is_result_key(dotted):
            continue
        kept[key] = result_config(value, f"{dotted}.") if isinstance(value, Mapping) else value
    return kept


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs (sorted)."""
    diffs: list[str] = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            diffs.extend(config_differences(va, vb, f"{name}."))
        elif va != vb:
            diffs.append(name)
    return diffs


def result_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Dotted keys, outside NON_RESULT_KEYS, whose values differ between two plain configs."""
    return config_differences(result_config(a), result_config(b))
