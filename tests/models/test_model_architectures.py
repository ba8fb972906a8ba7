"""Model shapes, parameter counts, vmapped init, dropout and argument validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from repro.models import (
    DeepMLP,
    Jasper,
    Linear,
    ResNet,
    SmallCNN,
    build_model,
    count_params,
)

KEY = jax.random.key(0)


def _param_count(model, shape) -> int:
    # eval_shape: counts without computing (ResNet-50 stays cheap on CPU).
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), train=False), KEY)
    return count_params(variables["params"])


def test_neelakantan_mlp_parameter_count_and_shapes():
    model = DeepMLP(depth=20, width=50, num_outputs=10)
    assert _param_count(model, (2, 784)) == 784 * 50 + 50 + 19 * (50 * 50 + 50) + 50 * 10 + 10
    variables = model.init(KEY, jnp.zeros((2, 784)), train=False)
    assert sorted(variables["params"]) == sorted([f"hidden_{i}" for i in range(20)] + ["readout"])
    x = jax.random.normal(jax.random.key(1), (5, 28, 28, 1))
    flat = model.apply(variables, x.reshape(5, -1), train=False)
    assert flat.shape == (5, 10)
    # Image inputs are flattened in the model: same logits as pre-flattened inputs.
    np.testing.assert_array_equal(np.asarray(model.apply(variables, x, train=False)), flat)


def test_wu_small_cnn_has_about_11k_parameters():
    # (5*5*1*10+10) + (5*5*10*10+10) + (4*4*10*50+50) + (50*10+10)
    assert _param_count(SmallCNN(), (2, 28, 28, 1)) == 11_330
    model = SmallCNN(conv_features=(32, 64), hidden_units=(128,), kernel_init_name="he")
    variables = model.init(KEY, jnp.zeros((2, 32, 32, 3)), train=False)
    out = model.apply(variables, jnp.ones((3, 32, 32, 3)), train=False)
    assert out.shape == (3, 10)
    assert variables["params"]["dense_0"]["kernel"].shape == (5 * 5 * 64, 128)
    with pytest.raises(ValueError, match=r"NHWC images"):
        model.apply(variables, jnp.ones((3, 32 * 32 * 3)), train=False)


def test_resnet_parameter_counts_match_the_references():
    # He et al. 2016 CIFAR ResNet-20 (option A shortcuts): 0.27M; torchvision resnet50/18.
    assert _param_count(ResNet(depth=20, style="cifar"), (1, 32, 32, 3)) == 269_722
    resnet50 = ResNet(depth=50, style="imagenet", num_outputs=1000)
    assert _param_count(resnet50, (1, 224, 224, 3)) == 25_557_032
    resnet18 = ResNet(depth=18, style="imagenet", num_outputs=1000)
    assert _param_count(resnet18, (1, 224, 224, 3)) == 11_689_512
    out = jax.eval_shape(
        lambda k: resnet50.init_with_output(k, jnp.zeros((2, 64, 64, 3)), train=False)[0], KEY
    )
    assert out.shape == (2, 1000)


# Depth 8 (one block per stage) compiles fast; depth 20 is built by the parameter-count test.
@pytest.mark.parametrize(("depth", "preactivation"), [(8, False), (8, True)])
def test_resnet_batch_norm_train_and_eval(depth, preactivation):
    model = ResNet(depth=depth, preactivation=preactivation)
    # Small images keep this cheap; the CIFAR stages work at any size divisible by 4.
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    variables = model.init(KEY, x, train=False)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (4, 10)
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
    # Eval mode needs no mutable collection and is deterministic.
    eval_logits = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(eval_logits, model.apply(variables, x, train=False))


def test_vmap_over_keys_gives_independent_replicas():
    model = DeepMLP(depth=3, width=16, kernel_init_name="he")
    keys = jax.random.split(KEY, 4)
    x = jnp.ones((2, 8))
    stacked = jax.vmap(lambda k: model.init(k, x, train=False))(keys)
    kernel = stacked["params"]["hidden_0"]["kernel"]
    assert kernel.shape == (4, 8, 16)
    single = model.init(keys[2], x, train=False)
    np.testing.assert_array_equal(kernel[2], single["params"]["hidden_0"]["kernel"])
    assert not np.allclose(kernel[0], kernel[1])
    out = jax.jit(jax.vmap(lambda v: model.apply(v, x, train=False)))(stacked)
    assert out.shape == (4, 2, 10)
    # CNN replicas trace too (eval_shape: no compilation).
    cnn = SmallCNN()
    cnn_vars = jax.eval_shape(
        jax.vmap(lambda k: cnn.init(k, jnp.zeros((1, 28, 28, 1)), train=False)), keys
    )
    assert cnn_vars["params"]["conv_0"]["kernel"].shape == (4, 5, 5, 1, 10)


def test_dropout_only_active_in_training():
    x = jax.random.normal(jax.random.key(1), (16, 32))
    model = DeepMLP(depth=2, width=64, dropout_rate=0.5, kernel_init_name="he")
    plain = DeepMLP(depth=2, width=64, dropout_rate=0.0, kernel_init_name="he")
    variables = model.init(KEY, x, train=False)
    eval_out = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(eval_out, plain.apply(variables, x, train=False))
    rngs = {"dropout": jax.random.key(2)}
    train_out = model.apply(variables, x, train=True, rngs=rngs)
    assert not np.allclose(train_out, eval_out)
    np.testing.assert_array_equal(train_out, model.apply(variables, x, train=True, rngs=rngs))
    # Without dropout the train flag changes nothing and needs no rng.
    np.testing.assert_array_equal(plain.apply(variables, x, train=True), eval_out)
    cnn = SmallCNN(dropout_rate=0.5)
    images = jnp.ones((2, 28, 28, 1))
    cnn_vars = cnn.init(KEY, images, train=False)
    assert not np.allclose(
        cnn.apply(cnn_vars, images, train=True, rngs=rngs), cnn.apply(cnn_vars, images, train=False)
    )


def test_zero_init_relu_net_only_learns_the_readout_bias():
    # Neelakantan et al. Table 1 row 6: with zero weights every hidden gradient is zero.
    model = DeepMLP(depth=3, width=8, kernel_init_name="zero")
    x = jax.random.normal(jax.random.key(1), (4, 5))
    variables = model.init(KEY, x, train=False)

    def loss(params):
        logits = model.apply({"params": params}, x, train=False)
        return -jnp.mean(jax.nn.log_softmax(logits)[:, 3])

    grads = jax.grad(loss)(variables["params"])
    nonzero = {
        path: bool(np.any(np.asarray(g)))
        for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
    }
    assert [jax.tree_util.keystr(p) for p, v in nonzero.items() if v] == ["['readout']['bias']"]


def test_linear_model_and_registry():
    model = build_model("linear", num_outputs=1, use_bias=False)
    variables = model.init(KEY, jnp.ones((3, 4)), train=False)
    assert count_params(variables) == 4
    assert model.apply(variables, jnp.ones((3, 4)), train=True).shape == (3, 1)
    assert isinstance(build_model("deep_mlp", depth=2), DeepMLP)
    assert isinstance(Linear(), Linear)
    assert isinstance(build_model("jasper", num_outputs=5), Jasper)
    with pytest.raises(ValueError, match=r"must be one of \['deep_mlp', 'jasper', 'linear'"):
        build_model("alexnet")  # not registered ("vgg" is, since VGG-11 for Wu et al.)


def test_hydra_lists_become_tuples():
    cfg = OmegaConf.create({"conv_features": [4, 8], "hidden_units": []})
    model = SmallCNN(conv_features=cfg.conv_features, hidden_units=cfg.hidden_units)
    assert model.conv_features == (4, 8) and model.hidden_units == ()
    assert hash(model) == hash(SmallCNN(conv_features=(4, 8), hidden_units=()))


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (DeepMLP, {"depth": 0}, "depth must be an integer >= 1, got 0"),
        (DeepMLP, {"width": 0}, "width must be an integer >= 1, got 0"),
        (DeepMLP, {"num_outputs": 2.5}, "num_outputs must be an integer >= 1, got 2.5"),
        (DeepMLP, {"activation": "swish"}, r"activation must be one of \['relu', 'tanh'"),
        (DeepMLP, {"kernel_init_name": "xavier"}, r"kernel_init_name must be one of \['zero'"),
        (DeepMLP, {"dropout_rate": 1.0}, r"dropout_rate must be in \[0, 1\), got 1.0"),
        (DeepMLP, {"init_scale": 0.0}, "init_scale must be a finite number > 0, got 0.0"),
        (DeepMLP, {"bias_init": "glorot"}, r"bias_init must be one of \['zero', 'simple'\]"),
        (
            DeepMLP,
            {"kernel_init_name": "sussillo_abbott", "activation": "gelu"},
            "kernel_init_name='sussillo_abbott' needs activation in",
        ),
        (SmallCNN, {"conv_features": (10, 0)}, "conv_features must be a sequence of integers"),
        (SmallCNN, {"padding": "same"}, r"padding must be one of \['VALID', 'SAME'\]"),
        (SmallCNN, {"pool": "min"}, r"pool must be one of \['max', 'avg'\]"),
        (ResNet, {"depth": 21}, "depth must be 6n \\+ 2 with n >= 1"),
        (ResNet, {"depth": 20, "style": "imagenet"}, r"depth must be one of \[18, 34, 50"),
        (ResNet, {"style": "tiny"}, r"style must be one of \['cifar', 'imagenet'\]"),
    ],
)
def test_bad_arguments_raise_at_construction(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)
