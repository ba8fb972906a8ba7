"""Neelakantan et al. 2015 (arXiv:1511.06807, Section 4.1): the facts Table 1 rests on, fast.

The full table is a long run (README, "Neelakantan et al. 2015"); here: the zero-init network
is provably stuck without noise, noise un-sticks it, and a tiny cell runs through the real
command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from repro.models import DeepMLP
from repro.optim import add_noise

REPO_ROOT = Path(__file__).resolve().parents[2]


def _zero_init_mlp() -> tuple[DeepMLP, dict, jax.Array, jax.Array]:
    model = DeepMLP(depth=20, width=50, num_outputs=10, kernel_init_name="zero", bias_init=0.0)
    x = jax.random.uniform(jax.random.key(0), (64, 784))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 10)
    params = model.init(jax.random.key(2), x, train=False)["params"]
    return model, params, x, y


def _loss(model: DeepMLP, params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = model.apply({"params": params}, x, train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _split_readout(tree: dict) -> tuple[list[jax.Array], list[jax.Array]]:
    """(leaves of the hidden layers, leaves of the readout layer)."""
    hidden = [leaf for name in tree if name != "readout" for leaf in jax.tree.leaves(tree[name])]
    return hidden, jax.tree.leaves(tree["readout"])


def test_zero_init_without_noise_is_provably_stuck():
    """With W = 0 every hidden activation is 0, so dL/dW_l = h_{l-1}^T delta_l = 0 for every
    layer and delta_l = W_{l+1}^T delta_{l+1} = 0 below the readout: only the readout bias
    learns, the logits stay input-independent, and the network predicts one class."""
    model, params, x, y = _zero_init_mlp()
    grads = jax.jit(jax.grad(lambda p: _loss(model, p, x, y)))(params)
    hidden, readout = _split_readout(grads)
    assert len(hidden) == 40  # 20 hidden layers x (kernel, bias)
    for leaf in hidden:
        np.testing.assert_array_equal(np.asarray(leaf), 0.0)
    readout_kernel = next(leaf for leaf in readout if leaf.ndim == 2)
    readout_bias = next(leaf for leaf in readout if leaf.ndim == 1)
    np.testing.assert_array_equal(np.asarray(readout_kernel), 0.0)
    assert float(jnp.abs(readout_bias).sum()) > 0.0

    # Many clipped SGD steps later the hidden weights are still exactly zero and every input
    # gets the same prediction.
    tx = optax.chain(optax.clip_by_global_norm(10.0), optax.sgd(0.1))
    state = tx.init(params)
    step = jax.jit(lambda p, s: _sgd_step(tx, model, p, s, x, y))
    for _ in range(50):
        params, state = step(params, state)
    hidden, _ = _split_readout(params)
    for leaf in hidden:
        np.testing.assert_array_equal(np.asarray(leaf), 0.0)
    logits = model.apply({"params": params}, x, train=False)
    assert np.ptp(np.asarray(logits), axis=0).max() == 0.0


def _sgd_step(tx, model, params, state, x, y):
    grads = jax.grad(lambda p: _loss(model, p, x, y))(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def test_gradient_noise_breaks_the_zero_init_symmetry():
    """One noisy step makes every hidden weight non-zero, after which gradients flow."""
    model, params, x, y = _zero_init_mlp()
    tx = optax.chain(optax.clip_by_global_norm(10.0), add_noise(0.01, 0.55, 0), optax.sgd(0.1))
    state = tx.init(params)
    params, state = jax.jit(lambda p, s: _sgd_step(tx, model, p, s, x, y))(params, state)
    grads = jax.jit(jax.grad(lambda p: _loss(model, p, x, y)))(params)
    hidden, _ = _split_readout(grads)
    assert all(float(jnp.abs(leaf).sum()) > 0.0 for leaf in hidden)


@pytest.mark.parametrize("cell", ["simple_clip10_noise", "zero_clip10"])
def test_tiny_cell_through_the_command_line(tmp_path, cell):
    """A Table 1 cell shrunk to seconds (2 seeds x the two learning rates, 1 epoch on 1024
    MNIST images) through `python -m repro.train`: 4 replicas, paired lr grid, summary."""
    mnist = REPO_ROOT.parent / "shared" / "data" / "mnist.npz"
    if not mnist.exists():
        pytest.skip(f"real MNIST not found at {mnist}")
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    command = [
        sys.executable, "-m", "repro.train", f"experiment=neelakantan2015/{cell}",
        "replicas.seeds=2", "trainer.epochs=1", "data.n_train=1024", "data.n_test=512",
        "trainer.progress=never",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = list(tmp_path.rglob("summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["experiment"] == f"neelakantan2015/{cell}"
    replicas = summary["replicas"]
    assert len(replicas) == 4
    assert sorted(r["hparams"]["optimizer.learning_rate"] for r in replicas) == [
        0.01, 0.01, 0.1, 0.1,
    ]  # fmt: skip
    accuracies = [r["final"]["test_accuracy"] for r in replicas]
    if cell == "zero_clip10":
        # Stuck: one class for every input, whatever the seed or learning rate.
        assert max(accuracies) < 0.2
    else:
        assert all(0.0 <= a <= 1.0 for a in accuracies)
