"""Expansion of `replicas: {seeds, grid}` into the R replicas trained in one program.

Layout (grid-major, seed-minor): replica ``i`` has grid index ``g = i // seeds`` and seed
``seed + (i % seeds)``. Replicas that share a seed index share their initial parameters,
their gradient-noise and dropout keys and (with a per-replica data order) their data order
across grid values, so grid comparisons are paired by seed. A replica's randomness depends
only on its seed, never on its index: replica ``i`` of a multi-replica run reproduces a
single-replica run with ``seed=<that replica's seed>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.errors import ConfigError

# Grid keys must be consumed inside the vmapped replica function, where they are traced.
# Structural keys (model.depth, trainer.batch_size, data.*) change the program: sweep those
# with Hydra (`-m key=a,b`) instead.
GRID_KEY_PREFIXES = ("optimizer.", "noise.")
GRID_KEYS_EXACT = ("trainer.clip_norm",)
GRID_KEYS_STATIC = ("optimizer.schedule.", "optimizer._target_", "noise._target_", "noise.kind")

# Stream ids folded into a replica's seed key, one per consumer of randomness.
STREAM_INIT = 0
STREAM_DROPOUT = 1
STREAM_GRADIENT_NOISE = 2
STREAM_EXAMPLE_WEIGHTS = 3
STREAM_DATA_ORDER = 4


@dataclasses.dataclass(frozen=True)
class ReplicaPlan:
    """Seeds and hyperparameter values of the R replicas of one run."""

    seeds: tuple[int, ...]  # seed of each replica, length R
    grid_key: str | None
    grid_values: tuple[float, ...]  # distinct grid values (empty without a grid)
    grid_index: tuple[int, ...]  # grid index of each replica, length R

    @property
    def num_replicas(self) -> int:
        return len(self.seeds)

    @property
    def seeds_per_value(self) -> int:
        return self.num_replicas // max(1, len(self.grid_values))

    def hparams(self, index: int) -> dict[str, float]:
        """The grid hyperparameter of replica `index` (empty without a grid)."""
        if self.grid_key is None:
            return {}
        return {self.grid_key: self.grid_values[self.grid_index[index]]}

    def hparam_arrays(self) -> dict[str, jax.Array]:
        """Grid values as float32[R] arrays, the vmapped argument of the replica function."""
        if self.grid_key is None:
            return {}
        values = np.asarray([self.grid_values[g] for g in self.grid_index], np.float32)
        return {self.grid_key: jnp.asarray(values)}

    def seed_keys(self) -> jax.Array:
        """Typed PRNG keys [R], one per replica, from the replica's seed alone."""
        return jax.vmap(jax.random.key)(jnp.asarray(self.seeds, jnp.uint32))


def stream_keys(seed_keys: jax.Array, stream: int) -> jax.Array:
    """Per-replica keys of one randomness stream (init, dropout, noise, weights, data)."""
    return jax.vmap(lambda k: jax.random.fold_in(k, stream))(seed_keys)


def validate_grid_key(key: str) -> None:
    """ConfigError unless `key` names a hyperparameter the replica function can trace."""
    if key.startswith(GRID_KEYS_STATIC):
        raise ConfigError(
            f"replicas.grid.key={key!r} changes the compiled program; sweep it with Hydra "
            f"multirun instead (e.g. -m {key}=a,b)"
        )
    if not (key.startswith(GRID_KEY_PREFIXES) or key in GRID_KEYS_EXACT):
        raise ConfigError(
            f"replicas.grid.key must start with one of {GRID_KEY_PREFIXES} or be one of "
            f"{GRID_KEYS_EXACT}, got {key!r}; sweep other keys with Hydra multirun"
        )


def expand_replicas(
    seed: int, seeds: int, grid_key: str | None, grid_values: Sequence[Any] | None
) -> ReplicaPlan:
    """Build the plan: R = seeds * max(1, len(grid_values)) replicas, grid-major."""
    if int(seeds) < 1:
        raise ConfigError(f"replicas.seeds must be >= 1, got {seeds}")
    if int(seed) < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    values: tuple[float, ...] = ()
    if grid_key is not None:
        validate_grid_key(grid_key)
        if not grid_values:
            raise ConfigError(
                f"replicas.grid.values must be a non-empty list when grid.key={grid_key!r}"
            )
        try:
            values = tuple(float(v) for v in grid_values)
        except (TypeError, ValueError):
            raise ConfigError(
                f"replicas.grid.values must be numbers, got {list(grid_values)!r}"
            ) from None
    num_values = max(1, len(values))
    replica_seeds = tuple(int(seed) + s for _ in range(num_values) for s in range(int(seeds)))
    grid_index = tuple(g for g in range(num_values) for _ in range(int(seeds)))
    return ReplicaPlan(
        seeds=replica_seeds,
        grid_key=grid_key,
        grid_values=values,
        grid_index=grid_index if values else tuple(0 for _ in replica_seeds),
    )


def plan_from_config(cfg: Mapping[str, Any]) -> ReplicaPlan:
    """`expand_replicas` from the plain top-level config (keys `seed`, `replicas`)."""
    replicas = cfg.get("replicas") or {}
    grid = replicas.get("grid") or {}
    return expand_replicas(
        seed=cfg.get("seed", 0),
        seeds=replicas.get("seeds", 1),
        grid_key=grid.get("key"),
        grid_values=grid.get("values"),
    )
