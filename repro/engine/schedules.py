"""Learning-rate schedules from the `optimizer.schedule` config node, and batch-size scaling.

All schedules take the peak learning rate ``lr`` (``optimizer.learning_rate``, possibly a
traced grid value) and durations in epochs, converted to optimizer steps with the run's
steps per epoch; ``T`` below is the total number of steps, ``W`` the warmup steps.

- constant:           lr
- warmup_polynomial:  lr * t / W for t < W, then
                      end + (lr - end) * (1 - (t - W) / (T - W))^power, end = end_factor * lr
                      (NovoGrad/Jasper use power 2)
- warmup_cosine:      linear warmup, then cosine decay from lr to end_factor * lr at T
- piecewise:          lr * factors[k] after boundaries_epochs[k] (step decay)

`optimizer.batch_scaling` (optional) states learning rates at a base batch size b0 and scales
them to the run's batch B before any schedule: lr * (B / b0) (`linear`, Goyal et al. 2017) or
lr * sqrt(B / b0) (`sqrt`, the rule usually paired with adaptive optimizers; Hoffer et al.
2017); `none` leaves lr as it is. A replica grid over `optimizer.learning_rate` is then a grid
of base learning rates, the same at every batch size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

SCHEDULES = ("constant", "warmup_polynomial", "warmup_cosine", "piecewise")
BATCH_SCALING_RULES = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}  # rule -> power of B / b0


def validate_batch_scaling(spec: Mapping[str, Any] | None) -> None:
    """ValueError naming `optimizer.batch_scaling.<key>` for a bad rule or base batch size."""
    if spec is None:
        return
    if not isinstance(spec, Mapping):
        raise ValueError(
            "optimizer.batch_scaling must be a node {rule, base_batch_size} or null, "
            f"got {spec!r}"
        )
    unknown = sorted(set(spec) - {"rule", "base_batch_size"})
    if unknown:
        raise ValueError(
            f"optimizer.batch_scaling has unknown keys {unknown} (allowed: rule, base_batch_size)"
        )
    rule = spec.get("rule", "none")
    if rule not in BATCH_SCALING_RULES:
        raise ValueError(
            f"optimizer.batch_scaling.rule must be one of {list(BATCH_SCALING_RULES)}, got {rule!r}"
        )
    base = spec.get("base_batch_size")
    if rule != "none" and (isinstance(base, bool) or not isinstance(base, int) or base < 1):
        raise ValueError(
            f"optimizer.batch_scaling.base_batch_size must be an integer >= 1, got {base!r}"
        )


def batch_scaling_factor(spec: Mapping[str, Any] | None, batch_size: int | None) -> float:
    """(B / b0)^p of `optimizer.batch_scaling` (p = 1 linear, 1/2 sqrt); 1 without scaling."""
    if not spec or spec.get("rule", "none") == "none" or batch_size is None:
        return 1.0
    power = BATCH_SCALING_RULES[spec["rule"]]
    return float((int(batch_size) / int(spec["base_batch_size"])) ** power)


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
