r"""Mori & Ueda 2020, claim 1: covariance trace of the enhanced gradient vs plain SGD at B_eff.

Measured on the protocol's real model and data (``experiment=mori2020/sgd_b64``: the 2 x 100
ReLU MLP, the 16,384-image MNIST training subset) at fixed parameter points:

* ``init``: the He initialisation of ``jax.random.key(seed)``;
* ``sgd``: that point after ``warmup_steps`` plain SGD steps at batch ``small_batch`` with the
  protocol's learning rate (one epoch by default), closer to where training spends its time.

At each point, for each large batch :math:`B_L` with the alpha that gives
:math:`B_{\mathrm{eff}} = B_s` (:func:`repro.optim.noise_scale_for_effective_batch_size`),
the Monte-Carlo trace of the enhanced gradient (``num_draws`` draws of 2 B_L examples and
their weights) is divided by the Monte-Carlo trace of plain SGD at :math:`B_s` (independent
draws): :mod:`repro.optim.sampler_covariance`. Both are also compared with the closed form
:math:`\mathrm{tr}\,\Sigma\,(n - b)/(b (n - 1))` from the exact per-example gradients: with
two disjoint minibatches drawn without replacement the enhanced covariance is exactly that
of SGD without replacement at :math:`B_{\mathrm{eff}} = B / (1 + 2\alpha(1+\alpha))`
(derivation: ``paper_figures/mori2020/PREREGISTRATION.md``), so the expected ratio is 1.

    python -m repro.figures.mori2020_covariance [--out PATH] [--draws N] [overrides...]

writes ``covariance.json`` (default ``$REPRO_OUTPUT_ROOT/multirun/mori2020/covariance.json``,
beside the sweep's runs, where ``python -m repro.figures mori2020`` reads it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro.engine.data_loading import load_data
from repro.engine.experiment import build_network
from repro.errors import ConfigError
from repro.figures.files import write_json
from repro.figures.identity import composed_config
from repro.optim import noise_enhancement, noise_scale_for_effective_batch_size, sgd_sampling
from repro.optim.sampler_covariance import (
    PerExampleLoss,
    full_gradient,
    monte_carlo_trace,
    population_trace,
    sgd_trace,
)
from repro.run_identity import result_overrides
from repro.run_metadata import collect, now_iso

FILE_NAME = "covariance.json"
SMALL_BATCH = 64  # B_s
LARGE_BATCHES = (256, 1024)  # B_L
NUM_DRAWS = 1000  # per Monte-Carlo trace (pre-registered)
CELL = "experiment=mori2020/sgd_b64"  # its data and model are the protocol's
SEED = 0


def problem_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that change the measurement: result-changing ``data.*`` / ``model.*``
    ones (trainer settings do not enter it)."""
    changed = result_overrides(overrides)
    return [o for o in changed if o.lstrip("+~").split(".")[0] in ("data", "model")]


def measured_with(measurement: Mapping[str, Any], overrides: Sequence[str]) -> bool:
    """Whether ``measurement`` was made on the problem that runs with ``overrides`` have."""
    return list(measurement.get("overrides", [])) == problem_overrides(overrides)


def default_path() -> Path:
    root = Path(os.environ.get("REPRO_OUTPUT_ROOT", "outputs"))
    return root / "multirun" / "mori2020" / FILE_NAME


def _problem(overrides: Sequence[str]) -> tuple[Any, PerExampleLoss, jax.Array, jax.Array, float]:
    """(network, per-example loss, x_train, y_train, learning rate) of the protocol."""
    config = composed_config([CELL, *problem_overrides(overrides)])
    data = load_data(config["data"], config["paths"]["data_dir"])
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    network = build_network(config["model"], int(data.num_classes))

    def loss(params: Any, xs: jax.Array, ys: jax.Array) -> jax.Array:
        logits = network.apply({"params": params}, xs, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys)

    return network, loss, x, y, float(config["optimizer"]["learning_rate"])


