"""Throughput of the training pipeline, as ratios measured side by side in one run.

Model: Neelakantan et al.'s 20 x 50 ReLU MLP on MNIST (../shared/data/mnist.npz), batch 64,
plain SGD, float32. Prints:

1. a whole `repro.train` run, R = 1 (eval and metrics.jsonl every epoch; checkpoints by the
   default policy -- every epoch, at most one per 30 s -- and also at every epoch), against
   a bare jitted `lax.scan` epoch of the same model and batch, a jitted per-step Python
   loop, and PyTorch eager (torch==2.13.0, optional; run in its own process);
2. R = 8 and 32 replicas (seeds) in one program against R separate runs of the same
   command: end to end (each `python -m repro.train` process from start to exit) and steady
   state (replica-examples/s after compilation, evaluation and checkpoints included);
3. achieved model FLOP/s of the bare scanned epoch at batch 1024 as a fraction of a large
   (4096^2) matmul's FLOP/s.

Usage: python scripts/benchmark_pipeline.py [--replicas 8 32] [--repeats 2] [--json out.json]
On a shared 2-core machine absolute numbers drift; compare the ratios of one run. Rates of
the bare loop and of R=1 runs are the best of --repeats (other load only slows things down).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from repro.data import load_npz
from repro.engine.runtime import usable_cores
from repro.models import DeepMLP

REPO = Path(__file__).resolve().parents[1]
DEPTH, WIDTH, CLASSES, IN_DIM = 20, 50, 10, 784


def model_flops_per_example() -> float:
    """Training FLOPs per example: 2 * weights forward, x3 for forward + backward."""
    weights = IN_DIM * WIDTH + (DEPTH - 1) * WIDTH * WIDTH + WIDTH * CLASSES
    return 6.0 * weights


def matmul_gflops(n: int = 4096, reps: int = 3) -> float:
    """FLOP/s of a chain of dependent n x n float32 matmuls (no hoisting by XLA)."""
    a = jax.random.normal(jax.random.key(0), (n, n)) / np.sqrt(n)

    @jax.jit
    def chain(x: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, reps, lambda _, y: y @ a, x)

    chain(a).block_until_ready()
    start = time.perf_counter()
    chain(a).block_until_ready()
    return 2.0 * n**3 * reps / (time.perf_counter() - start) / 1e9


def layer_matmul_gflops(replicas: int, batch: int, width: int = WIDTH, reps: int = 200) -> float:
    """FLOP/s of the MLP's hidden-layer matmul [batch, width] @ [width, width], batched over
    `replicas` (each with its own weights, as vmapped replicas are), `reps` dependent times."""
    key = jax.random.key(0)
    x = jax.random.normal(key, (replicas, batch, width))
    w = jax.random.normal(jax.random.fold_in(key, 1), (replicas, width, width)) / np.sqrt(width)

    @jax.jit
    def chain(h: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, reps, lambda _, y: jnp.einsum("rbi,rio->rbo", y, w), h)

    chain(x).block_until_ready()
    start = time.perf_counter()
    chain(x).block_until_ready()
    return 2.0 * replicas * batch * width * width * reps / (time.perf_counter() - start) / 1e9


def _bare_setup(x: np.ndarray, batch: int, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    model = DeepMLP(depth=DEPTH, width=WIDTH, num_outputs=CLASSES, kernel_init_name="simple")
    params = model.init(jax.random.key(seed), jnp.asarray(x[:1]), train=False)["params"]
    tx = optax.sgd(0.01)

    def loss_fn(p: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        logits = model.apply({"params": p}, xb, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry: Any, xb: jax.Array, yb: jax.Array) -> tuple[Any, jax.Array]:
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = tx.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    return model, params, tx, step


def bare_scan_rate(x: np.ndarray, y: np.ndarray, batch: int, epochs: int = 3) -> float:
    """Examples/s of a jitted lax.scan over one epoch (gather + step), after compilation."""
    _, params, tx, step = _bare_setup(x, batch)
    steps = len(x) // batch
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def epoch(carry: Any, order: jax.Array) -> Any:
        def body(c: Any, idx: jax.Array) -> Any:
            return step(c, xs[idx], ys[idx])

        return jax.lax.scan(body, carry, order)

    orders = [
        jax.random.permutation(jax.random.key(e), len(x))[: steps * batch].reshape(steps, batch)
        for e in range(epochs + 1)
    ]
    carry = (params, tx.init(params))
    carry, _ = epoch(carry, orders[0])
    jax.block_until_ready(carry)
    start = time.perf_counter()
    for order in orders[1:]:
        carry, losses = epoch(carry, order)
    jax.block_until_ready(losses)
    return epochs * steps * batch / (time.perf_counter() - start)


def python_loop_rate(x: np.ndarray, y: np.ndarray, batch: int, max_steps: int = 600) -> float:
    """Examples/s of a jitted step called from a Python loop (batches gathered on device)."""
    _, params, tx, step = _bare_setup(x, batch)
    xs, ys = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def jstep(carry: Any, idx: jax.Array) -> Any:
        return step(carry, xs[idx], ys[idx])

    order = np.random.default_rng(0).permutation(len(x))
    idx = [jnp.asarray(order[i * batch : (i + 1) * batch]) for i in range(max_steps)]
    carry = (params, tx.init(params))
    carry, loss = jstep(carry, idx[0])
    jax.block_until_ready(loss)
    start = time.perf_counter()
    for i in range(1, max_steps):
        carry, loss = jstep(carry, idx[i])
    jax.block_until_ready(loss)
    return (max_steps - 1) * batch / (time.perf_counter() - start)


def torch_eager_rate(
    x: np.ndarray, y: np.ndarray, batch: int, max_steps: int = 600, threads: int | None = None
) -> float | None:
    """Examples/s of the same MLP and SGD step in PyTorch eager mode (None without torch).

    `threads`: torch intra-op threads (None: torch's default, one per core). On a loaded
    2-core machine torch's default OpenMP threads spin against each other and run ~10x
    slower than with 1 thread, so the benchmark reports the better of the two.
    """
    try:
        import torch
    except ImportError:
        return None
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers: list[Any] = []
    dims = [IN_DIM] + [WIDTH] * DEPTH
    for a, b in itertools.pairwise(dims):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(WIDTH, CLASSES))
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x.reshape(len(x), -1))
    yt = torch.from_numpy(y.astype(np.int64))
    order = torch.randperm(len(x))

    def run(steps: int, offset: int) -> None:
        for i in range(offset, offset + steps):
            idx = order[i * batch : (i + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    run(20, 0)
    start = time.perf_counter()
    run(max_steps, 20)
    return max_steps * batch / (time.perf_counter() - start)


def _torch_in_subprocess(batch: int) -> float | None:
    out = subprocess.run(
        [sys.executable, __file__, "--torch-only", f"--batch={batch}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine_run(
    overrides: list[str], output_root: Path, cache_dir: Path | None = None
) -> dict[str, Any]:
    """`python -m repro.train <overrides>` as a subprocess; wall time from process start to
    exit, plus its metrics records and summary. `cache_dir`: the persistent compilation
    cache (default: a fresh one inside `output_root`, i.e. everything compiled)."""
    env = {
        **os.environ,
        "REPRO_OUTPUT_ROOT": str(output_root),
        "REPRO_JAX_CACHE_DIR": str(cache_dir or output_root / "jax_cache"),
    }
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "repro.train", *overrides],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    total = time.perf_counter() - start
    (summary_path,) = output_root.rglob("summary.json")
    with open(summary_path.parent / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    return {"summary": json.loads(summary_path.read_text()), "records": records, "total_s": total}


def steady_rate(run: dict[str, Any], examples_per_epoch: int) -> float:
    """Examples/s between the end of epoch 1 (compilation done) and the last epoch, with
    evaluation, metrics logging and checkpointing included."""
    records = run["records"]
    first, last = records[0], records[-1]
    epochs = last["epoch"] - first["epoch"]
    return epochs * examples_per_epoch / (last["wall_time_s"] - first["wall_time_s"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--torch-only``/``--torch-threads``: the torch subprocess)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the R=1 engine run")
    parser.add_argument("--replica-epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many (bare, R=1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-threads", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load_mnist() -> Any:
    return load_npz(REPO / "../shared/data/mnist.npz", flatten=True)


def print_torch_only(args: argparse.Namespace) -> None:
    """The torch subprocess: print (as JSON) the better rate of default and 1 thread."""
    data = load_mnist()
    rates = [
        torch_eager_rate(data.x_train, data.y_train, args.batch, threads=t)
        for t in (args.torch_threads, 1)
    ]
    print(json.dumps(None if rates[0] is None else max(rates)))


def engine_base_overrides(batch: int) -> list[str]:
    """`repro.train` overrides of every engine run: the MLP, plain SGD, no noise."""
    return [
        "~experiment",
        "name=bench",
        "data=mnist",
        "data.flatten=true",
        "model=deep_mlp",
        "optimizer=sgd",
        "optimizer.learning_rate=0.01",
        "noise=none",
        f"trainer.batch_size={batch}",
        "trainer.eval_batch_size=2000",
        "trainer.progress=never",
    ]


@dataclasses.dataclass
class Setup:
    """What every comparison shares: options, training data, engine overrides, scratch dir."""

    args: argparse.Namespace
    x: np.ndarray
    y: np.ndarray
    base: list[str]
    tmp: Path

    @property
    def per_epoch(self) -> int:
        """Examples per epoch (whole batches only)."""
        return (len(self.x) // self.args.batch) * self.args.batch


def compare_single_run(setup: Setup, results: dict[str, Any]) -> None:
    """1. A whole R = 1 `repro.train` run vs a bare scan, a Python loop and PyTorch eager."""
    args, x, y, base, tmp = setup.args, setup.x, setup.y, setup.base, setup.tmp
    batch, per_epoch = args.batch, setup.per_epoch
    bare = engine_rate = every_epoch_rate = 0.0
    epochs = f"trainer.epochs={args.epochs}"
    for i in range(args.repeats):  # best of: the machine is shared, noise only slows down
        bare = max(bare, bare_scan_rate(x, y, batch))
        one = engine_run([*base, epochs], tmp / f"r1_{i}")
        engine_rate = max(engine_rate, steady_rate(one, per_epoch))
        every = engine_run([*base, epochs, "trainer.checkpoint_min_interval_s=0"], tmp / f"e{i}")
        every_epoch_rate = max(every_epoch_rate, steady_rate(every, per_epoch))
    loop = python_loop_rate(x, y, batch)
    torch_rate = max(_torch_in_subprocess(batch) or 0.0 for _ in range(args.repeats)) or None
    results.update(engine=engine_rate, bare_scan=bare, python_loop=loop, torch_eager=torch_rate)
    results["engine_checkpoint_every_epoch"] = every_epoch_rate
    print("1. whole repro.train run, R=1 (eval + metrics.jsonl every epoch, default checkpoints):")
    print(f"   repro.train          {engine_rate:>10,.0f} examples/s")
    print(
        f"   bare lax.scan epoch  {bare:>10,.0f} examples/s   "
        f"run / bare  = {engine_rate / bare:.2f}  (target >= 0.9)"
    )
    print(
        f"   ... checkpoint every epoch (Orbax, ~0.1 s each) {every_epoch_rate:,.0f} examples/s"
        f" = {every_epoch_rate / bare:.2f} of bare"
    )
    print(f"   jitted Python loop   {loop:>10,.0f} examples/s")
    if torch_rate:
        print(
            f"   PyTorch eager        {torch_rate:>10,.0f} examples/s   "
            f"run / torch = {engine_rate / torch_rate:.2f}  (target >= 1.5)"
        )
    else:
        print("   PyTorch eager        not installed (pip install torch==2.13.0)")


def compare_replicas(setup: Setup, results: dict[str, Any]) -> float:
    """2. R replicas in one program vs R separate runs; returns the matmul peak (GFLOP/s)."""
    args, base, tmp, per_epoch = setup.args, setup.base, setup.tmp, setup.per_epoch
    jax_devices = usable_cores()
    print(
        f"\n2. R replicas (seeds) in one program vs R separate runs ({args.replica_epochs} epochs):"
    )
    # Separate runs: the first compiles, the next R-1 find the programs in the persistent
    # compilation cache (as consecutive `-m seed=...` jobs do); the R-replica run compiles.
    epochs = f"trainer.epochs={args.replica_epochs}"
    cache = tmp / "single_cache"
    cold = engine_run([*base, epochs], tmp / "single_cold", cache)
    warm = engine_run([*base, epochs], tmp / "single_warm", cache)
    single_rate = max(steady_rate(cold, per_epoch), steady_rate(warm, per_epoch), results["engine"])
    # The most R replicas can gain over one run once compiled: the matmul peak over the FLOP/s
    # one run achieves (the replicas' work is the same matmuls, batched).
    peak = matmul_gflops()
    ceiling = peak / (single_rate * model_flops_per_example() / 1e9)
    narrow = {r: layer_matmul_gflops(r, args.batch) for r in (1, max(args.replicas))}
    results["replicas"] = {"steady_flop_ceiling": ceiling, "layer_matmul_gflops": narrow}
    for r in args.replicas:
        run = engine_run([*base, epochs, f"replicas.seeds={r}"], tmp / f"r{r}")
        rate = steady_rate(run, per_epoch)  # data examples/s; each trains r replicas
        steady = r * rate / single_rate
        separate = cold["total_s"] + (r - 1) * warm["total_s"]
        end_to_end = separate / run["total_s"]
        results["replicas"][r] = {"steady_speedup": steady, "end_to_end_speedup": end_to_end}
        print(
            f"   R={r:<3d} end to end {end_to_end:5.2f}x  ({run['total_s']:.1f} s vs "
            f"{cold['total_s']:.1f} + {r - 1} x {warm['total_s']:.1f} s);  steady state "
            f"{steady:4.2f}x  ({r * rate:,.0f} vs {single_rate:,.0f} replica-examples/s)"
        )
    print(
        f"   (end to end: each `python -m repro.train` process from start to exit, {jax_devices}"
        " XLA host devices in the CLI; steady state: after compilation, eval and checkpoints"
        " included)"
    )
    print(
        f"   FLOP ceiling of the steady-state speed-up: one run achieves "
        f"{single_rate * model_flops_per_example() / 1e9:.0f} GFLOP/s of the matmul's "
        f"{peak:.0f}, so R replicas can be at most {ceiling:.1f}x faster once compiled"
    )
    r_max = max(args.replicas)
    print(
        f"   but the hidden layers' {args.batch}x{WIDTH}x{WIDTH} matmul runs at "
        f"{narrow[1]:.0f} GFLOP/s alone and {narrow[r_max]:.0f} GFLOP/s batched over {r_max} "
        "replicas: batching these narrow matmuls buys little; the gain comes from the shared "
        "first layer"
    )
    return peak


def compare_model_flops(setup: Setup, peak: float, results: dict[str, Any]) -> None:
    """3. Achieved model FLOP/s of the bare scanned epoch (batch 1024 and 64) vs ``peak``."""
    print("\n3. achieved model FLOP/s (bare scanned epoch) vs a 4096^2 matmul:")
    rate_1024 = bare_scan_rate(setup.x, setup.y, 1024, epochs=2)
    achieved = rate_1024 * model_flops_per_example() / 1e9
    rate_64 = results["bare_scan"] * model_flops_per_example() / 1e9
    results.update(matmul_gflops=peak, model_gflops_b1024=achieved, fraction_b1024=achieved / peak)
    print(f"   4096^2 matmul        {peak:8.1f} GFLOP/s")
    print(f"   MLP at batch 1024    {achieved:8.1f} GFLOP/s = {achieved / peak:.0%} of the matmul")
    print(f"   MLP at batch 64      {rate_64:8.1f} GFLOP/s = {rate_64 / peak:.0%} of the matmul")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.torch_only:  # run in a fresh process: no XLA threads competing with torch's
        print_torch_only(args)
        return

    data = load_mnist()
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    print(f"devices: {jax.devices()}  cpu cores: {os.cpu_count()}  load avg: {os.getloadavg()}")
    print(f"model: {DEPTH} x {WIDTH} ReLU MLP on MNIST, batch {args.batch}, SGD; float32\n")
    setup = Setup(
        args=args,
        x=data.x_train,
        y=data.y_train,
        base=engine_base_overrides(args.batch),
        tmp=Path(tempfile.mkdtemp(prefix="bench_")),
    )
    compare_single_run(setup, results)
    peak = compare_replicas(setup, results)
    compare_model_flops(setup, peak, results)
    results["load_average_end"] = os.getloadavg()
    print(f"\nload avg at the end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
