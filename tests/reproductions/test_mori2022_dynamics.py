"""Mori et al. 2022 (arXiv 2105.09557) SGD dynamics: the simulation against closed forms, the
power-law fits on exact samples, and tiny runs of both experiments through the command line.

Closed form used for the simulation (d = 1, i.i.d. minibatches of B drawn with replacement):
Delta_{k+1} = (1 - lr h_k) Delta_k + lr xi_k with h_k = mean_b x_b^2, xi_k = mean_b x_b r_b,
r_i = y_i - theta* x_i. E[xi] = 0 (normal equations) and xi_k is independent of Delta_k, so
the stationary variance is v = lr^2 E[xi^2] / (1 - E[(1 - lr h_k)^2]), with E[xi^2] =
mean_i (x_i r_i)^2 / B and E[(1 - lr h_k)^2] = (1 - lr h)^2 + lr^2 Var_i(x_i^2) / B.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from repro.dynamics.linear_sgd import Problem, first_passage_steps, stationary_samples
from repro.dynamics.power_law import escape_slope, fit_phi

REPO_ROOT = Path(__file__).resolve().parents[2]


def _problem(n: int, dim: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return Problem.from_data(x, rng.standard_normal(n).astype(np.float32))


def _stationary_variance(problem: Problem, lr: float, b: int) -> float:
    x = problem.x[:, 0].astype(np.float64)
    r = problem.y - problem.theta_star[0] * x
    h = float(problem.hessian[0, 0])
    xi_sq = np.mean((x * r) ** 2) / b
    contraction = (1 - lr * h) ** 2 + lr**2 * np.var(x**2) / b
    return lr**2 * xi_sq / (1 - contraction)


def test_stationary_variance_is_the_closed_form_for_every_batch_size_in_one_program() -> None:
    """Batch sizes 1 and 4 (weights masked to B_max = 4) at lr 0.1 and 0.3, 4 runs each."""
    problem = _problem(500, 1)
    lrs = np.repeat([0.1, 0.1, 0.3, 0.3], 4)
    sizes = np.repeat([1, 4, 1, 4], 4)
    keys = jax.random.split(jax.random.key(0), lrs.size)
    thetas = stationary_samples(
        problem, lrs, sizes, keys, burn_in=200, sample_every=20, num_samples=1500
    )
    assert thetas.shape == (16, 1500, 1)
    for group in range(4):
        rows = slice(4 * group, 4 * group + 4)
        variance = np.mean((thetas[rows, :, 0] - problem.theta_star[0]) ** 2)
        expected = _stationary_variance(problem, float(lrs[4 * group]), int(sizes[4 * group]))
        # 6000 nearly independent samples: measured worst relative error 3.1 % (keys 0-4)
        np.testing.assert_allclose(variance, expected, rtol=0.08)


def _numpy_first_passage(problem: Problem, lr: float, key: jax.Array, levels, block: int, blocks):
    """The same SGD path in float64 numpy, from the same index draws."""
    theta = problem.theta_star.copy()
    first = np.full(len(levels), -1)
    for b in range(blocks):
        idx = np.asarray(jax.random.randint(jax.random.fold_in(key, b), (block, 1), 0, 200))
        for s in range(block):
            i = idx[s, 0]
            theta = theta - lr * problem.x[i] * (problem.x[i] @ theta - problem.y[i])
            u = problem.relative_excess(theta)
            for j, c in enumerate(levels):
                if first[j] < 0 and u > c - 1:
                    first[j] = b * block + s + 1
    return first


def test_first_passage_steps_follow_the_path() -> None:
    problem = _problem(200, 2, seed=1)
    keys = jax.random.split(jax.random.key(3), 3)
    levels = np.array([1.05, 1.3, 1.8, 50.0])  # the last is never reached: censored
    steps = first_passage_steps(problem, 0.2, 1, keys, levels, max_steps=300, block_steps=50)
    assert steps.shape == (3, 4)
    np.testing.assert_array_equal(steps[:, -1], -1)
    for r in range(3):
        expected = _numpy_first_passage(problem, 0.2, keys[r], levels, 50, 6)
        # float32 vs float64 paths: a crossing can move by a step when L sits at the level
        np.testing.assert_allclose(steps[r, :-1], expected[:-1], atol=1)


@pytest.mark.parametrize(
    ("dim", "phi", "quantile"), [(1, 11.0, 0.5), (1, 1601.0, 0.5), (1, 2.0, 0.0), (3, 5.0, 0.75)]
)
def test_phi_fit_recovers_the_exponent_of_exact_samples(dim: int, phi: float, quantile: float):
    """u = s / (1 - s) with s ~ Beta(d/2, phi - d/2) is exactly the law of (L - L*) / L*
    under p(theta) ~ L^(-phi) (power_law.py)."""
    rng = np.random.default_rng(dim + int(phi))
    s = rng.beta(dim / 2, phi - dim / 2, size=8000)
    fit = fit_phi(s / (1 - s), dim, quantile)
    assert fit.low < phi < fit.high
    # 8000 samples: measured worst relative error 2.4 % (seeds 0-9, these cases)
    assert abs(fit.phi / phi - 1) < 0.06
    assert fit.num_tail == pytest.approx(8000 * (1 - quantile), abs=2)


def test_escape_slope_of_an_exact_power_law() -> None:
    """Exponential passage times with mean 3 c^7: slope 7 inside the bootstrap interval."""
    c = np.array([1.5, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(0)
    times = rng.exponential(3 * c**7, size=(400, c.size))
    fit = escape_slope(c, times)
    assert fit.low < 7.0 < fit.high
    assert abs(fit.slope - 7.0) < 0.2
    assert fit.high - fit.low < 0.6


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPRO_OUTPUT_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "repro.train", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)


TINY_PHI = (
    "experiment=mori2022/phi",
    "dynamics.num_train=2000",
    "dynamics.learning_rates=[0.1]",
    "dynamics.batch_sizes=[1,4]",
    "dynamics.runs=2",
    "dynamics.burn_in=100",
    "dynamics.num_samples=300",
)
TINY_ESCAPE = (
    "experiment=mori2022/escape",
    "dynamics.num_train=1000",
    "dynamics.dims=[2]",
    "dynamics.runs=5",
    "dynamics.max_steps=100000",
    "dynamics.thresholds={2:[1.2,1.5]}",
)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mori2022")
    dirs = {}
    for name, args in (("phi", TINY_PHI), ("escape", TINY_ESCAPE)):
        result = _train(root, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        (summary,) = (root / "runs").glob(f"mori2022/{name}/*/summary.json")
        dirs[name] = summary.parent
    dirs["root"] = root
    return dirs


def test_tiny_phi_run_writes_config_records_and_summary(tiny_runs: dict[str, Path]) -> None:
    from repro.aggregate import load_runs

    workdir = tiny_runs["phi"]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert [(r["hparams"]["batch_size"], r["seed"]) for r in summary["replicas"]] == [
        (1, 0),
        (1, 1),
        (4, 0),
        (4, 1),
    ]
    for replica in summary["replicas"]:
        final = replica["final"]
        theory = 1 + replica["hparams"]["batch_size"] / (0.1 * final["phi_theory"] ** 0 * 1.0)
        assert final["phi_theory"] == pytest.approx(theory, rel=0.05)  # h* ~ 1 for N = 2000
        assert final["relative_deviation"] == pytest.approx(final["phi"] / final["phi_theory"] - 1)
    arrays = np.load(workdir / "dynamics.npz")
    assert arrays["excess"].shape == (4, 300)
    assert (workdir / "config_resolved.yaml").is_file()
    frame = load_runs([workdir]).frame()  # repro.aggregate reads it like any run
    assert set(frame["batch_size"]) == {1, 4}
    assert "final.phi" in frame.columns


def test_tiny_escape_run_fits_a_slope(tiny_runs: dict[str, Path]) -> None:
    summary = json.loads((tiny_runs["escape"] / "summary.json").read_text())
    (replica,) = summary["replicas"]
    assert replica["hparams"] == {"dim": 2}
    final = replica["final"]
    assert final["censored"] == 0
    assert final["slope_low"] <= final["slope"] <= final["slope_high"]
    arrays = np.load(tiny_runs["escape"] / "dynamics.npz")
    steps = arrays["passage_steps_d2"]
    assert steps.shape == (5, 2) and np.all(steps[:, 1] >= steps[:, 0])


@pytest.mark.slow
def test_rerun_is_already_finished(tiny_runs: dict[str, Path]) -> None:
    result = _train(tiny_runs["root"], *TINY_PHI)
    assert result.returncode == 0
    assert "already finished" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("experiment=mori2022/phi", "task=classification"),
            "error: task must be 'mse' for a dynamics experiment (its theory needs a "
            "mean-square loss), got 'classification'",
        ),
        pytest.param(
            ("experiment=mori2022/phi", "dynamics.num_train=100", "dynamics.batch_sizes=[1,200]"),
            "error: dynamics.batch_sizes must be <= dynamics.num_train=100, got [1, 200]",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_dynamics_input_is_one_line(tmp_path: Path, args: tuple[str, ...], message: str):
    result = _train(tmp_path, *args)
    assert result.returncode == 2
    assert result.stderr.strip() == message
    assert not list(tmp_path.glob("runs/*/*/dynamics.npz"))


def _dynamics(experiment: str, **changes: object) -> dict:
    from tests.reproductions.test_mori2022_configs import _compose

    config = _compose(experiment)
    config["dynamics"].update(changes)
    return config


@pytest.mark.parametrize(
    ("experiment", "changes", "message"),
    [
        ("phi", {"batch_sizes": [1, 200], "num_train": 100},
         "dynamics.batch_sizes must be <= dynamics.num_train=100, got [1, 200]"),
        ("phi", {"kind": "walk"},
         "dynamics.kind must be one of ['stationary', 'escape'], got 'walk'"),
        ("phi", {"tail_quantile": 1.0},
         "dynamics.tail_quantile must be a number in [0, 1), got 1.0"),
        ("phi", {"learning_rates": [0.1, -1]},
         "dynamics.learning_rates must be a number > 0 or a non-empty list of them, got [0.1, -1]"),
        ("escape", {"learning_rates": [0.1, 0.2]},
         "dynamics.learning_rates must be one value for kind=escape, got [0.1, 0.2]"),
        ("escape", {"dims": [2, 3]},
         "dynamics.thresholds must be a c grid for dim 3, got {2: [1.5, 1.75, 2.0, 2.25, 2.5], "
         "6: [2.0, 2.5, 3.0, 4.0, 5.0], 10: [3.0, 4.0, 6.0, 8.0, 10.0]}"),
        ("escape", {"thresholds": {2: [0.5, 2.0]}, "dims": [2]},
         "dynamics.thresholds must be a number > 1 or a non-empty list of them, got [0.5, 2.0]"),
    ],
)  # fmt: skip
def test_dynamics_config_checks_name_the_key(experiment: str, changes: dict, message: str):
    from repro.dynamics import validate
    from repro.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        validate(_dynamics(experiment, **changes))
    assert str(error.value) == message
