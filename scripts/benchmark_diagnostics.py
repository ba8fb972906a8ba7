"""Cost of the diagnostics hooks against one training epoch, measured side by side in one run.

Model: Neelakantan et al.'s 20 x 50 ReLU MLP on MNIST (../shared/data/mnist.npz, 60k
images), batch 128, plain SGD, one replica, built by the engine exactly as `python -m
repro.train` builds it. After one warm-up (compilation) of everything, each repeat times one
epoch of training (`feed.advance` over the epoch's steps) and then one call of each hook at
its default settings, in turn, so that load drifts hit all of them alike. Prints per hook:
seconds per call, its default `every_epochs`, and the ratio (cost per epoch at the default
frequency) / (epoch time); and the total of all hooks (target: <= 10 %).

Usage: python scripts/benchmark_diagnostics.py [--repeats 3] [--epochs-data N] [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
from hydra import compose, initialize_config_dir

from repro.engine.epoch_loop import diagnostics_key
from repro.engine.experiment import build_experiment
from repro.engine.hooks import HookContext
from repro.engine.run_spec import run_spec
from repro.train import CONFIG_DIR

HOOKS = {
    "noise": "repro.engine.hooks.GradientNoiseStrength",
    "hessian_power": "repro.engine.hooks.HessianTopEigenvalue",
    "hessian_lanczos": "repro.engine.hooks.HessianTopEigenvalues",
    "noise_spectrum": "repro.engine.hooks.NoiseCovarianceSpectrum",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=None, help="MNIST subset (default all)")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def build(n_train: int | None) -> Any:
    overrides = [
        "~experiment", "name=benchmark_diagnostics", "data=mnist", "data.flatten=true",
        "model=deep_mlp", "optimizer=sgd", "optimizer.learning_rate=0.1", "noise=none",
        "trainer.batch_size=128", "trainer.progress=never", "replicas.seeds=1",
        *(f"+diagnostics.{name}._target_={target}" for name, target in HOOKS.items()),
    ]  # fmt: skip
    if n_train:
        overrides.append(f"data.n_train={n_train}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return build_experiment(run_spec(cfg))


def measure(exp: Any, repeats: int) -> dict[str, list[float]]:
    state = exp.initial_state
    steps = exp.steps_per_epoch
    times: dict[str, list[float]] = {"epoch": [], **{name: [] for name in exp.hooks}}
    for repeat in range(repeats + 1):  # repeat 0: compilation, not recorded
        clock = time.perf_counter()
        # the feed donates its input state: keep the state it returns
        state = exp.feed.advance(state, exp.hparams, repeat * steps, (repeat + 1) * steps)
        jax.block_until_ready(state.step)
        elapsed = {"epoch": time.perf_counter() - clock}
        ctx = HookContext(repeat + 1, int(state.step), exp.program, state.replicas,
                          exp.train_data, diagnostics_key(0, repeat + 1))  # fmt: skip
        for name, hook in exp.hooks.items():
            clock = time.perf_counter()
            jax.block_until_ready(hook(ctx))
            elapsed[name] = time.perf_counter() - clock
        if repeat:
            for name, seconds in elapsed.items():
                times[name].append(seconds)
    return times


def report(exp: Any, times: dict[str, list[float]]) -> dict[str, Any]:
    epoch = statistics.median(times["epoch"])
    rows, total = {}, 0.0
    print(f"epoch: {exp.steps_per_epoch} steps of batch {exp.examples_per_step}, "
          f"{epoch:.3f} s (median of {len(times['epoch'])})")  # fmt: skip
    print(f"{'hook':<16} {'s/call':>8} {'every':>6} {'ratio':>8}")
    for name, hook in exp.hooks.items():
        seconds = statistics.median(times[name])
        every = int(getattr(hook, "every_epochs", 1))
        ratio = seconds / every / epoch
        total += ratio
        rows[name] = {"seconds": seconds, "every_epochs": every, "ratio": ratio}
        print(f"{name:<16} {seconds:>8.3f} {every:>6} {ratio:>8.1%}")
    print(f"{'all hooks':<16} {'':>8} {'':>6} {total:>8.1%}  (target <= 10%)")
    return {"epoch_s": epoch, "hooks": rows, "total_ratio": total}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    exp = build(args.n_train)
    try:
        result = report(exp, measure(exp, args.repeats))
    finally:
        exp.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
