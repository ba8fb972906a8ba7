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

from collections.abc import Iterable, Mapping
from typing import Any

NON_RESULT_KEYS: tuple[str, ...] = (
    "experiment",
    "sweep",
    "sweep_name",
    "logger",
    "paths",
    "trainer.progress",
    "trainer.overwrite",
    "trainer.chunks_per_epoch",
    "trainer.checkpoint_every_epochs",
    "trainer.checkpoint_max_to_keep",
    "trainer.checkpoint_min_interval_s",
    "trainer.checkpoint_within_epoch",
    "trainer.cpu_devices",
    "trainer.replica_devices",
    "trainer.stream_chunk_steps",
    "trainer.stream_prefetch",
)


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


def result_config(container: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A plain config without the nodes named in NON_RESULT_KEYS."""
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
