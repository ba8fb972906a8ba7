"""Plain-Python views of config nodes and `_target_` calls that accept traced values.

Hydra's `instantiate` routes keyword arguments through OmegaConf, which cannot hold JAX arrays.
The engine builds optimizers *inside* the vmapped replica function, where a grid
hyperparameter (a learning rate, a noise variance eta) is a traced scalar, so it resolves the
`_target_` itself and calls it with ordinary Python keyword arguments.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

RESERVED_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def to_plain(node: Any) -> Any:
    """Resolve an OmegaConf node into dicts, tuples and scalars.

    Lists become tuples because Flax module attributes and `jit` static arguments must be
    hashable; a ListConfig reaching either fails with an unhashable-type error deep in tracing.
    """
    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {str(k): to_plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return tuple(to_plain(v) for v in node)
    return node


def get_dotted(tree: Mapping[str, Any], dotted: str) -> Any:
    """`get_dotted({"a": {"b": 1}}, "a.b") == 1`; KeyError naming the full key if absent."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of `tree` with the nested entry `dotted` replaced by `value`."""
    tree = copy.copy(tree)
    head, _, rest = dotted.partition(".")
    if rest:
        tree[head] = set_dotted(dict(tree.get(head) or {}), rest, value)
    else:
        tree[head] = value
    return tree


def target_of(spec: Mapping[str, Any]) -> Callable[..., Any]:
    """The callable named by `spec["_target_"]`."""
    if "_target_" not in spec:
        raise ValueError(f"config node has no _target_: {dict(spec)}")
    return get_object(spec["_target_"])


def kwargs_of(spec: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments of a `_target_` node: everything but reserved and excluded keys.

    Nested nodes that carry their own `_target_` are instantiated recursively.
    """
    kwargs = {}
    for key, value in spec.items():
        if key in RESERVED_KEYS or key in exclude:
            continue
        if isinstance(value, Mapping) and "_target_" in value:
            value = call_target(value)
        kwargs[key] = value
    return kwargs


def call_target(spec: Mapping[str, Any], *, exclude: tuple[str, ...] = (), **overrides: Any) -> Any:
    """Call `spec["_target_"](**kwargs, **overrides)`; overrides may be traced JAX values."""
    target = target_of(spec)
    kwargs = kwargs_of(spec, exclude)
    kwargs.update(overrides)
    return target(**kwargs)


def accepts_argument(fn: Callable[..., Any], name: str) -> bool:
    """Whether `fn` takes a parameter called `name` (or **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    if name in params:
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
