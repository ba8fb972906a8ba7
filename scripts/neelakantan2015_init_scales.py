"""Why our simple-init 20 x 50 ReLU runs without noise never leave chance (Neelakantan et al.).

    python scripts/neelakantan2015_init_scales.py      # < 1 minute on 2 CPU cores
    -> paper_figures/neelakantan2015/budget/init_scales.md

At init, with zero biases and W_l ~ N(0, s^2), a ReLU layer of fan-in n keeps half of the
pre-activation variance, so the second moment of the hidden activations obeys

    E[h_1^2] = s^2 E[|x|^2] / 2,     E[h_l^2] = (n s^2 / 2) E[h_{l-1}^2]   (l >= 2).

For the simple init (s = 0.1, n = 50) the gain n s^2 / 2 is 0.25: the signal's rms halves at
every layer, 2^-19 from layer 1 to layer 20, and so do the back-propagated errors, so every
weight gradient is ~2^-19 of its He-init value (gain 1, s^2 = 2 / n). The readout bias, whose
gradient does not pass through the layers, learns the class prior: the network predicts one
class (11.35 % test accuracy). Input scaling multiplies every activation by the same factor
(ReLU is positively homogeneous, biases are 0) and the batch size does not enter the forward
pass, so neither can undo a factor of 2^-19.

Measured here on real MNIST with the repo's DeepMLP (conf: neelakantan2015/protocol), over
20 init seeds and the first B training images: the rms activation per layer against the
closed form, the input-dependent part of the logits, the gradient norms per layer, for the
input scalings unit ([0, 1]), none ([0, 255]) and standardize, batch 64 and 128, simple and He
init. A last table gives the closed-form weight std that the annealed noise alone adds at lr 0.1
(Var = lr^2 eta sum_{t<=T} t^-0.55, gradients ignored) at each pre-registered budget, and the
per-layer gain it implies, for the simple and the zero init.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from repro.aggregate import markdown_table
from repro.data import load_npz
from repro.models import DeepMLP

REPO = Path(__file__).resolve().parents[1]
DEPTH, WIDTH = 20, 50
SIMPLE_STD = 0.1
SCALINGS = ("unit", "none", "standardize")
BATCHES = (64, 128)
SEEDS = 20
LEARNING_RATE = 0.1  # the learning rate whose runs learn (lr 0.01 moves 10x less)
ETA, GAMMA = 0.01, 0.55
BUDGET_STEPS = (7_020, 14_040, 28_080)  # batch 128 at 15, 30, 60 epochs (the study)


def gain(std: float, fan_in: int = WIDTH) -> float:
    """Per-layer factor of the activations' second moment: fan_in * std^2 / 2."""
    return fan_in * std**2 / 2


def predicted_rms(x: np.ndarray, std_first: float, layer_gain: float) -> np.ndarray:
    """Closed-form rms of h_l, l = 1..DEPTH, for inputs x [B, d]."""
    first = std_first**2 * float(np.mean(np.sum(x**2, axis=1))) / 2
    return np.sqrt(first * layer_gain ** np.arange(DEPTH))


