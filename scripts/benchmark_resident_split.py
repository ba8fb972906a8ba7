"""Resident training set split over the data devices vs whole on each: memory and step time.

    .venv/bin/python scripts/benchmark_resident_split.py [--devices 4] [--batch 256]
        [--rounds 5] [--json out.json]

One process with --devices fake XLA CPU devices, a (1 replica x D data) mesh, real MNIST
(../shared/data/mnist.npz, 60,000 x 784 float32), a 2 x 256 MLP trained by SGD, batch
--batch split over the D devices. The same compiled epoch (repro.engine.epoch.make_chunk_fn)
runs with the set whole on every device (a local gather per step) and split
(repro/engine/split_data.py: each device holds N/D examples; a shard_map gather and one
reduce-scatter of the batch per step). Rounds alternate the two, so each ratio compares
timings taken seconds apart. Reported: the training set's bytes on one device, the median
ms per step of each, and split / whole. On a machine with fewer cores than devices the
devices share cores (the printed `cores`); the ratio is the cost of the gather, not a
speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/mnist.npz")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def _bytes_on(device: object, placed: dict) -> int:
    """Bytes of the placed arrays' shards that live on `device`."""
    return sum(
        s.data.nbytes for v in placed.values() for s in v.addressable_shards if s.device == device
    )


def _add_ratios(report: dict) -> None:
    whole, split = report["cases"]["whole"], report["cases"]["split"]
    report["split_over_whole"] = {
        "memory": split["train_bytes_per_device"] / whole["train_bytes_per_device"],
        "ms_per_step": split["ms_per_step"] / whole["ms_per_step"],
    }


def _print(report: dict) -> None:
    print(f"{report['devices']} devices on {report['cores']} cores, batch {report['batch']}, MNIST")
    for mode, case in report["cases"].items():
        mib = case["train_bytes_per_device"] / 2**20
        print(f"  {mode:5s}  {mib:7.1f} MiB per device  {case['ms_per_step']:7.3f} ms/step")
    ratio = report["split_over_whole"]
    print(
        f"  split / whole: memory {ratio['memory']:.3f}, time per step {ratio['ms_per_step']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import numpy as np

    from repro.engine.epoch import make_chunk_fn, make_order_fn
    from repro.engine.optimizers import UpdateRule
    from repro.engine.runtime import usable_cores
    from repro.engine.sharding import batch_sharding, replica_mesh, replicate, shard_replica_axis
    from repro.engine.split_data import make_split_gather, place_split
    from repro.engine.steps import ReplicaModel, make_init_fn
    from repro.engine.tasks import get_task
    from repro.models import DeepMLP

    with np.load(args.data) as arrays:
        train = {
            "x": (arrays["x_train"].reshape(-1, 784) / 255.0).astype(np.float32),
            "y": arrays["y_train"].astype(np.int32),
        }
    num_train = len(train["y"])
    steps = num_train // args.batch
    sgd = {"_target_": "optax.sgd", "learning_rate": 0.05}
    rule = UpdateRule(sgd, {"kind": "none"}, None, steps, steps)
    program = ReplicaModel(
        DeepMLP(depth=2, width=256, num_outputs=10), get_task("classification"), rule, args.batch
    )
    mesh = replica_mesh(1, None, args.devices)
    keys = jax.vmap(jax.random.key)(np.arange(1, dtype=np.uint32))
    init_fn = make_init_fn(program)
    order = replicate(make_order_fn(num_train, steps, args.batch, True)(jax.random.key(0), 0), mesh)
    sets = {"whole": replicate(train, mesh), "split": place_split(train, mesh)}
    chunks = {
        "whole": make_chunk_fn(program, steps, True, batch_sharding(mesh)),
        "split": make_chunk_fn(
            program, steps, True, batch_sharding(mesh), gather=make_split_gather(mesh)
        ),
    }

    def epoch(mode: str) -> float:
        state = shard_replica_axis(init_fn(keys, {}, train["x"][:1]), mesh)  # (donated)
        start = time.perf_counter()
        state = chunks[mode](state, {}, sets[mode], order, steps)
        jax.block_until_ready(state)
        return (time.perf_counter() - start) / steps * 1000.0

    for mode in sets:  # compile
        epoch(mode)
    timings: dict[str, list[float]] = {mode: [] for mode in sets}
    for _ in range(args.rounds):
        for mode in sets:
            timings[mode].append(epoch(mode))
    device = jax.devices()[0]
    report = {
        "devices": args.devices,
        "cores": usable_cores(),
        "batch": args.batch,
        "steps_per_epoch": steps,
        "rounds": args.rounds,
        "cases": {
            mode: {
                "train_bytes_per_device": _bytes_on(device, placed),
                "ms_per_step": statistics.median(timings[mode]),
            }
            for mode, placed in sets.items()
        },
    }
    _add_ratios(report)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
