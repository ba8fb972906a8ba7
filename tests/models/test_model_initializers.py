"""Initializers against their closed forms (fixed keys; tolerances from the sampling error)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.models import (
    KERNEL_INIT_NAMES,
    DeepMLP,
    get_bias_init,
    get_kernel_init,
    sussillo_abbott_gain,
)

KEY = jax.random.key(0)
# 784 x 50 = 39,200 samples: the relative standard error of an empirical std is
# 1 / sqrt(2 n) = 0.36%, so 3% is > 8 standard errors.
SHAPE = (784, 50)
REL_TOL = 0.03


def _std(name: str, shape=SHAPE, **kw) -> float:
    return float(jnp.std(get_kernel_init(name, **kw)(KEY, shape, jnp.float32)))


def test_zero_init_is_all_zeros():
    w = get_kernel_init("zero")(KEY, SHAPE, jnp.float32)
    assert w.shape == SHAPE and w.dtype == jnp.float32
    assert not np.any(np.asarray(w))


@pytest.mark.parametrize("scale", [0.1, 0.02])
def test_simple_init_std_is_init_scale(scale):
    w = get_kernel_init("simple", init_scale=scale)(KEY, SHAPE, jnp.float32)
    assert abs(float(jnp.mean(w))) < 4 * scale / math.sqrt(w.size)
    assert _std("simple", init_scale=scale) == pytest.approx(scale, rel=REL_TOL)


def test_he_init_std_is_sqrt_2_over_fan_in():
    assert _std("he") == pytest.approx(math.sqrt(2 / 784), rel=REL_TOL)
    # Untruncated normal (jax's he_normal truncates at 2 std): values beyond 2 std exist.
    w = np.asarray(get_kernel_init("he")(KEY, SHAPE, jnp.float32))
    assert np.mean(np.abs(w) > 2 * math.sqrt(2 / 784)) == pytest.approx(0.0455, abs=0.005)


def test_conv_kernel_fan_in_includes_receptive_field():
    # (kh, kw, cin, cout) = (5, 5, 10, 40): fan_in = 250.
    assert _std("he", shape=(5, 5, 10, 40)) == pytest.approx(math.sqrt(2 / 250), rel=0.05)


def test_glorot_is_uniform_with_variance_2_over_fan_sum():
    w = np.asarray(get_kernel_init("glorot")(KEY, SHAPE, jnp.float32))
    bound = math.sqrt(6 / (784 + 50))
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(math.sqrt(2 / (784 + 50)), rel=REL_TOL)


def test_sussillo_abbott_gain_closed_form():
    # g = sqrt(2) exp(1.2 / (max(N, 6) - 2.4)): N = 50 -> 1.450319; N <= 6 uses N = 6.
    assert sussillo_abbott_gain(50) == pytest.approx(1.450319, abs=1e-6)
    assert sussillo_abbott_gain(3) == sussillo_abbott_gain(6)
    assert sussillo_abbott_gain(6) == pytest.approx(math.sqrt(2) * math.exp(1 / 3), rel=1e-12)
    # Tends to He's sqrt(2) for wide layers.
    assert sussillo_abbott_gain(10**6) == pytest.approx(math.sqrt(2), rel=1e-5)
    assert sussillo_abbott_gain(50, "linear") == pytest.approx(math.exp(1 / 100), rel=1e-12)
    assert sussillo_abbott_gain(50, "tanh") == 1.13


def test_sussillo_abbott_std_is_g_over_sqrt_fan_in():
    expected = sussillo_abbott_gain(784) / math.sqrt(784)
    assert _std("sussillo_abbott") == pytest.approx(expected, rel=REL_TOL)
    expected = sussillo_abbott_gain(50, "linear") / math.sqrt(50)
    assert _std("sussillo_abbott", shape=(50, 800), nonlinearity="linear") == pytest.approx(
        expected, rel=REL_TOL
    )


def test_deep_mlp_layers_follow_their_init():
    x = jnp.zeros((1, 784))
    for name in ("simple", "he", "sussillo_abbott"):
        params = DeepMLP(depth=3, width=400, kernel_init_name=name).init(KEY, x, train=False)
        p = params["params"]
        std0 = float(jnp.std(p["hidden_0"]["kernel"]))
        std1 = float(jnp.std(p["hidden_1"]["kernel"]))
        if name == "simple":
            want0 = want1 = 0.1
        elif name == "he":
            want0, want1 = math.sqrt(2 / 784), math.sqrt(2 / 400)
        else:
            want0 = sussillo_abbott_gain(784) / math.sqrt(784)
            want1 = sussillo_abbott_gain(400) / math.sqrt(400)
        assert std0 == pytest.approx(want0, rel=REL_TOL), name
        assert std1 == pytest.approx(want1, rel=REL_TOL), name
        assert not np.any(np.asarray(p["hidden_0"]["bias"]))
    # The readout of a Sussillo-Abbott net uses the linear gain (no nonlinearity after it).
    p = DeepMLP(depth=1, width=2000, num_outputs=50, kernel_init_name="sussillo_abbott").init(
        KEY, x, train=False
    )["params"]
    want = sussillo_abbott_gain(2000, "linear") / math.sqrt(2000)
    assert float(jnp.std(p["readout"]["kernel"])) == pytest.approx(want, rel=REL_TOL)


def test_bias_init_options():
    assert np.all(np.asarray(get_bias_init(0.1)(KEY, (7,), jnp.float32)) == np.float32(0.1))
    assert not np.any(np.asarray(get_bias_init("zero")(KEY, (7,), jnp.float32)))
    b = get_bias_init("simple", init_scale=0.5)(KEY, (20000,), jnp.float32)
    assert float(jnp.std(b)) == pytest.approx(0.5, rel=REL_TOL)
    p = DeepMLP(depth=2, width=8, bias_init=0.25).init(KEY, jnp.zeros((1, 4)), train=False)
    assert all(np.all(np.asarray(layer["bias"]) == 0.25) for layer in p["params"].values())


def test_unknown_names_list_the_allowed_ones():
    with pytest.raises(ValueError, match=r"kernel_init_name must be one of \['zero', 'simple'"):
        get_kernel_init("xavier")
    for name in KERNEL_INIT_NAMES:
        get_kernel_init(name)
    with pytest.raises(ValueError, match="bias_init must be one of"):
        get_bias_init("he")
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0, got -1"):
        get_kernel_init("simple", init_scale=-1.0)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        sussillo_abbott_gain(10, "gelu")
