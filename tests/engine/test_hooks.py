"""Diagnostics hooks against closed forms: a linear model, so every gradient and the Hessian
are known exactly, and the hook's values are compared with float64 numpy.

Least squares, l_i = 0.5 (w.x_i + b - y_i)^2 = 0.5 r_i^2 (task=mse):
  per-example gradient g_i = r_i (x_i, 1);  noise strength N = mean_i |g_i|^2 - |mean_i g_i|^2;
  Hessian of L = mean_i l_i: H = A^T A / n with A = [X, 1] (independent of the parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.data import make_linear_regression
from repro.engine import train_and_evaluate
from repro.engine.hooks import GradientNoiseStrength, HessianTopEigenvalue, HookContext
from repro.engine.steps import ReplicaModel
from repro.engine.tasks import Task, get_task
from repro.engine.train_state import ReplicaState
from repro.models import Linear

DIM = 3
SCALES = np.array([3.0, 1.0, 0.5])  # feature scales: a clear gap between Hessian eigenvalues


def _replicas(params: list[dict]) -> ReplicaState:
    """Replica state holding the given parameter sets (leading replica axis)."""
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *params)
    num = len(params)
    return ReplicaState(
        params=stacked,
        model_state={},
        opt_state={},
        key=jax.random.split(jax.random.key(0), num),
        diverged=jnp.zeros(num, bool),
        diverged_step=jnp.zeros(num, jnp.int32),
        sums={},
    )


def _linear_params(rng: np.random.Generator, use_bias: bool = True) -> dict:
    params = {"kernel": rng.normal(size=(DIM, 1)).astype(np.float32)}
    if use_bias:
        params["bias"] = rng.normal(size=(1,)).astype(np.float32)
    return {"dense": params}


def _regression_data(num_examples: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(num_examples, DIM)) * SCALES).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=num_examples)).astype(np.float32)
    return {"x": x, "y": y}


def _context(program: ReplicaModel, params: list[dict], data: dict) -> HookContext:
    arrays = {k: jnp.asarray(v) for k, v in data.items()}
    return HookContext(0, 0, program, _replicas(params), arrays, jax.random.key(5))


def _least_squares() -> ReplicaModel:
    return ReplicaModel(Linear(num_outputs=1), get_task("mse"), None, 8)  # type: ignore[arg-type]


def _numpy_noise_strength(params: dict, data: dict, n: int) -> tuple[float, float]:
    """(N, L) on the first n examples, float64."""
    x = data["x"][:n].astype(np.float64)
    w = params["dense"]["kernel"][:, 0].astype(np.float64)
    residual = x @ w + float(params["dense"]["bias"][0]) - data["y"][:n]
    grads = np.concatenate([residual[:, None] * x, residual[:, None]], axis=1)  # [n, D + 1]
    strength = np.mean(np.sum(grads**2, axis=1)) - np.sum(np.mean(grads, axis=0) ** 2)
    return float(strength), float(np.mean(0.5 * residual**2))


@pytest.mark.parametrize(
    ("available", "num_examples", "chunk", "used"),
    [
        (50, 40, 16, 40),  # 40 = 2 chunks of 16 + 8: the last chunk is part padding
        (50, 256, 32, 50),  # fewer examples than asked for: all of them
        (10, 256, 32, 10),  # fewer than one chunk (gave 0/0 = NaN)
    ],
)
def test_noise_strength_is_the_per_example_gradient_variance(
    available: int, num_examples: int, chunk: int, used: int
) -> None:
    rng = np.random.default_rng(1)
    params = [_linear_params(rng) for _ in range(2)]
    data = _regression_data(available)
    hook = GradientNoiseStrength(num_examples=num_examples, chunk=chunk)
    values = hook(_context(_least_squares(), params, data))
    for r, p in enumerate(params):
        strength, loss = _numpy_noise_strength(p, data, used)
        # measured worst relative error 3e-7 (10 seeds x 4 replicas x these 3 cases)
        np.testing.assert_allclose(np.asarray(values["noise_strength"])[r], strength, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(values["loss"])[r], loss, rtol=1e-5)


def test_noise_strength_hook_keeps_its_settings() -> None:
    """A call on a small data set must not shrink the examples of the next call (the hook
    used to overwrite its own num_examples with what the data allowed)."""
    rng = np.random.default_rng(2)
    params = [_linear_params(rng)]
    hook = GradientNoiseStrength(num_examples=40, chunk=16)
    hook(_context(_least_squares(), params, _regression_data(20)))
    assert (hook.num_examples, hook.chunk) == (40, 16)
    data = _regression_data(50, seed=3)
    value = hook(_context(_least_squares(), params, data))["noise_strength"]
    np.testing.assert_allclose(
        np.asarray(value)[0], _numpy_noise_strength(params[0], data, 40)[0], rtol=1e-5
    )


def test_hessian_top_eigenvalue_of_least_squares_is_the_closed_form() -> None:
    """H = A^T A / n on the first 100 of 120 examples; the parameters do not matter."""
    rng = np.random.default_rng(4)
    params = [_linear_params(rng) for _ in range(2)]
    data = _regression_data(120)
    values = HessianTopEigenvalue(num_examples=100)(_context(_least_squares(), params, data))
    a = np.concatenate([data["x"][:100], np.ones((100, 1))], axis=1).astype(np.float64)
    expected = np.linalg.eigvalsh(a.T @ a / 100)[-1]
    np.testing.assert_allclose(np.asarray(values["top_eigenvalue"]), [expected] * 2, rtol=1e-3)


def _weighted_square(outputs: jax.Array, batch: dict) -> jax.Array:
    """l_i = 0.5 y_i f_i^2: with signed weights y_i an indefinite quadratic."""
    return 0.5 * batch["y"] * outputs[:, 0] ** 2


def test_hessian_top_eigenvalue_is_the_largest_not_the_largest_in_magnitude() -> None:
    """f = w.x, l_i = 0.5 y_i (w.x_i)^2, x_i the rows of a rotation Q: H = Q^T diag(y) Q / 3,
    eigenvalues y / 3 = (2/3, -1, 1/15). The largest is 2/3; the one largest in magnitude,
    which plain power iteration returns, is -1."""
    task = Task("weighted_square", _weighted_square, {}, "test_loss", "min")
    program = ReplicaModel(Linear(num_outputs=1, use_bias=False), task, None, 3)  # type: ignore[arg-type]
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(DIM, DIM)))
    data = {"x": rotation.astype(np.float32), "y": np.array([2.0, -3.0, 0.2], np.float32)}
    hessian = rotation.T @ np.diag(data["y"].astype(np.float64)) @ rotation / 3
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert abs(eigenvalues[0]) > abs(eigenvalues[-1])  # the dominant one is negative
    params = [_linear_params(np.random.default_rng(6), use_bias=False)]
    values = HessianTopEigenvalue(num_examples=3)(_context(program, params, data))
    np.testing.assert_allclose(np.asarray(values["top_eigenvalue"]), [2 / 3], rtol=1e-3)


def test_hooks_in_a_training_run_match_the_closed_forms(
    compose_cfg, read_metrics, final_params, tmp_path
) -> None:
    """Through the engine: the last epoch's hook values are those of the final parameters on
    the first examples of the training set (data.dim=3: a 4 x 4 Hessian)."""
    summary = train_and_evaluate(
        compose_cfg(
            "~experiment",
            "name=test",
            "trainer.epochs=1",
            "trainer.progress=never",
            "noise=none",
            "data=linear_regression",
            "data.num_train=512",
            "data.num_test=64",
            "data.dim=3",
            "model=linear",
            "task=mse",
            "trainer.batch_size=16",
            "optimizer.learning_rate=0.05",
            "replicas.seeds=2",
            "+diagnostics.noise._target_=repro.engine.hooks.GradientNoiseStrength",
            "+diagnostics.noise.num_examples=100",
            "+diagnostics.hessian._target_=repro.engine.hooks.HessianTopEigenvalue",
            "+diagnostics.hessian.num_examples=256",
            # x ~ N(0, I): lambda_2 / lambda_1 = 0.963, so 20 iterations are 0.6% off
            "+diagnostics.hessian.iterations=300",
            tiny=False,
        ),
        tmp_path,
    )
    record = read_metrics(tmp_path)[-1]
    # task=mse: the objective is the test loss, and there is no accuracy.
    assert summary["objective_metric"] == "test_loss"
    assert "test_accuracy" not in record
    arrays = make_linear_regression(num_train=512, num_test=64, dim=3, seed=0).train_arrays()
    data = {"x": np.asarray(arrays["x"]), "y": np.asarray(arrays["y"])[:, 0]}
    params = final_params(tmp_path)
    for r in range(2):
        replica = jax.tree.map(lambda v, r=r: v[r], params)
        strength, loss = _numpy_noise_strength(replica, data, 100)
        np.testing.assert_allclose(record["noise/noise_strength"][r], strength, rtol=1e-5)
        np.testing.assert_allclose(record["noise/loss"][r], loss, rtol=1e-5)
    a = np.concatenate([data["x"][:256], np.ones((256, 1))], axis=1).astype(np.float64)
    expected = np.linalg.eigvalsh(a.T @ a / 256)[-1]
    np.testing.assert_allclose(record["hessian/top_eigenvalue"], [expected] * 2, rtol=1e-3)


@pytest.mark.parametrize("hook", [GradientNoiseStrength, HessianTopEigenvalue])
def test_hook_settings_are_checked(hook: type) -> None:
    with pytest.raises(ValueError, match=r"^every_epochs must be an integer >= 1, got 0$"):
        hook(every_epochs=0)
    with pytest.raises(ValueError, match=r"^num_examples must be an integer >= 1, got 2.5$"):
        hook(num_examples=2.5)
