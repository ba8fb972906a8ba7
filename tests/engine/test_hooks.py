"""Diagnostics hooks against closed forms: a linear model, so every gradient and the Hessian
are known exactly, and the hook's values are compared with float64 numpy.

Least squares, l_i = 0.5 (w.x_i + b - y_i)^2 = 0.5 r_i^2 (task=mse):
  per-example gradient g_i = r_i (x_i, 1);  noise strength N = mean_i |g_i|^2 - |mean_i g_i|^2;
  Hessian of L = mean_i l_i: H = A^T A / n with A = [X, 1] (independent of the parameters).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.data import make_linear_regression
from repro.engine import train_and_evaluate
from repro.engine.hooks import (
    GradientNoiseStrength,
    HessianTopEigenvalue,
    HessianTopEigenvalues,
    HookContext,
    NoiseCovarianceSpectrum,
)
from repro.engine.lanczos import lanczos_top_eigenvalues
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
            "+diagnostics.hessian.every_epochs=1",
            "+diagnostics.lanczos._target_=repro.engine.hooks.HessianTopEigenvalues",
            "+diagnostics.lanczos.num_examples=256",
            "+diagnostics.lanczos.k=3",
            # lanczos keeps its default (every 50 epochs): the last epoch logs it anyway
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
        np.testing.assert_allclose(record["noise/noise_to_loss"][r], strength / loss, rtol=1e-5)
    a = np.concatenate([data["x"][:256], np.ones((256, 1))], axis=1).astype(np.float64)
    spectrum = np.linalg.eigvalsh(a.T @ a / 256)
    np.testing.assert_allclose(record["hessian/top_eigenvalue"], [spectrum[-1]] * 2, rtol=1e-3)
    # Lanczos on a 4 x 4 Hessian: exact after 4 steps (the default 30 are capped at 4)
    np.testing.assert_allclose(record["lanczos/eigenvalues"], [spectrum[::-1][:3]] * 2, rtol=1e-4)


@pytest.mark.parametrize("hook", [GradientNoiseStrength, HessianTopEigenvalue])
def test_hook_settings_are_checked(hook: type) -> None:
    with pytest.raises(ValueError, match=r"^every_epochs must be an integer >= 1, got 0$"):
        hook(every_epochs=0)
    with pytest.raises(ValueError, match=r"^num_examples must be an integer >= 1, got 2.5$"):
        hook(num_examples=2.5)


def _symmetric(eigenvalues: np.ndarray, seed: int) -> np.ndarray:
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(eigenvalues.size,) * 2))
    return rotation @ np.diag(eigenvalues) @ rotation.T


def _lanczos(matrix: np.ndarray, iterations: int, k: int) -> np.ndarray:
    a = jnp.asarray(matrix, jnp.float32)
    start = jax.random.normal(jax.random.key(1), (matrix.shape[0],))
    return np.asarray(
        lanczos_top_eigenvalues(lambda v: a @ v, start, iterations, k, jax.random.key(2))
    )


def test_lanczos_returns_the_largest_algebraic_eigenvalues() -> None:
    """An indefinite 40 x 40 matrix whose dominant eigenvalue is -9: the top 4 are the largest
    algebraic ones, exact after 40 steps; after 20 steps the separated top two are too."""
    eigenvalues = np.concatenate([[4.0, 3.0, 1.0, 0.9], np.linspace(-1.0, 0.5, 35), [-9.0]])
    matrix = _symmetric(eigenvalues, seed=0)
    # measured worst relative error 2e-6 (float32)
    np.testing.assert_allclose(_lanczos(matrix, 40, 4), [4.0, 3.0, 1.0, 0.9], rtol=1e-4)
    np.testing.assert_allclose(_lanczos(matrix, 20, 2), [4.0, 3.0], rtol=1e-3)


def test_lanczos_restarts_after_a_breakdown() -> None:
    """Three distinct eigenvalues in 12 dimensions: the Krylov space is invariant after three
    steps; the restarts find the repeated eigenvalues with their multiplicities."""
    matrix = _symmetric(np.array([5.0] * 3 + [2.0] * 4 + [-7.0] * 5), seed=1)
    np.testing.assert_allclose(_lanczos(matrix, 12, 5), [5, 5, 5, 2, 2], rtol=1e-4, atol=1e-4)


def test_lanczos_hook_of_least_squares_is_the_closed_form() -> None:
    rng = np.random.default_rng(7)
    params = [_linear_params(rng) for _ in range(2)]
    data = _regression_data(120)
    hook = HessianTopEigenvalues(num_examples=100, k=3, iterations=10)
    values = hook(_context(_least_squares(), params, data))
    a = np.concatenate([data["x"][:100], np.ones((100, 1))], axis=1).astype(np.float64)
    expected = np.linalg.eigvalsh(a.T @ a / 100)[::-1][:3]
    np.testing.assert_allclose(np.asarray(values["eigenvalues"]), [expected] * 2, rtol=1e-4)


def test_lanczos_hook_is_not_fooled_by_a_dominant_negative_eigenvalue() -> None:
    """The indefinite quadratic above, eigenvalues (2/3, 1/15, -1): the top two."""
    task = Task("weighted_square", _weighted_square, {}, "test_loss", "min")
    program = ReplicaModel(Linear(num_outputs=1, use_bias=False), task, None, 3)  # type: ignore[arg-type]
    rotation, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(DIM, DIM)))
    data = {"x": rotation.astype(np.float32), "y": np.array([2.0, -3.0, 0.2], np.float32)}
    params = [_linear_params(np.random.default_rng(6), use_bias=False)]
    values = HessianTopEigenvalues(num_examples=3, k=2)(_context(program, params, data))
    np.testing.assert_allclose(np.asarray(values["eigenvalues"]), [[2 / 3, 1 / 15]], rtol=1e-4)


def test_minibatch_covariance_trace_is_that_of_every_minibatch() -> None:
    """All C(8, 3) minibatches of 3 of 8 examples: the trace of the covariance of their mean
    gradient, computed by enumeration, is N / B (n - B) / (n - 1)."""
    rng = np.random.default_rng(8)
    params = [_linear_params(rng)]
    data = _regression_data(8, seed=9)
    hook = GradientNoiseStrength(num_examples=8, chunk=4, batch_size=3)
    values = hook(_context(_least_squares(), params, data))
    x = data["x"].astype(np.float64)
    w = params[0]["dense"]["kernel"][:, 0].astype(np.float64)
    residual = x @ w + float(params[0]["dense"]["bias"][0]) - data["y"]
    grads = np.concatenate([residual[:, None] * x, residual[:, None]], axis=1)
    means = np.array([grads[list(s)].mean(axis=0) for s in itertools.combinations(range(8), 3)])
    trace = np.sum(np.var(means, axis=0))
    np.testing.assert_allclose(np.asarray(values["minibatch_covariance_trace"]), [trace], rtol=1e-5)
    strength, loss = _numpy_noise_strength(params[0], data, 8)
    np.testing.assert_allclose(np.asarray(values["noise_to_loss"]), [strength / loss], rtol=1e-5)


def test_noise_spectrum_of_least_squares_is_the_closed_form() -> None:
    """Exact: the eigenvalues of mean_i (g_i - g)(g_i - g)^T with g_i = r_i a_i; decoupled:
    2 L times those of H = A^T A / n."""
    rng = np.random.default_rng(10)
    params = [_linear_params(rng) for _ in range(2)]
    data = _regression_data(64, seed=11)
    hook = NoiseCovarianceSpectrum(num_examples=50, k=3, chunk=16)
    values = hook(_context(_least_squares(), params, data))
    a = np.concatenate([data["x"][:50], np.ones((50, 1))], axis=1).astype(np.float64)
    hessian_top = np.linalg.eigvalsh(a.T @ a / 50)[::-1][:3]
    for r, p in enumerate(params):
        w = np.concatenate([p["dense"]["kernel"][:, 0], p["dense"]["bias"]]).astype(np.float64)
        residual = a @ w - data["y"][:50]
        grads = residual[:, None] * a
        centred = grads - grads.mean(axis=0)
        exact = np.linalg.eigvalsh(centred.T @ centred / 50)[::-1][:3]
        loss = np.mean(0.5 * residual**2)
        # measured worst relative error 4e-6
        np.testing.assert_allclose(np.asarray(values["exact"])[r], exact, rtol=1e-4)
        np.testing.assert_allclose(
            np.asarray(values["decoupled"])[r], 2 * loss * hessian_top, rtol=1e-4
        )


def test_spectrum_hook_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"^iterations must be >= k=5, got 4$"):
        HessianTopEigenvalues(k=5, iterations=4)
    with pytest.raises(ValueError, match=r"^k must be <= num_examples=8, got 9$"):
        NoiseCovarianceSpectrum(num_examples=8, k=9)
    with pytest.raises(ValueError, match=r"^batch_size must be <= num_examples=8, got 9$"):
        GradientNoiseStrength(num_examples=8, batch_size=9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            (
                "+diagnostics.noise._target_=repro.engine.hooks.GradientNoiseStrength",
                "+diagnostics.noise.num_examples=200",
            ),
            "diagnostics.noise: num_examples must be <= the 100 training examples the hooks "
            "are given, got 200",
        ),
        (
            (
                "+diagnostics.top._target_=repro.engine.hooks.HessianTopEigenvalues",
                "+diagnostics.top.num_examples=50",
                "+diagnostics.top.k=5",
            ),
            "diagnostics.top: k must be <= the 4 parameters of the model, got 5",
        ),
        (
            (
                "+diagnostics.top._target_=repro.engine.hooks.HessianTopEigenvalues",
                "+diagnostics.top.k=3",
                "+diagnostics.top.iterations=2",
            ),
            "diagnostics.top: iterations must be >= k=3, got 2",
        ),
        (
            (
                "+diagnostics.noise._target_=repro.engine.hooks.GradientNoiseStrength",
                "+diagnostics.noise.num_examples=50",
                "+diagnostics.noise.requires_task=binary_mse",
            ),
            "diagnostics.noise: requires_task='binary_mse' (the theory of this measurement "
            "needs that loss), got task='mse'",
        ),
    ],
)
def test_bad_diagnostics_are_one_line_before_compilation(
    compose_cfg, tmp_path, monkeypatch, overrides: tuple[str, ...], message: str
) -> None:
    from repro.engine import experiment
    from repro.errors import ConfigError

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled before the check")

    monkeypatch.setattr(experiment, "_place", never)
    cfg = compose_cfg(
        "~experiment",
        "name=test",
        "data=linear_regression",
        "data.num_train=100",
        "data.num_test=10",
        "data.dim=3",
        "model=linear",
        "task=mse",
        "trainer.batch_size=10",
        "noise=none",
        "trainer.progress=never",
        *overrides,
        tiny=False,
    )
    with pytest.raises(ConfigError) as error:
        train_and_evaluate(cfg, tmp_path)
    assert str(error.value) == message
