"""Side-by-side timings of repro.optim against optax and plain SGD (ratios, not seconds).

Usage::

    .venv/bin/python scripts/benchmark_optim.py            # full run, a few minutes
    .venv/bin/python scripts/benchmark_optim.py --quick    # smoke run, seconds

What it measures (all jitted, ``lax.scan`` over ``--steps`` steps per call):

1. **Update time** on a tree of >= 2M parameters: one optimizer update plus
   ``apply_updates`` per step, our transformation vs optax's equivalent
   (``noisy_sgd``, ``novograd``).
2. **Train step** of the paper's MNIST network (784 inputs, 20 hidden ReLU layers of 50,
   10 outputs, ~87k parameters) at batch 64: plain SGD vs our ``noisy_sgd`` vs optax's.
3. **Train step with each example-weight sampler** vs a plain SGD step on the same batch
   (noise enhancement: vs a plain step on the 2B examples it consumes).
4. The same on Wu et al.'s small CNN (``repro.models.SmallCNN``, 11,330 parameters,
   im2col convolutions as the engine uses on CPU) at their n = 1000 examples per step, with
   the samplers at the scales of conf/experiment/wu2020/ (``--cnn-steps`` steps per call).

``--sections`` picks parts (e.g. ``--sections cnn``).

The machine is shared, so every number is a ratio from interleaved repeats: each round
runs every variant of a group once, in a rotated order; the table gives the median over
rounds of the within-round ratio ours/baseline (with its IQR), for wall-clock time and for
process CPU time (which counts only this process's own work).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import repro.optim as ro

# ----------------------------------------------------------------------------- harness


@dataclasses.dataclass
class Timings:
    """Per-step wall-clock and process-CPU seconds of one variant, one entry per round."""

    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)


def interleaved(
    variants: dict[str, Callable[[], object]], rounds: int, steps: int
) -> dict[str, Timings]:
    """Time every variant once per round, in a rotated order, for ``rounds`` rounds."""
    for fn in variants.values():  # compile and warm up
        jax.block_until_ready(fn())
        jax.block_until_ready(fn())
    names = list(variants)
    times = {name: Timings() for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(variants[name]())
            times[name].wall.append((time.perf_counter() - wall) / steps)
            times[name].cpu.append((time.process_time() - cpu) / steps)
    return times


def ratio_row(label: str, ours: Timings, base: Timings, target: str) -> str:
    """Median over rounds of the paired ratio ours/baseline (same round = same load)."""
    wall_ours, wall_base = np.asarray(ours.wall), np.asarray(base.wall)
    per_round = wall_ours / wall_base
    q1, ratio, q3 = np.percentile(per_round, [25, 50, 75])
    cpu_ratio = np.median(np.asarray(ours.cpu) / np.asarray(base.cpu))
    return (
        f"| {label} | {np.median(wall_ours) * 1e6:.0f} | {np.median(wall_base) * 1e6:.0f} | "
        f"**{ratio:.2f}** | {q1:.2f}-{q3:.2f} | {cpu_ratio:.2f} | {target} |"
    )


# ----------------------------------------------------------------------------- update time


def big_tree(key: jax.Array) -> dict:
    """~2.1M parameters: 8 dense layers of 512 x 512 with biases, plus a 1000-way head."""
    keys = jax.random.split(key, 10)
    tree = {
        f"layer_{i}": {
            "kernel": jax.random.normal(keys[i], (512, 512)) * 0.05,
            "bias": jnp.zeros((512,)),
        }
        for i in range(8)
    }
    tree["head"] = {"kernel": jax.random.normal(keys[9], (512, 100)) * 0.05, "bias": jnp.zeros(100)}
    return tree


def update_loop(opt: optax.GradientTransformation, params: dict, steps: int) -> Callable:
    """Jitted scan of `steps` (update + apply_updates) with a cheap synthetic gradient."""

    @jax.jit
    def run(params):
        state = opt.init(params)

        def body(carry, _):
            p, s = carry
            grads = jax.tree.map(lambda x: 0.01 * x, p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        (p, _), _ = lax.scan(body, (params, state), None, length=steps)
        return p

    return lambda: run(params)


# ----------------------------------------------------------------------------- train steps


def mlp_params(key: jax.Array, depth: int = 20, width: int = 50) -> list[dict]:
    sizes = [784] + [width] * depth + [10]
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * math.sqrt(2.0 / a), "b": jnp.zeros((b,))}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def per_example_loss(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    h = x
    for layer in params[:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    logits = h @ params[-1]["w"] + params[-1]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def train_loop(
    opt: optax.GradientTransformation,
    params: list[dict],
    data: tuple[jax.Array, jax.Array],
    steps: int,
    sampler: object | None = None,
    per_example: Callable[..., jax.Array] | None = None,
) -> Callable:
    """Jitted scan of `steps` SGD steps; each step uses its own slice of `data`.

    `per_example(params, x, y)` is the per-example loss (default: the MLP's)."""
    per_example = per_example or per_example_loss
    xs, ys = data  # [steps, batch, ...]

    @jax.jit
    def run(params, xs, ys):
        state = opt.init(params)
        seed_key = jax.random.key(7)

        def body(carry, batch):
            p, s, step = carry
            x, y = batch
            if sampler is None:

                def loss(q):
                    return jnp.mean(per_example(q, x, y))
            else:
                # A per-step key as the engine derives it (stream, then step), with the
                # loop-free fold_in of repro.optim.prng.
                step_key = ro.fold_in(ro.fold_in(seed_key, 3), step)
                weights = sampler(step_key, x.shape[0])

                def loss(q):
                    return jnp.mean(weights * per_example(q, x, y))

            grads = jax.grad(loss)(p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s, step + 1), None

        (p, _, _), _ = lax.scan(body, (params, state, jnp.zeros([], jnp.int32)), (xs, ys))
        return p

    return lambda: run(params, xs, ys)


def replicas_loop(
    make_opt: Callable[[jax.Array, jax.Array], optax.GradientTransformation],
    params: list[dict],
    data: tuple[jax.Array, jax.Array],
    steps: int,
    num_replicas: int,
) -> Callable:
    """`train_loop` for `num_replicas` vmapped replicas, as the engine runs a grid.

    Each replica has its own key and its own learning rate, so that even plain SGD is a
    genuinely batched computation (identical replicas would be computed once).
    """
    xs, ys = data
    keys = jax.random.split(jax.random.key(11), num_replicas)
    rates = jnp.linspace(0.01, 0.02, num_replicas)

    def one(key, rate):
        opt = make_opt(key, rate)

        def body(carry, batch):
            p, s = carry
            x, y = batch
            grads = jax.grad(lambda q: jnp.mean(per_example_loss(q, x, y)))(p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        return lax.scan(body, (params, opt.init(params)), (xs, ys))[0][0]

    run = jax.jit(jax.vmap(one))
    return lambda: run(keys, rates)


def small_cnn(key: jax.Array) -> tuple[dict, Callable[..., jax.Array]]:
    """Wu et al.'s small CNN (defaults of repro.models.SmallCNN): params, per-example loss."""
    from repro.models import SmallCNN

    model = SmallCNN(num_outputs=10, conv_impl="matmul")
    x = jnp.zeros((1, *CNN_IMAGE))
    params = jax.jit(lambda k, x: model.init(k, x, train=False))(key, x)

    def per_example(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        logits = model.apply(p, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return params, per_example


CNN_IMAGE = (28, 28, 1)


def batches(
    key: jax.Array, steps: int, batch: int, shape: tuple[int, ...] = (784,)
) -> tuple[jax.Array, jax.Array]:
    kx, ky = jax.random.split(key)
    xs = jax.random.normal(kx, (steps, batch, *shape))
    ys = jax.random.randint(ky, (steps, batch), 0, 10)
    return xs, ys


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``rounds`` and ``steps`` resolved from ``--quick`` when unset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=None, help="scanned steps per call")
    parser.add_argument("--cnn-steps", type=int, default=None, help="steps per call, CNN")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}"
    )
    args = parser.parse_args(argv)
    args.sections = [part for part in args.sections.split(",") if part]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections must be among {SECTIONS}, got {unknown}")
    args.cnn_steps = args.cnn_steps or (2 if args.quick else 10)
    args.rounds = args.rounds or (3 if args.quick else 15)
    args.steps = args.steps or (5 if args.quick else 100)
    return args


def header_lines(rounds: int, steps: int) -> list[str]:
    """The report's title (machine and versions), how to read it, and the table header."""
    return [
        f"# repro.optim benchmark ({platform.node()}, {jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} CPUs, jax {jax.__version__}, optax {optax.__version__})",
        "",
        f"Interleaved rounds: {rounds}, scanned steps per call: {steps}. Ratio = median over "
        "rounds of the within-round wall-time ratio ours/baseline (IQR beside it); CPU ratio = "
        "the same with process CPU time (less sensitive to other processes on a shared "
        "machine); us/step = median wall time. "
        f"Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
        "| comparison | ours (us/step) | baseline (us/step) | ratio | IQR | CPU ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]


def compare_updates(key: jax.Array, lr: float, rounds: int, steps: int) -> list[str]:
    """1. Update time on >= 2M parameters: ours vs optax's noisy_sgd and novograd."""
    tree = big_tree(key)
    num_params = sum(x.size for x in jax.tree.leaves(tree))
    t = interleaved(
        {
            "ours_noisy": update_loop(ro.noisy_sgd(lr, 0.01, 0.55, key=0), tree, steps),
            "optax_noisy": update_loop(optax.noisy_sgd(lr, 0.01, 0.55, key=0), tree, steps),
            "ours_novograd": update_loop(ro.novograd(lr, weight_decay=1e-3), tree, steps),
            "optax_novograd": update_loop(optax.novograd(lr, weight_decay=1e-3), tree, steps),
        },
        rounds,
        steps,
    )
    return [
        ratio_row(
            f"update: {name} / optax.{name} ({num_params / 1e6:.1f}M params)",
            t[f"ours_{short}"],
            t[f"optax_{short}"],
            "<= 1.05",
        )
        for name, short in (("noisy_sgd", "noisy"), ("novograd", "novograd"))
    ]


def compare_mlp_steps(
    params: list[dict], data: tuple[jax.Array, jax.Array], lr: float, rounds: int, steps: int
) -> list[str]:
    """2. The paper's MNIST MLP: plain SGD vs our noisy SGD vs optax's, single and vmapped."""
    mlp_size = sum(x.size for x in jax.tree.leaves(params))
    t = interleaved(
        {
            "sgd": train_loop(optax.sgd(lr), params, data, steps),
            "ours": train_loop(ro.noisy_sgd(lr, 0.01, 0.55, key=0), params, data, steps),
            "optax": train_loop(optax.noisy_sgd(lr, 0.01, 0.55, key=0), params, data, steps),
        },
        rounds,
        steps,
    )
    label = f"20x50 MLP ({mlp_size / 1e3:.0f}k params), batch 64"
    lines = [
        ratio_row(f"{label}: noisy_sgd step / SGD step", t["ours"], t["sgd"], "<= 1.5"),
        ratio_row(f"{label}: optax.noisy_sgd step / SGD step", t["optax"], t["sgd"], "(3.2)"),
        ratio_row(f"{label}: noisy_sgd step / optax.noisy_sgd step", t["ours"], t["optax"], ""),
    ]

    replicas = 4
    t = interleaved(
        {
            "sgd": replicas_loop(lambda k, r: optax.sgd(r), params, data, steps, replicas),
            "ours": replicas_loop(
                lambda k, r: ro.noisy_sgd(r, 0.01, 0.55, key=k), params, data, steps, replicas
            ),
        },
        rounds,
        steps,
    )
    lines.append(
        ratio_row(
            f"{label}, {replicas} vmapped replicas (own keys and rates): noisy_sgd / SGD step",
            t["ours"],
            t["sgd"],
            "(vmap check)",
        )
    )
    return lines


def compare_noise_generators(params: list[dict], rounds: int, steps: int) -> list[str]:
    """2b. The noise generators alone on the MLP tree (update = g + noise), vs optax's."""
    generators = {
        "repro (chunked, default)": ro.add_noise(1.0, 0.0, 0),
        "repro (per_leaf layout)": ro.add_noise(1.0, 0.0, 0, layout="per_leaf"),
        "repro (generator='jax')": ro.add_noise(1.0, 0.0, 0, generator="jax"),
        "optax, rbg key": optax.add_noise(1.0, 0.0, jax.random.key(0, impl="rbg")),
        "optax, unsafe_rbg key": optax.add_noise(1.0, 0.0, jax.random.key(0, impl="unsafe_rbg")),
    }
    variants = {"optax": update_loop(optax.add_noise(1.0, 0.0, 0), params, steps)}
    variants.update({name: update_loop(tx, params, steps) for name, tx in generators.items()})
    t = interleaved(variants, rounds, steps)
    lines = []
    for name in generators:
        vmap_note = " (not vmap-invariant)" if "rbg" in name else ""
        lines.append(
            ratio_row(
                f"noise only, MLP tree: {name} / optax threefry{vmap_note}",
                t[name],
                t["optax"],
                "",
            )
        )
    return lines


def compare_samplers(
    key: jax.Array,
    params: list[dict],
    data: tuple[jax.Array, jax.Array],
    lr: float,
    rounds: int,
    steps: int,
) -> list[str]:
    """3. Example-weight samplers vs plain SGD on the same batch of 64 (``data``); noise
    enhancement vs plain SGD on the 2 x 64 examples it consumes."""
    batch = 64
    samplers = {
        "sgd_sampling(16)": ro.sgd_sampling(16),
        "bernoulli_sampling(0.25)": ro.bernoulli_sampling(0.25),
        "gaussian_fisher(1.0)": ro.gaussian_fisher(1.0),
        "gaussian_gradient_covariance(1.0)": ro.gaussian_gradient_covariance(1.0),
        "sparse_gaussian(1.0, 16)": ro.sparse_gaussian(1.0, 16),
        "ghost_batch_gaussian(1.0, 16)": ro.ghost_batch_gaussian(1.0, 16),
    }
    variants = {"plain": train_loop(optax.sgd(lr), params, data, steps)}
    for name, sampler in samplers.items():
        variants[name] = train_loop(optax.sgd(lr), params, data, steps, sampler)
    t = interleaved(variants, rounds, steps)
    lines = [
        ratio_row(f"MLP batch {batch}: {name} step / SGD step", t[name], t["plain"], "<= 1.05")
        for name in samplers
    ]
    enhancement = ro.noise_enhancement(0.5)
    data128 = batches(key, steps, enhancement.num_examples(batch))
    t = interleaved(
        {
            "plain": train_loop(optax.sgd(lr), params, data128, steps),
            "enhanced": train_loop(optax.sgd(lr), params, data128, steps, enhancement),
        },
        rounds,
        steps,
    )
    lines.append(
        ratio_row(
            f"MLP 2 x {batch}: noise_enhancement(0.5) step / SGD step on {2 * batch}",
            t["enhanced"],
            t["plain"],
            "<= 1.05",
        )
    )
    return lines


def compare_cnn_samplers(key: jax.Array, lr: float, rounds: int, steps: int) -> list[str]:
    """4. Wu et al.'s classes at their scales on the small CNN, n = 1000 examples per step,
    vs plain SGD on the same 1000; noise enhancement (2 x 500) vs plain SGD on 1000."""
    n = 1000
    params, per_example = small_cnn(key)
    data = batches(key, steps, n, CNN_IMAGE)
    samplers = {
        "sgd_sampling(50)": ro.sgd_sampling(50),
        "bernoulli_sampling(0.05)": ro.bernoulli_sampling(0.05),
        "gaussian_fisher(4.36)": ro.gaussian_fisher(4.3589),
        "gaussian_gradient_covariance(4.36)": ro.gaussian_gradient_covariance(4.3611),
        "sparse_gaussian(13.8, 100)": ro.sparse_gaussian(13.784, 100),
        "ghost_batch_gaussian(3.03, 50)": ro.ghost_batch_gaussian(3.0305, 50),
        "noise_enhancement(0.5) on 2 x 500": ro.noise_enhancement(0.5),
    }
    loop = functools.partial(train_loop, optax.sgd(lr), params, data, steps)
    variants = {"plain": loop(per_example=per_example)}
    for name, sampler in samplers.items():
        variants[name] = loop(sampler, per_example=per_example)
    t = interleaved(variants, rounds, steps)
    label = f"small CNN (11,330 params), {n} examples"
    return [
        ratio_row(f"{label}: {name} step / SGD step", t[name], t["plain"], "<= 1.05")
        for name in samplers
    ]


SECTIONS = ("updates", "mlp", "noise", "samplers", "cnn")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rounds, steps = args.rounds, args.steps
    key = jax.random.key(0)
    lr = 0.01
    lines = header_lines(rounds, steps)
    if "cnn" in args.sections:
        lines.insert(3, f"(Section 4, the small CNN: {args.cnn_steps} scanned steps per call.)")
    if "updates" in args.sections:
        lines += compare_updates(key, lr, rounds, steps)
    params = mlp_params(key)
    data64 = batches(key, steps, 64)
    if "mlp" in args.sections:
        lines += compare_mlp_steps(params, data64, lr, rounds, steps)
    if "noise" in args.sections:
        lines += compare_noise_generators(params, rounds, steps)
    if "samplers" in args.sections:
        lines += compare_samplers(key, params, data64, lr, rounds, steps)
    if "cnn" in args.sections:
        lines += compare_cnn_samplers(key, lr, rounds, args.cnn_steps)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
