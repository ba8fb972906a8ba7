"""Example-weight samplers: weight laws, gradient covariances, effective batch sizes.

Monte-Carlo checks use fixed keys and per-entry tolerances of 5 standard errors, the
standard error of each covariance entry being estimated from the same samples.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repro.optim as ro

K = 16  # examples per step in the least-squares problem
DRAWS = 20_000


def _samplers():
    return {
        "sgd_sampling": (ro.sgd_sampling(4), _sgd_cov(K, 4)),
        "bernoulli_sampling": (ro.bernoulli_sampling(0.25), 3.0 * np.eye(K)),
        "gaussian_fisher": (ro.gaussian_fisher(0.8), 0.64 * np.eye(K)),
        "gaussian_gradient_covariance": (
            ro.gaussian_gradient_covariance(0.8),
            0.64 * (np.eye(K) - np.ones((K, K)) / K),
        ),
        "sparse_gaussian": (ro.sparse_gaussian(1.5, 4), 2.25 * 4 / K * np.eye(K)),
        "ghost_batch_gaussian": (
            ro.ghost_batch_gaussian(0.8, 4),
            0.64 * np.kron(np.eye(K // 4), np.eye(4) - np.ones((4, 4)) / 4),
        ),
        "noise_enhancement": (ro.noise_enhancement(0.5), _enhancement_cov(2 * K, 0.5)),
    }


def _sgd_cov(k, b):
    return (k / b - 1) / (k - 1) * (k * np.eye(k) - np.ones((k, k)))


def _enhancement_cov(k, alpha):
    return (1 + 2 * alpha) ** 2 / (k - 1) * (k * np.eye(k) - np.ones((k, k)))


def _draw(sampler, num, draws=DRAWS, seed=0):
    keys = jax.random.split(jax.random.key(seed), draws)
    return np.asarray(jax.jit(jax.vmap(lambda k: sampler(k, num)))(keys), np.float64)


def _assert_cov_close(samples, mean, expected):
    """Every entry of the covariance within 5 standard errors of ``expected``.

    The covariance is estimated around the known ``mean``: a mean of i.i.d. products, whose
    standard error is estimated from the same products (a small floor covers entries that
    are constant, e.g. the variance of a two-point weight).
    """
    centered = samples - mean
    n = samples.shape[0]
    products = centered[:, :, None] * centered[:, None, :]
    empirical = products.mean(axis=0)
    standard_error = np.sqrt(products.var(axis=0) / n) + 1e-6 * np.abs(expected).max()
    excess = np.abs(empirical - expected) / standard_error
    assert excess.max() < 5, (excess.max(), empirical, expected)
    # Aggregates detect small overall errors: trace(C) = E|c|^2 and 1'C1 = E(1'c)^2.
    for per_sample, target in (
        ((centered**2).sum(axis=1), np.trace(expected)),
        (centered.sum(axis=1) ** 2, expected.sum()),
    ):
        error = abs(per_sample.mean() - target)
        floor = 1e-5 * (abs(target) + np.trace(expected))  # float32 rounding of exact sums
        assert error < 5 * per_sample.std() / math.sqrt(n) + floor, (error, target)


# ----------------------------------------------------------------------------- weight laws


@pytest.mark.parametrize("name", list(_samplers()))
def test_weights_have_unit_mean_and_the_documented_covariance(name):
    sampler, expected = _samplers()[name]
    num = sampler.num_examples(K)
    weights = _draw(sampler, num)
    assert weights.shape == (DRAWS, num)
    single = sampler(jax.random.key(1), num)
    assert single.dtype == jnp.float32 and single.shape == (num,)
    standard_error = weights.std(axis=0) / math.sqrt(DRAWS) + 1e-12
    assert np.max(np.abs(weights.mean(axis=0) - 1) / standard_error) < 5
    _assert_cov_close(weights, 1.0, expected)
    np.testing.assert_allclose(sampler.weight_covariance(num), expected, atol=1e-12)


def test_exact_counts_of_the_subset_samplers():
    weights = _draw(ro.sgd_sampling(4), K, draws=200)
    assert np.all(np.sum(weights != 0, axis=1) == 4) and np.all(weights[weights != 0] == K / 4)
    enhanced = _draw(ro.noise_enhancement(0.5), 2 * K, draws=200)
    assert np.all(np.sum(enhanced > 0, axis=1) == K)
    np.testing.assert_allclose(np.unique(enhanced), [-1.0, 3.0])
    sparse = _draw(ro.sparse_gaussian(1.0, 4), K, draws=200)
    assert np.all(np.sum(sparse != 1, axis=1) == 4)
    ghost = _draw(ro.ghost_batch_gaussian(1.0, 4), K, draws=200)
    np.testing.assert_allclose(ghost.reshape(200, K // 4, 4).sum(axis=2), 4.0, atol=1e-5)


# ----------------------------------------------------------------------------- gradients


def _least_squares(seed=0, k=K, d=3):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(k, d)), jnp.float32)
    y = jnp.asarray(rng.normal(size=k), jnp.float32)
    theta = jnp.asarray(rng.normal(size=d), jnp.float32)
    return x, y, theta


def _per_example_loss(theta, x, y):
    return 0.5 * (x @ theta - y) ** 2


@pytest.mark.parametrize("name", list(_samplers()))
def test_gradient_of_weighted_mean_loss_has_the_closed_form_covariance(name):
    """The gradient of mean(w * loss) over a fixed batch: mean G 1 / k, cov G Cov(w) G^T / k^2."""
    sampler, weight_cov = _samplers()[name]
    num = sampler.num_examples(K)
    x, y, theta = _least_squares(k=num)

    def gradient(key):
        weights = sampler(key, num)
        return jax.grad(lambda t: jnp.mean(weights * _per_example_loss(t, x, y)))(theta)

    keys = jax.random.split(jax.random.key(3), DRAWS)
    grads = np.asarray(jax.jit(jax.vmap(gradient))(keys), np.float64)
    per_example = np.asarray((x @ theta - y)[:, None] * x, np.float64)  # rows: grad of loss_i
    mean = per_example.mean(axis=0)
    expected = per_example.T @ weight_cov @ per_example / num**2
    standard_error = grads.std(axis=0) / math.sqrt(DRAWS) + 1e-12
    assert np.max(np.abs(grads.mean(axis=0) - mean) / standard_error) < 5
    _assert_cov_close(grads, mean, expected)


# ----------------------------------------------------------------------------- effective batch


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("bernoulli_sampling", {}),
        ("gaussian_fisher", {}),
        ("gaussian_gradient_covariance", {}),
        ("sparse_gaussian", {"num_noisy": 8}),
        ("ghost_batch_gaussian", {"ghost_size": 8}),
        ("noise_enhancement", {}),
    ],
)
def test_noise_scale_helper_hits_the_target_effective_batch_size(method, extra):
    """Over i.i.d. examples with zero-mean gradients, Var(g) = Sigma / B_eff (Sigma = 1 here)."""
    batch, target = 32, 8.0
    scale = ro.noise_scale_for_effective_batch_size(method, target, batch, **extra)
    factories = {
        "bernoulli_sampling": lambda: ro.bernoulli_sampling(scale),
        "gaussian_fisher": lambda: ro.gaussian_fisher(scale),
        "gaussian_gradient_covariance": lambda: ro.gaussian_gradient_covariance(scale),
        "sparse_gaussian": lambda: ro.sparse_gaussian(scale, extra["num_noisy"]),
        "ghost_batch_gaussian": lambda: ro.ghost_batch_gaussian(scale, extra["ghost_size"]),
        "noise_enhancement": lambda: ro.noise_enhancement(scale),
    }
    sampler = factories[method]()
    assert sampler.effective_batch_size(batch) == pytest.approx(target)
    num = sampler.num_examples(batch)

    # Scalar model at theta = 0 with y independent of x: grad_i = -x_i y_i, mean 0, variance 1.
    def gradient(key):
        data_key, weight_key = jax.random.split(key)
        x, y = jax.random.normal(data_key, (2, num))
        weights = sampler(weight_key, num)
        return jax.grad(lambda t: jnp.mean(weights * 0.5 * (t * x - y) ** 2))(0.0)

    draws = 40_000
    grads = np.asarray(jax.jit(jax.vmap(gradient))(jax.random.split(jax.random.key(5), draws)))
    variance = grads.astype(np.float64).var()
    fourth = np.mean(grads.astype(np.float64) ** 4)
    standard_error = math.sqrt((fourth - variance**2) / draws)
    assert abs(variance - 1 / target) < 5 * standard_error


def test_noise_enhancement_effective_batch_size_formula():
    for alpha in (0.0, 0.5, 1.0, 3.0):
        expected = 64 / (1 + 2 * alpha * (1 + alpha))
        assert ro.noise_enhancement_effective_batch_size(64, alpha) == pytest.approx(expected)
        assert ro.noise_enhancement(alpha).effective_batch_size(64) == pytest.approx(expected)
        back = ro.noise_scale_for_effective_batch_size("noise_enhancement", expected, 64)
        assert back == pytest.approx(alpha, abs=1e-9)
    assert ro.sgd_sampling(10).effective_batch_size(100) == 10.0
    assert ro.gaussian_fisher(0.0).effective_batch_size(100) == 100.0


# ----------------------------------------------------------------------------- traced, keys


def test_samplers_accept_traced_hyperparameters():
    """The engine builds samplers inside vmap over a grid of scales or alphas."""
    scales = jnp.array([0.0, 0.5, 2.0])
    key = jax.random.key(0)
    for factory in (
        ro.gaussian_fisher,
        ro.gaussian_gradient_covariance,
        lambda s: ro.sparse_gaussian(s, 4),
        lambda s: ro.ghost_batch_gaussian(s, 4),
        ro.noise_enhancement,
        lambda s: ro.bernoulli_sampling(0.5 + 0.2 * s),
    ):
        num = factory(1.0).num_examples(16)
        weights = jax.jit(jax.vmap(lambda s, f=factory, n=num: f(s)(key, n)))(scales)
        assert weights.shape == (3, num) and weights.dtype == jnp.float32
        assert np.all(np.isfinite(weights))
    fisher = jax.vmap(lambda s: ro.gaussian_fisher(s)(key, 16))(scales)
    np.testing.assert_array_equal(fisher[0], np.ones(16))


def test_weights_depend_only_on_the_key():
    sampler = ro.gaussian_fisher(1.0)
    key = jax.random.key(9)
    jitted = jax.jit(sampler, static_argnums=1)(key, 16)
    np.testing.assert_allclose(sampler(key, 16), jitted, atol=1e-6)
    np.testing.assert_array_equal(sampler(key, 16), sampler(jax.random.PRNGKey(9), 16))
    assert not np.allclose(sampler(key, 16), sampler(jax.random.key(10), 16))
    keys = jax.random.split(key, 3)
    batched = jax.vmap(lambda k: sampler(k, 16))(keys)
    np.testing.assert_allclose(batched[2], sampler(keys[2], 16), atol=1e-6)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ro.bernoulli_sampling(0.0), r"p must be in \(0, 1\], got 0.0"),
        (lambda: ro.bernoulli_sampling(1.5), r"p must be in \(0, 1\], got 1.5"),
        (lambda: ro.gaussian_fisher(-1.0), "scale must be >= 0, got -1.0"),
        (lambda: ro.gaussian_gradient_covariance(-0.1), "scale must be >= 0, got -0.1"),
        (lambda: ro.sparse_gaussian(-1.0, 4), "scale must be >= 0, got -1.0"),
        (lambda: ro.sparse_gaussian(1.0, 0), "num_noisy must be >= 1, got 0"),
        (lambda: ro.ghost_batch_gaussian(-1.0, 4), "scale must be >= 0, got -1.0"),
        (lambda: ro.noise_enhancement(-0.5), "alpha must be >= 0, got -0.5"),
        (lambda: ro.sgd_sampling(0), "batch_size must be >= 1, got 0"),
        (lambda: ro.sgd_sampling(100, num_data=50), r"batch_size must be <= num_data \(50\)"),
        (lambda: ro.sgd_sampling(100).num_examples(50), "must be <= the number of examples"),
        (lambda: ro.sparse_gaussian(1.0, 10).num_examples(5), "num_noisy must be <="),
        (lambda: ro.ghost_batch_gaussian(1.0, 7).num_examples(64), "ghost_size must divide"),
        (lambda: ro.gaussian_fisher(1.0).num_examples(0), "batch_size must be >= 1, got 0"),
        (
            lambda: ro.noise_scale_for_effective_batch_size("gaussian_fisher", 100, 64),
            r"effective_batch_size must be <= batch_size \(64\), got 100",
        ),
        (
            lambda: ro.noise_scale_for_effective_batch_size("dropout", 8, 64),
            "method must be one of",
        ),
    ],
)
def test_bad_arguments_raise_value_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()
