"""VGG: layer layout, parameter count against the CIFAR reference, BatchNorm statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro.models import VGG, build_model, count_params


def _init(model: VGG, shape=(2, 32, 32, 3)):
    x = jax.random.normal(jax.random.key(0), shape)
    # Jitted with x as an argument: eager init compiles every op, a captured x is constant-folded.
    return x, jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(1), x)


def _shapes(model: VGG, shape=(2, 32, 32, 3)):
    """Variables' shapes without computing anything (VGG-11 has 9M parameters)."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(1), jnp.zeros(x.shape), train=False))


def test_vgg11_has_the_cifar_reference_parameter_count():
    """kuangliu/pytorch-cifar VGG('VGG11'), 10 classes: convs with bias, BN, Linear(512, 10):
    sum of 9 k_in k_out + k_out over the 8 convs + 2 per BN channel + 512 * 10 + 10."""
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
             (512, 512)]  # fmt: skip
    expected = sum(9 * a * b + b for a, b in convs) + 2 * sum(b for _, b in convs) + 5130
    assert expected == 9_231_114
    model = VGG(depth=11, num_outputs=10)
    variables = _shapes(model)
    assert count_params(variables["params"]) == expected
    assert count_params(variables["batch_stats"]) == 2 * sum(b for _, b in convs)
    logits = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((2, 32, 32, 3)), train=False), variables
    )
    assert logits.shape == (2, 10)


@pytest.mark.slow  # ~15 s of compilation on 2 cores
def test_train_mode_normalises_by_the_batch_and_updates_batch_stats():
    model = VGG(depth=11, num_outputs=5, width=4)  # channels 4 ... 32: seconds on a CPU
    x, variables = _init(model)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x
    )
    assert logits.shape == (2, 5) and np.isfinite(np.asarray(logits)).all()
    before = variables["batch_stats"]["norm_0"]["var"]
    after = state["batch_stats"]["norm_0"]["var"]
    # Running variance: momentum 0.9 towards the batch's (initial value 1).
    np.testing.assert_allclose(before, 1.0)
    conv_0 = jax.lax.conv_general_dilated(
        x, variables["params"]["conv_0"]["kernel"], (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    ) + variables["params"]["conv_0"]["bias"]  # fmt: skip
    np.testing.assert_allclose(after, 0.9 + 0.1 * conv_0.var(axis=(0, 1, 2)), rtol=1e-4)


@pytest.mark.slow
def test_conv_impls_agree():
    x, variables = _init(VGG(depth=11, num_outputs=5, conv_impl="xla"), (1, 32, 32, 3))
    by_xla = VGG(depth=11, num_outputs=5, conv_impl="xla").apply(variables, x, train=False)
    by_matmul = VGG(depth=11, num_outputs=5, conv_impl="matmul").apply(variables, x, train=False)
    np.testing.assert_allclose(by_matmul, by_xla, rtol=2e-4, atol=2e-4)


def test_without_batch_norm_there_is_no_state_and_registry_builds_it():
    model = build_model("vgg", depth=11, num_outputs=3, batch_norm=False, conv_impl="xla")
    assert "batch_stats" not in _shapes(model, (1, 32, 32, 3))
    half = _shapes(VGG(depth=11, num_outputs=10, width=32))["params"]
    assert half["conv_0"]["kernel"].shape == (3, 3, 3, 32)
    assert half["conv_11"]["kernel"].shape == (3, 3, 256, 256)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 12}, "depth must be one of [11, 13, 16, 19], got 12"),
        ({"batch_norm": "yes"}, "batch_norm must be true or false, got 'yes'"),
        ({"bn_momentum": 1.0}, "bn_momentum must be in [0, 1), got 1.0"),
    ],
)
def test_bad_arguments_name_the_attribute(kwargs, message):
    with pytest.raises(ValueError) as error:
        VGG(**kwargs)
    assert str(error.value) == message