def make_measure(model: DeepMLP):
    """jit((keys [S], x, y, w) -> per-seed statistics at init): rms of every hidden activation,
    rms of the input-dependent part of the logits, weight and gradient norms per kernel.

    ``w`` [B_max] weights the examples (1 / B on the first B, else 0): the loss is the mean over
    a batch of B, and one compiled program serves every batch size."""
    kernels = [f"hidden_{i}" for i in range(DEPTH)] + ["readout"]

    def one(key: jax.Array, x: jax.Array, y: jax.Array, w: jax.Array) -> dict[str, jax.Array]:
        params = model.init(key, x, train=False)["params"]

        def loss(p):
            logits = model.apply({"params": p}, x, train=False)
            return jnp.sum(w * optax.softmax_cross_entropy_with_integer_labels(logits, y))

        def mean(values: jax.Array) -> jax.Array:  # over the batch's examples and the units
            return jnp.sum(w * jnp.mean(values, axis=1))

        logits, state = model.apply(
            {"params": params},
            x,
            train=False,
            capture_intermediates=True,
            mutable=["intermediates"],
        )
        inter = state["intermediates"]
        hidden = [jax.nn.relu(inter[f"hidden_{i}"]["__call__"][0]) for i in range(DEPTH)]
        grads = jax.grad(loss)(params)
        return {
            "rms": jnp.stack([jnp.sqrt(mean(h**2)) for h in hidden]),
            "logit_rms": jnp.sqrt(mean((logits - jnp.sum(w[:, None] * logits, axis=0)) ** 2)),
            "grad": jnp.stack([jnp.linalg.norm(grads[k]["kernel"]) for k in kernels]),
            "weight": jnp.stack([jnp.linalg.norm(params[k]["kernel"]) for k in kernels]),
            "grad_readout_bias": jnp.linalg.norm(grads["readout"]["bias"]),
        }

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def sweep(data_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per scaling x batch x init, per-layer rows of simple / unit / 128)."""
    summary, layers = [], []
    keys = jnp.stack([jax.random.key(seed) for seed in range(SEEDS)])
    models = {
        init: DeepMLP(DEPTH, WIDTH, 10, "relu", init, SIMPLE_STD, 0.0) for init in ("simple", "he")
    }
    measures = {init: make_measure(model) for init, model in models.items()}
    for scaling in SCALINGS:
        data = load_npz(data_path, scaling=scaling, flatten=True)
        x = jnp.asarray(data.x_train[: max(BATCHES)])
        y = jnp.asarray(data.y_train[: max(BATCHES)])
        for batch in BATCHES:
            w = jnp.where(jnp.arange(x.shape[0]) < batch, 1.0 / batch, 0.0)
            for init in ("simple", "he"):
                per_seed = measures[init](keys, x, y, w)
                mean = {k: np.asarray(v).mean(axis=0) for k, v in per_seed.items()}
                std_first = SIMPLE_STD if init == "simple" else math.sqrt(2 / x.shape[1])
                layer_gain = gain(SIMPLE_STD) if init == "simple" else 1.0
                closed = predicted_rms(np.asarray(x[:batch]), std_first, layer_gain)
                relative = LEARNING_RATE * mean["grad"] / mean["weight"]
                summary.append(
                    {
                        "scaling": scaling,
                        "batch": batch,
                        "init": init,
                        "rms h1": mean["rms"][0],
                        "rms h1 closed": closed[0],
                        "rms h20": mean["rms"][-1],
                        "rms h20 closed": closed[-1],
                        "logit rms (input-dep.)": mean["logit_rms"],
                        "|g W1|": mean["grad"][0],
                        "|g W20|": mean["grad"][DEPTH - 1],
                        "|g readout W|": mean["grad"][-1],
                        "|g readout b|": mean["grad_readout_bias"],
                        "max lr|g|/|W| hidden": relative[:DEPTH].max(),
                    }
                )
                if (scaling, batch, init) == ("unit", 128, "simple"):
                    for i in range(DEPTH):
                        layers.append(
                            {
                                "layer": i + 1,
                                "rms h (measured)": mean["rms"][i],
                                "rms h (closed form)": closed[i],
                                "measured / closed": mean["rms"][i] / closed[i],
                                "|g W|": mean["grad"][i],
                                "lr |g W| / |W|": relative[i],
                            }
                        )
    return pd.DataFrame(summary), pd.DataFrame(layers)


def noise_drift() -> pd.DataFrame:
    """Closed-form weight std after T noisy steps at lr 0.1 (gradients ignored)."""
    rows = []
    for steps in BUDGET_STEPS:
        variance = LEARNING_RATE**2 * ETA * float(np.sum(np.arange(1, steps + 1) ** -GAMMA))
        for init, start in (("simple", SIMPLE_STD), ("zero", 0.0)):
            std = math.sqrt(start**2 + variance)
            rows.append(
                {
                    "steps (batch 128 epochs)": f"{steps:,} ({steps // 468})",
                    "init": init,
                    "noise std added": math.sqrt(variance),
                    "weight std": std,
                    "per-layer gain n s^2 / 2": gain(std),
                    "20-layer factor of E[h^2]": gain(std) ** (DEPTH - 1),
                }
            )
    return pd.DataFrame(rows)


def report(summary: pd.DataFrame, layers: pd.DataFrame, drift: pd.DataFrame, argv, wall) -> str:
    command = shlex.join(["python", "scripts/neelakantan2015_init_scales.py", *argv])
    return "\n".join(
        [
            "# Neelakantan et al. 2015: activation and gradient scales at init (20 x 50 ReLU)\n",
            f"Generated by `{command}` in {wall:.0f} s (the math: the script's docstring). "
            f"Means over {SEEDS} init seeds on the first B MNIST training images; simple init "
            f"N(0, {SIMPLE_STD}^2) gives a per-layer gain n s^2 / 2 = {gain(SIMPLE_STD):.2f} "
            "(rms x 1/2 per layer), He init gain 1.\n",
            "## Every input scaling and batch size\n",
            markdown_table(summary, ".3g") + "\n",
            "## Per layer: simple init, pixels in [0, 1], batch 128\n",
            markdown_table(layers, ".3g") + "\n",
            "## What the annealed noise alone adds to the weights (closed form, lr 0.1)\n",
            "Var = lr^2 eta sum_{t<=T} t^-0.55 (eta 0.01), gradients ignored; the simple-init "
            "runs with noise began to learn after about 6 epochs (README), i.e. at a gain of "
            "about 0.45.\n",
            markdown_table(drift, ".3g") + "\n",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/mnist.npz")
    parser.add_argument(
        "--out", type=Path, default=REPO / "paper_figures/neelakantan2015/budget/init_scales.md"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary, layers = sweep(args.data)
    text = report(summary, layers, noise_drift(), list(argv or []), time.perf_counter() - start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
