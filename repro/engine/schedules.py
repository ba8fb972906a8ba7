"""Learning-rate schedules from the `optimizer.schedule` config node.

All schedules take the peak learning rate ``lr`` (``optimizer.learning_rate``, possibly a
traced grid value) and durations in epochs, converted to optimizer steps with the run's
steps per epoch; ``T`` below is the total number of steps, ``W`` the warmup steps.

- constant:           lr
- warmup_polynomial:  lr * t / W for t < W, then
                      end + (lr - end) * (1 - (t - W) / (T - W))^power, end = end_factor * lr
                      (NovoGrad/Jasper use power 2)
- warmup_cosine:      linear warmup, then cosine decay from lr to end_factor * lr at T
- piecewise:          lr * factors[k] after boundaries_epochs[k] (step decay)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

SCHEDULES = ("constant", "warmup_polynomial", "warmup_cosine", "piecewise")


def validate_schedule(spec: Mapping[str, Any] | None, epochs: int) -> None:
    """ValueError naming `optimizer.schedule.<key>` for out-of-range values."""
    if not spec:
        return
    name = spec.get("name", "constant")
    if name not in SCHEDULES:
        raise ValueError(f"optimizer.schedule.name must be one of {SCHEDULES}, got {name!r}")
    warmup = float(spec.get("warmup_epochs", 0) or 0)
    if not 0 <= warmup <= epochs:
        raise ValueError(
            f"optimizer.schedule.warmup_epochs must be in [0, trainer.epochs={epochs}], "
            f"got {warmup}"
        )
    if float(spec.get("power", 1.0)) <= 0:
        raise ValueError(f"optimizer.schedule.power must be > 0, got {spec.get('power')}")
    end_factor = float(spec.get("end_factor", 0.0))
    if not 0 <= end_factor <= 1:
        raise ValueError(f"optimizer.schedule.end_factor must be in [0, 1], got {end_factor}")
    if name == "piecewise":
        bounds = tuple(spec.get("boundaries_epochs", ()))
        factors = tuple(spec.get("factors", ()))
        if len(bounds) != len(factors):
            raise ValueError(
                "optimizer.schedule.boundaries_epochs and factors must have the same length, "
                f"got {len(bounds)} and {len(factors)}"
            )


def build_schedule(
    spec: Mapping[str, Any] | None,
    learning_rate: float | jax.Array,
    total_steps: int,
    steps_per_epoch: int,
) -> float | jax.Array | optax.Schedule:
    """The learning rate, or an optax schedule of the optimizer step, for `spec`."""
    if not spec or spec.get("name", "constant") == "constant":
        return learning_rate
    name = spec["name"]
    warmup = round(float(spec.get("warmup_epochs", 0) or 0) * steps_per_epoch)
    end_value = learning_rate * float(spec.get("end_factor", 0.0))
    decay_steps = max(1, total_steps - warmup)
    if name == "warmup_polynomial":
        decay = optax.polynomial_schedule(
            learning_rate, end_value, float(spec.get("power", 1.0)), decay_steps
        )
    elif name == "warmup_cosine":
        alpha = float(spec.get("end_factor", 0.0))
        decay = optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=alpha)
    elif name == "piecewise":
        bounds = [round(float(b) * steps_per_epoch) for b in spec["boundaries_epochs"]]
        factors = [float(f) for f in spec["factors"]]
        return _piecewise(learning_rate, bounds, factors)
    else:
        raise ValueError(f"optimizer.schedule.name must be one of {SCHEDULES}, got {name!r}")
    if warmup == 0:
        return decay
    ramp = optax.linear_schedule(0.0, learning_rate, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def _piecewise(
    learning_rate: float | jax.Array, boundaries: list[int], factors: list[float]
) -> optax.Schedule:
    """lr * prod of the factors whose boundary has been passed (traceable in lr)."""

    def schedule(count: jax.Array) -> jax.Array:
        scale = 1.0
        for boundary, factor in zip(boundaries, factors, strict=True):
            scale = jax.numpy.where(count >= boundary, scale * factor, scale)
        return learning_rate * scale

    return schedule
