"""Weak scaling of `python -m repro.train` over fake CPU devices and over processes.

    .venv/bin/python scripts/benchmark_scaling.py [--devices 1 2 4 8] [--epochs 6]
        [--rounds 3] [--json out.json]

Every case trains the same per-device work: one replica per device (replica parallelism,
`replicas.seeds` = devices) of a 4 x 256 MLP on scikit-learn's digits, batch 64, no
evaluation cost to speak of. Cases:

  1 process x D devices      for each D of --devices (XLA host devices, one thread each)
  2 processes x D/2 devices  for each D >= 2: the same mesh over two `jax.distributed`
                             processes on localhost (gloo collectives for the host reads)

Reported per case: the median over rounds of the median over epochs 2.. of the time per
step, the replica-steps per second (steps/s x replicas: the work done), and the overhead
ratio (time per step over the 1-device time per step of the same round, median over rounds;
1.0 is perfect weak scaling). Rounds run every case once, in order, so each ratio compares
timings taken minutes apart at most. On a machine with fewer cores than
devices the devices share cores, so the ratio grows with D even without overhead: the
printed `cores` says how many there are. Cases run one after another in one invocation, so
their ratios are measured side by side; the 2-process rows against the 1-process row of the
same D give the cost of the process boundary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro.engine.runtime import usable_cores

REPO = Path(__file__).resolve().parents[1]
WORK = (
    "experiment=smoke",
    "model.depth=4",
    "model.width=256",
    "trainer.batch_size=64",
    "trainer.progress=never",
    "trainer.checkpoint_every_epochs=0",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def _env(root: Path, devices_per_process: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REPRO_OUTPUT_ROOT=str(root / "out"),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}",
        REPRO_JAX_CACHE_DIR=str(root / "jax_cache"),
    )
    return env


def run_case(root: Path, devices: int, processes: int, epochs: int) -> dict:
    """Train one case; its per-epoch examples/s from metrics.jsonl."""
    case = root / f"d{devices}_p{processes}"
    case.mkdir()
    args = [*WORK, f"replicas.seeds={devices}", f"trainer.epochs={epochs}"]
    port = _free_port()
    procs = []
    start = time.perf_counter()
    for i in range(processes):
        group = []
        if processes > 1:
            group = [
                f"distributed.coordinator_address=localhost:{port}",
                f"distributed.num_processes={processes}",
                f"distributed.process_id={i}",
            ]
        cmd = [sys.executable, "-m", "repro.train", *args, *group]
        env = _env(case, devices // processes)
        log = open(case / f"process_{i}.log", "wb")  # noqa: SIM115  (closed at exit)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise RuntimeError(f"case {devices} devices x {processes} processes failed: {case}")
    (metrics,) = (case / "out" / "runs" / "smoke").glob("*/metrics.jsonl")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    rates = [r["examples_per_s"] for r in records[1:]]  # epoch 1 includes compilation
    examples_per_s = statistics.median(rates)
    steps_per_s = examples_per_s / 64
    return {
        "devices": devices,
        "processes": processes,
        "replica_steps_per_s": steps_per_s * devices,
        "ms_per_step": 1000.0 / steps_per_s,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = [(d, p) for d in args.devices for p in ((1, 2) if d >= 2 else (1,))]
    rounds: list[list[dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            root = Path(tmp) / f"round_{index}"
            root.mkdir()
            rounds.append([run_case(root, d, p, args.epochs) for d, p in cases])
            print(f"  round {index + 1}/{args.rounds} done", flush=True)
    rows = []
    for position, (devices, processes) in enumerate(cases):
        runs = [r[position] for r in rounds]
        ratios = [r[position]["ms_per_step"] / r[0]["ms_per_step"] for r in rounds]
        ms = statistics.median(run["ms_per_step"] for run in runs)
        rows.append(
            {
                "devices": devices,
                "processes": processes,
                "ms_per_step": ms,
                "replica_steps_per_s": 1000.0 / ms * devices,
                "overhead": statistics.median(ratios),
                "overhead_per_round": ratios,
            }
        )
    print(f"cores: {usable_cores()}; work per device: one replica of a 4 x 256 MLP, batch 64")
    print("devices  processes  replica-steps/s  ms/step  overhead (ms/step / 1-device)")
    for row in rows:
        print(
            f"{row['devices']:>7}  {row['processes']:>9}  {row['replica_steps_per_s']:>15.1f}"
            f"  {row['ms_per_step']:>7.2f}  {row['overhead']:>6.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"cores": usable_cores(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
