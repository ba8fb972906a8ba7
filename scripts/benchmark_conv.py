"""Conv-net training steps on XLA:CPU: top-level jit vs inside compiled loops, XLA conv vs im2col.

For each model (SmallCNN on 28x28x1 and 32x32x3, ResNet-20 on 32x32x3; batch 128) and each
``conv_impl`` ("xla": ``lax.conv_general_dilated``, "matmul": im2col + one dot, see
repro/models/conv.py) one SGD step (cross-entropy gradient, ResNet's batch statistics
updated) is timed in four forms:

  top     ``jit(step)`` called from Python once per step
  scan    ``lax.scan`` over ``steps`` steps in one jit
  while   ``lax.while_loop`` with a traced step bound (the engine's chunk form, epoch.py)
  vmap4   the while loop over ``jax.vmap`` of the step for 4 replicas sharing the batch
          (the engine's replicas; time per step of all 4)

The batch is an argument (not a constant XLA could fold). Rounds interleave every variant;
each prints medians over rounds of ms per step and of the ratios formed inside a round, so
the ratios compare timings taken side by side on a shared machine.

    .venv/bin/python scripts/benchmark_conv.py                 # the SmallCNNs (~5 minutes)
    .venv/bin/python scripts/benchmark_conv.py --models resnet20 --forms top while \
        --resnet-steps 2 --rounds 3
    .venv/bin/python scripts/benchmark_conv.py --models small28 --rounds 7
    .venv/bin/python scripts/benchmark_conv.py --dump-hlo /tmp/hlo   # optimized HLO per form
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from repro.models import ResNet, SmallCNN

FORMS = ("top", "scan", "while", "vmap4")
IMPLS = ("xla", "matmul")
REPLICAS = 4
LEARNING_RATE = 0.01

MODELS: dict[str, tuple[Callable[[str], Any], tuple[int, int, int]]] = {
    "small28": (lambda impl: SmallCNN(conv_impl=impl), (28, 28, 1)),
    "small32": (lambda impl: SmallCNN(conv_impl=impl), (32, 32, 3)),
    "resnet20": (lambda impl: ResNet(depth=20, conv_impl=impl), (32, 32, 3)),
}


def make_programs(model: Any, shape: tuple[int, ...], batch: int, steps: int) -> tuple:
    """(state, x, y, {form: timed callable(state, x, y) -> state after `steps` steps})."""
    x = jax.random.normal(jax.random.key(1), (batch, *shape))
    y = jax.random.randint(jax.random.key(2), (batch,), 0, 10)
    variables = dict(model.init(jax.random.key(0), x[:2], train=False))
    params = variables.pop("params")
    state = (params, variables)

    def step(state: tuple, x: jax.Array, y: jax.Array) -> tuple:
        params, extra = state

        def loss_fn(p: Any) -> tuple[jax.Array, Any]:
            if extra:
                logits, new_extra = model.apply(
                    {"params": p, **extra}, x, train=True, mutable=list(extra)
                )
            else:
                logits, new_extra = model.apply({"params": p}, x, train=True), extra
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, dict(new_extra)

        grads, new_extra = jax.grad(loss_fn, has_aux=True)(params)
        return jax.tree.map(lambda p, g: p - LEARNING_RATE * g, params, grads), new_extra

    top = jax.jit(step)

    def run_top(state: tuple, x: jax.Array, y: jax.Array) -> tuple:
        for _ in range(steps):
            state = top(state, x, y)
        return state

    @jax.jit
    def run_scan(state: tuple, x: jax.Array, y: jax.Array) -> tuple:
        return jax.lax.scan(lambda s, _: (step(s, x, y), None), state, length=steps)[0]

    def while_of(fn: Callable) -> Callable:
        @jax.jit
        def run(state: tuple, x: jax.Array, y: jax.Array, stop: jax.Array) -> tuple:
            body = lambda c: (c[0] + 1, fn(c[1], x, y))
            return jax.lax.while_loop(lambda c: c[0] < stop, body, (jnp.int32(0), state))[1]

        return lambda state, x, y: run(state, x, y, jnp.int32(steps))

    stacked = jax.tree.map(lambda a: jnp.stack([a] * REPLICAS), state)
    vmapped = jax.vmap(step, in_axes=(0, None, None))
    programs = {
        "top": (run_top, state, top, (state, x, y)),
        "scan": (run_scan, state, run_scan, (state, x, y)),
        "while": (while_of(step), state, None, None),
        "vmap4": (while_of(vmapped), stacked, None, None),
    }
    return x, y, programs


def time_call(fn: Callable, state: Any, x: jax.Array, y: jax.Array, steps: int) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(state, x, y))
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # ResNet-20 with XLA convs takes ~18 s a step inside loops: opt in with --models resnet20.
    parser.add_argument("--models", nargs="+", default=["small28", "small32"], choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed call (SmallCNN)")
    parser.add_argument("--resnet-steps", type=int, default=3, help="steps per call (ResNet)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--dump-hlo", type=Path, default=None, help="write optimized HLO here")
    args = parser.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {args.batch}")

    for name in args.models:
        build, shape = MODELS[name]
        steps = args.resnet_steps if name.startswith("resnet") else args.steps
        variants = {}
        for impl in args.impls:
            x, y, programs = make_programs(build(impl), shape, args.batch, steps)
            for form in args.forms:
                fn, state, _, _ = programs[form]
                start = time.perf_counter()
                jax.block_until_ready(fn(state, x, y))  # compile + warm up
                compile_s = time.perf_counter() - start
                variants[impl, form] = (fn, state, x, y, compile_s)
            if args.dump_hlo is not None:
                args.dump_hlo.mkdir(parents=True, exist_ok=True)
                _, state, top, top_args = programs["top"]
                text = top.lower(*top_args).compile().as_text()
                (args.dump_hlo / f"{name}_{impl}_top.txt").write_text(text)
                _, state, scan, scan_args = programs["scan"]
                text = scan.lower(*scan_args).compile().as_text()
                (args.dump_hlo / f"{name}_{impl}_scan.txt").write_text(text)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
        ratios: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            now = {
                key: time_call(fn, state, x, y, steps)
                for key, (fn, state, x, y, _) in variants.items()
            }
            for key, value in now.items():
                times[key].append(value)
            for impl in args.impls:
                for form in args.forms[1:]:
                    label = f"{impl}: {form}/top"
                    ratios.setdefault(label, []).append(now[impl, form] / now[impl, "top"])
            if set(IMPLS) <= set(args.impls):
                for form in args.forms:
                    label = f"xla/matmul: {form}"
                    ratios.setdefault(label, []).append(now["xla", form] / now["matmul", form])
        print(f"\n== {name}: input {shape}, {steps} steps per call, {args.rounds} rounds ==")
        print("ms per step (median)   " + "".join(f"{form:>9}" for form in args.forms))
        for impl in args.impls:
            row = "".join(f"{statistics.median(times[impl, form]):9.2f}" for form in args.forms)
            print(f"  {impl:<21}{row}")
        print("compile s")
        for impl in args.impls:
            row = "".join(f"{variants[impl, form][4]:9.1f}" for form in args.forms)
            print(f"  {impl:<21}{row}")
        print("ratios (median of per-round ratios):")
        for label, values in ratios.items():
            print(f"  {label:<24}{statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