def warmed_up(
    loss: PerExampleLoss, params: Any, x: jax.Array, y: jax.Array, lr: float, steps: int, key
) -> Any:
    """``steps`` plain SGD steps at batch SMALL_BATCH, batches from epoch permutations."""
    n = int(x.shape[0])
    per_epoch = n // SMALL_BATCH
    order = jnp.concatenate(
        [
            jax.random.permutation(jax.random.fold_in(key, e), n)[: per_epoch * SMALL_BATCH]
            for e in range(-(-steps // per_epoch))
        ]
    ).reshape(-1, SMALL_BATCH)[:steps]

    def step(p: Any, index: jax.Array) -> tuple[Any, None]:
        grads = jax.grad(lambda q: jnp.mean(loss(q, x[index], y[index])))(p)
        return jax.tree.map(lambda a, g: a - lr * g, p, grads), None

    return jax.jit(lambda p: jax.lax.scan(step, p, order)[0])(params)


def _interval(ratio: float, se: float) -> list[float]:
    return [ratio - 1.96 * se, ratio + 1.96 * se]


def measure_point(
    loss: PerExampleLoss, params: Any, x: jax.Array, y: jax.Array, num_draws: int, key
) -> dict[str, Any]:
    """Traces at one parameter point: population, plain SGD at B_s, each B_L enhanced."""
    n = int(x.shape[0])
    mean = full_gradient(loss, params, x, y)
    population = population_trace(loss, params, x, y)
    expected = sgd_trace(population, SMALL_BATCH, n)
    plain = monte_carlo_trace(
        loss, params, x, y, sgd_sampling(SMALL_BATCH), SMALL_BATCH,
        jax.random.fold_in(key, 0), num_draws, mean=mean,
    )  # fmt: skip
    enhanced = []
    for index, batch in enumerate(LARGE_BATCHES, start=1):
        alpha = noise_scale_for_effective_batch_size("noise_enhancement", SMALL_BATCH, batch)
        estimate = monte_carlo_trace(
            loss, params, x, y, noise_enhancement(alpha), batch,
            jax.random.fold_in(key, index), num_draws, mean=mean,
        )  # fmt: skip
        ratio, ratio_se = estimate.ratio_to(plain)
        enhanced.append(
            {
                "batch_size": batch,
                "alpha": alpha,
                "effective_batch_size": SMALL_BATCH,
                **estimate.as_dict(),
                "ratio": ratio,
                "ratio_se": ratio_se,
                "ratio_interval": _interval(ratio, ratio_se),
                "ratio_to_closed_form": estimate.trace / expected,
            }
        )
    return {
        "population_trace": population,
        "closed_form_sgd_trace": expected,
        "sgd": {"batch_size": SMALL_BATCH, **plain.as_dict()},
        "sgd_ratio_to_closed_form": plain.trace / expected,
        "enhanced": enhanced,
    }


def measure(
    overrides: Sequence[str] = (), num_draws: int = NUM_DRAWS, warmup_steps: int | None = None
) -> dict[str, Any]:
    """Every parameter point's traces (module docstring), with the settings that made them."""
    start, started = now_iso(), time.perf_counter()
    network, loss, x, y, lr = _problem(overrides)
    n = int(x.shape[0])
    steps = n // SMALL_BATCH if warmup_steps is None else int(warmup_steps)
    key = jax.random.key(SEED)
    params = network.init(jax.random.fold_in(key, 0), x[:1], train=False)["params"]
    points = {"init": params, "sgd": warmed_up(loss, params, x, y, lr, steps, key)}
    results = []
    for index, (name, point) in enumerate(points.items()):
        result = measure_point(loss, point, x, y, num_draws, jax.random.fold_in(key, 10 + index))
        results.append({"point": name, **result})
    metadata = collect(start) | {"wall_time_s": time.perf_counter() - started}
    return {
        "claim": "1",
        "cell": CELL,
        "overrides": problem_overrides(overrides),
        "num_train": n,
        "num_params": int(sum(np.size(leaf) for leaf in jax.tree.leaves(params))),
        "small_batch": SMALL_BATCH,
        "large_batches": list(LARGE_BATCHES),
        "num_draws": num_draws,
        "warmup_steps": steps,
        "learning_rate": lr,
        "seed": SEED,
        "points": results,
        "metadata": metadata,
    }


def ratios(measurement: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (point, large batch): ratio, its standard error and interval."""
    return [
        {"point": point["point"], **{k: row[k] for k in ("batch_size", "alpha", "ratio",
                                                       "ratio_se", "ratio_interval")}}
        for point in measurement.get("points", [])
        for row in point["enhanced"]
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m repro.figures.mori2020_covariance",
        description="Measure claim 1 of Mori & Ueda 2020 (covariance traces) on the "
        "protocol's model and data. Unknown arguments are Hydra overrides of the cell.",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default {default_path()}")
    parser.add_argument("--draws", type=int, default=NUM_DRAWS, help="draws per trace")
    parser.add_argument("--warmup-steps", type=int, default=None, help="default: one epoch")
    args, overrides = parser.parse_known_args(argv)
    try:
        if args.draws < 2:
            raise ConfigError(f"--draws must be >= 2, got {args.draws}")
        measurement = measure(overrides, args.draws, args.warmup_steps)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = write_json(args.out or default_path(), measurement)
    for row in ratios(measurement):
        low, high = row["ratio_interval"]
        print(
            f"{row['point']:>4} B={row['batch_size']:<5} alpha={row['alpha']:.4f}: "
            f"trace ratio {row['ratio']:.4f} [{low:.4f}, {high:.4f}]"
        )
    print(f"wrote {path} ({measurement['metadata']['wall_time_s']:.0f} s)")
    return 0 if math.isfinite(measurement["points"][0]["population_trace"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
