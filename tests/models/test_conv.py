"""repro.models.conv: the im2col ("matmul") convolution equals XLA's, forward and gradients,
for 1-D and 2-D convs with strides, SAME/VALID/explicit padding, dilation and feature groups;
the Conv module keeps nn.Conv's parameters; SmallCNN and ResNet agree across conv_impl;
``conv_impl="auto"`` (every conv model's default) is "matmul" on CPU, "xla" on GPU/TPU.

Tolerances: float32 sums of at most a few hundred O(1) products in a different order;
atol = rtol = 1e-5 (observed differences are ~1e-6); whole-model gradients 1e-4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from repro.models import Jasper, ResNet, SmallCNN
from repro.models.conv import Conv, conv, resolve_conv_impl
from repro.train import CONFIG_DIR

TOL = {"atol": 1e-5, "rtol": 1e-5}
BAD_CONV_IMPL = r"conv_impl must be one of \['auto', 'matmul', 'xla'\]"

CASES = [
    # (spatial, kernel, strides, padding, dilation, groups)
    ((13,), (5,), 1, "SAME", 1, 1),
    ((13,), (5,), 2, "VALID", 1, 1),
    ((13,), (3,), 1, [(2, 2)], 2, 1),
    ((14,), (5,), 2, "SAME", 1, 6),  # depthwise (Jasper's separable convs)
    ((9, 8), (3, 3), 1, "SAME", 1, 1),  # ResNet's 3x3
    ((9, 8), (3, 3), 2, "SAME", 1, 1),  # ResNet's strided 3x3 (even/odd sizes)
    ((12, 12), (5, 5), 1, "VALID", 1, 1),  # SmallCNN's 5x5
    ((9, 8), (1, 1), 2, "VALID", 1, 1),  # projection shortcut
    ((11, 10), (3, 2), (2, 1), [(1, 2), (0, 1)], (2, 1), 2),
    ((10, 10), (3, 3), 1, 1, 2, 3),
]


@pytest.mark.parametrize(("spatial", "kernel", "strides", "padding", "dilation", "groups"), CASES)
def test_matmul_conv_equals_xla_conv_forward_and_gradients(
    spatial, kernel, strides, padding, dilation, groups
) -> None:
    c_in, c_out = 6, 2 * groups if groups > 1 else 4  # depthwise (G = 6): multiplier 2
    x = jax.random.normal(jax.random.key(1), (2, *spatial, c_in))
    w = jax.random.normal(jax.random.key(2), (*kernel, c_in // groups, c_out))
    kwargs = dict(strides=strides, padding=padding, dilation=dilation, feature_group_count=groups)

    def run(impl: str):
        def f(x: jax.Array, w: jax.Array) -> jax.Array:
            return conv(x, w, impl=impl, **kwargs)

        cotangent = jax.random.normal(jax.random.key(3), jax.eval_shape(f, x, w).shape)
        # One compiled program per impl (op-by-op autodiff would dominate the test's time).
        return jax.jit(lambda x, w: (f(x, w), jax.vjp(f, x, w)[1](cotangent)))(x, w)

    (got, got_grads), (want, want_grads) = run("matmul"), run("xla")
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    for g, h in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(g, h, **TOL)


def test_vmapped_kernels_match_xla() -> None:
    # The engine vmaps replicas over parameters with a shared batch.
    x = jax.random.normal(jax.random.key(1), (3, 10, 10, 4))
    kernels = jax.random.normal(jax.random.key(2), (4, 3, 3, 4, 5))

    def loss(w, impl):
        return jnp.sum(jnp.tanh(conv(x, w, strides=2, padding="SAME", impl=impl)))

    for f in (jax.vmap(loss, (0, None)), jax.vmap(jax.grad(loss), (0, None))):
        np.testing.assert_allclose(f(kernels, "matmul"), f(kernels, "xla"), **TOL)


@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_module_has_flax_conv_parameters_and_outputs(use_bias: bool) -> None:
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
    kwargs = dict(features=8, kernel_size=(3, 3), strides=2, padding="SAME", use_bias=use_bias)
    init = nn.initializers.normal(0.3)
    ref = nn.Conv(**kwargs, kernel_init=init, bias_init=init)
    want_vars = ref.init(jax.random.key(0), x)
    want = ref.apply(want_vars, x)
    for impl in ("matmul", "xla"):
        module = Conv(**kwargs, kernel_init=init, bias_init=init, impl=impl)
        variables = module.init(jax.random.key(0), x)
        # Same names, shapes and values for the same key (init statistics unchanged).
        jax.tree.map(np.testing.assert_array_equal, variables, want_vars)
        np.testing.assert_allclose(module.apply(variables, x), want, **TOL)


@pytest.mark.parametrize(
    ("model_cls", "shape"),
    # ResNet takes ~35 s to compile both ways on 2 cores: slow; SmallCNN keeps the fast check.
    [(SmallCNN, (3, 16, 16, 1)), pytest.param(ResNet, (4, 8, 8, 3), marks=pytest.mark.slow)],
)
def test_models_agree_across_conv_impls(model_cls, shape) -> None:
    x = jax.random.normal(jax.random.key(1), shape)
    kwargs = {"depth": 8} if model_cls is ResNet else {}  # one block per stage: compiles fast
    models = {impl: model_cls(conv_impl=impl, **kwargs) for impl in ("matmul", "xla")}
    variables = {impl: m.init(jax.random.key(0), x, train=False) for impl, m in models.items()}
    jax.tree.map(np.testing.assert_array_equal, variables["matmul"], variables["xla"])
    rest = dict(variables["xla"])
    params = rest.pop("params")

    def loss(p, impl):
        variables = {"params": p, **rest}
        if rest:  # ResNet: batch norm in training mode updates its statistics
            logits, _ = models[impl].apply(variables, x, train=True, mutable=list(rest))
        else:
            logits = models[impl].apply(variables, x, train=True)
        return jnp.sum(jnp.sin(logits))

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (got_loss, got), (want_loss, want) = (
        value_and_grad(params, "matmul"),
        value_and_grad(params, "xla"),
    )
    np.testing.assert_allclose(got_loss, want_loss, **TOL)
    # ResNet: batch norm over 4 examples divides by small batch deviations, which scales
    # the summation-order differences up; 1e-4 is still far below the gradients' scale.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4), got, want)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SmallCNN(conv_impl="fft"), BAD_CONV_IMPL),
        (lambda: ResNet(conv_impl="fft"), BAD_CONV_IMPL),
        (lambda: conv(jnp.ones((1, 5, 2)), jnp.ones((3, 2, 2)), impl="fft"), r"impl must be"),
        (lambda: conv(jnp.ones((1, 5, 2)), jnp.ones((3, 2, 2)), padding="FULL"), "padding"),
        (lambda: conv(jnp.ones((1, 5, 3)), jnp.ones((3, 2, 2))), "channels do not fit"),
    ],
)
def test_bad_arguments_raise_one_line_value_errors(build, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- auto by backend

BACKENDS = [("cpu", "matmul"), ("gpu", "xla"), ("tpu", "xla")]


def _lowers_to_xla_conv(fn, *args) -> bool:
    return "stablehlo.convolution" in jax.jit(fn).lower(*args).as_text()


@pytest.mark.parametrize(("backend", "expected"), BACKENDS)
def test_auto_conv_impl_follows_the_backend(monkeypatch, backend: str, expected: str) -> None:
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    assert resolve_conv_impl("auto") == expected
    assert [resolve_conv_impl(impl) for impl in ("matmul", "xla")] == ["matmul", "xla"]
    x, kernel = jnp.ones((1, 6, 6, 1)), jnp.ones((3, 3, 1, 2))
    assert _lowers_to_xla_conv(lambda x, k: conv(x, k), x, kernel) == (expected == "xla")


@pytest.mark.parametrize(("backend", "expected"), BACKENDS)
@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (SmallCNN(), (2, 16, 16, 1)),
        # The larger models lower for 15-25 s each: with the slow checks (pytest -m slow).
        pytest.param(ResNet(depth=8), (2, 8, 8, 3), marks=pytest.mark.slow),
        pytest.param(
            Jasper(num_outputs=5, filters=(8, 8), prologue_filters=8, epilogue_filters=(8, 8)),
            (2, 16, 4),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["small_cnn", "resnet", "jasper"],
)
def test_conv_models_default_to_auto(monkeypatch, model, shape, backend, expected) -> None:
    assert model.conv_impl == "auto"
    x = jnp.ones(shape)
    variables = model.init(jax.random.key(0), x, train=False)
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    lowered = _lowers_to_xla_conv(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert lowered == (expected == "xla")


def test_auto_is_bit_identical_to_matmul_on_cpu() -> None:
    assert jax.default_backend() == "cpu"
    x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
    variables = SmallCNN().init(jax.random.key(0), x, train=False)
    want = SmallCNN(conv_impl="matmul").apply(variables, x, train=False)
    np.testing.assert_array_equal(SmallCNN().apply(variables, x, train=False), want)


@pytest.mark.parametrize("name", ["small_cnn", "resnet", "jasper", "jasper_5x3", "jasper_10x5"])
def test_conv_model_configs_default_to_auto(name: str) -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            assert compose("config", overrides=[f"model={name}"]).model.conv_impl == "auto"
    finally:
        GlobalHydra.instance().clear()
