"""Jasper: parameter counts from the architecture, padding invariance, masked batch norm,
conv implementations, the engine's model-input plumbing, and argument validation.

Tolerances: float32 outputs of a few convs compared across summation orders, atol 1e-5;
bfloat16 against float32 as stated in its test (measured worst cases).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from repro.engine.instantiate import call_target, to_plain
from repro.engine.steps import ReplicaModel
from repro.engine.tasks import get_task
from repro.models import Jasper, MaskedBatchNorm, count_params
from repro.models.jasper import conv1d
from repro.train import CONFIG_DIR

KEY = jax.random.key(0)
ATOL = 1e-5


def _expected_params(
    features: int,
    vocab_outputs: int,
    blocks: list[tuple[int, int]],  # (filters, kernel) per block
    repeats: int,
    prologue: tuple[int, int],
    epilogue: list[tuple[int, int]],
    residual: str,
    separable: bool = False,
) -> int:
    """Count by hand: conv k*C_in*C_out (separable, k > 1: k*C_in + C_in*C_out), no bias;
    batch norm 2*C; block residual 1x1 conv + BN per source; output 1x1 conv with bias."""

    def conv_bn(k: int, c_in: int, c_out: int) -> int:
        weights = k * c_in + c_in * c_out if separable and k > 1 else k * c_in * c_out
        return weights + 2 * c_out

    total = conv_bn(prologue[1], features, prologue[0])
    outputs = [prologue[0]]  # channels of the prologue and every block output
    c_in = prologue[0]
    for filters, kernel in blocks:
        sources = {"none": [], "block": [c_in], "dense": outputs}[residual]
        total += sum(conv_bn(1, c, filters) for c in sources)
        for _ in range(repeats):
            total += conv_bn(kernel, c_in, filters)
            c_in = filters
        outputs = [*outputs, filters]
    for filters, kernel in epilogue:
        total += conv_bn(kernel, c_in, filters)
        c_in = filters
    return total + c_in * vocab_outputs + vocab_outputs


def _count(model: Jasper, shape: tuple[int, int, int]) -> int:
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), train=False), KEY)
    return count_params(variables["params"])


def _model_from_config(name: str, num_outputs: int) -> Jasper:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"model={name}"])
    finally:
        GlobalHydra.instance().clear()
    return call_target(to_plain(dict(cfg.model)), num_outputs=num_outputs)


def test_jasper_10x5_matches_the_paper_size() -> None:
    # Li et al. 2019: Jasper DR 10x5 has 333M parameters (64 log-mel features, 28 chars + blank).
    model = _model_from_config("jasper_10x5", 29)
    widths, kernels = [256, 384, 512, 640, 768], [11, 13, 17, 21, 25]
    blocks = [(widths[i // 2], kernels[i // 2]) for i in range(10)]
    want = _expected_params(64, 29, blocks, 5, (256, 11), [(896, 29), (1024, 1)], "dense")
    assert want == 332_632_349
    assert _count(model, (1, 32, 64)) == want
    assert round(want / 1e6) == 333
    # Jasper 5x3 (block residuals) from its config.
    model = _model_from_config("jasper_5x3", 29)
    want = _expected_params(
        64,
        29,
        list(zip(widths, kernels, strict=True)),
        3,
        (256, 11),
        [(896, 29), (1024, 1)],
        "block",
    )
    assert _count(model, (1, 32, 64)) == want


@pytest.mark.parametrize(
    ("name", "repeat_blocks", "paper_millions"),
    [("quartznet_15x5", 3, 18.9), ("quartznet_5x5", 1, 6.7)],
)
def test_quartznet_matches_the_paper_sizes(
    name: str, repeat_blocks: int, paper_millions: float
) -> None:
    # Kriman et al. 2019, Table 1: QuartzNet 15x5 has 18.9M parameters; 5x5 about 6.7M.
    model = _model_from_config(name, 29)
    widths, kernels = [256, 256, 512, 512, 512], [33, 39, 51, 63, 75]
    blocks = [(w, k) for w, k in zip(widths, kernels, strict=True) for _ in range(repeat_blocks)]
    want = _expected_params(
        64, 29, blocks, 5, (256, 33), [(512, 87), (1024, 1)], "block", separable=True
    )
    assert _count(model, (1, 32, 64)) == want
    assert abs(want / 1e6 - paper_millions) / paper_millions < 0.01


@pytest.mark.parametrize("residual", ["none", "block", "dense"])
@pytest.mark.parametrize("separable", [False, True])
def test_tiny_parameter_counts(residual: str, separable: bool) -> None:
    model = Jasper(num_outputs=9, residual=residual, separable=separable)
    want = _expected_params(
        16, 9, [(32, 7), (48, 9)], 2, (32, 11), [(64, 11), (64, 1)], residual, separable
    )
    assert _count(model, (2, 20, 16)) == want


def _padded_batch(seed: int = 0, batch: int = 3, frames: int = 23, features: int = 5) -> tuple:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, frames, features)).astype(np.float32)
    lengths = np.array([frames, 14, 7])[:batch]
    paddings = (np.arange(frames)[None] >= lengths[:, None]).astype(np.float32)
    return x, paddings, lengths


def _run(model: Jasper, variables, x, paddings, train: bool):
    if train:
        (logits, out_pad), state = model.apply(
            variables,
            x,
            paddings,
            train=True,
            rngs={"dropout": jax.random.key(3)},
            mutable=["batch_stats"],
        )
        return np.asarray(logits), np.asarray(out_pad), state
    logits, out_pad = model.apply(variables, x, paddings, train=False)
    return np.asarray(logits), np.asarray(out_pad), None


@pytest.mark.parametrize("residual", ["block", "dense"])
def test_valid_outputs_ignore_padding_content(residual: str) -> None:
    model = Jasper(num_outputs=6, residual=residual, dropout=0.3, separable=residual == "dense")
    x, paddings, _ = _padded_batch()
    variables = model.init(KEY, jnp.asarray(x), jnp.asarray(paddings), train=False)
    garbage = np.where(paddings[..., None] > 0, 1e3, x).astype(np.float32)
    for train in (True, False):
        logits, out_pad, state = _run(model, variables, x, paddings, train)
        logits2, out_pad2, state2 = _run(model, variables, garbage, paddings, train)
        valid = out_pad == 0
        np.testing.assert_array_equal(out_pad, out_pad2)
        np.testing.assert_allclose(logits[valid], logits2[valid], atol=ATOL)
        if train:  # the batch statistics too (they would move by ~1e3 otherwise)
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=1e-5), state, state2
            )


def test_one_padded_sequence_equals_the_unpadded_one() -> None:
    # Masked convs see zeros past the end, as SAME padding shows them to the trimmed sequence;
    # masked batch norm sees the same frames: same valid outputs, same statistics.
    model = Jasper(num_outputs=6)
    x, paddings, lengths = _padded_batch(seed=1, batch=3)
    one, pad, length = x[1:2], paddings[1:2], int(lengths[1])
    variables = model.init(KEY, jnp.asarray(one), train=False)
    for train in (True, False):
        logits, out_pad, state = _run(model, variables, one, pad, train)
        trimmed, _, trimmed_state = _run(
            model, variables, one[:, :length], np.zeros((1, length), np.float32), train
        )
        assert trimmed.shape[1] == math.ceil(length / model.stride) == (out_pad == 0).sum()
        np.testing.assert_allclose(logits[:, : trimmed.shape[1]], trimmed, atol=ATOL)
        if train:
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, atol=ATOL, rtol=1e-5),
                state,
                trimmed_state,
            )


def _loss_and_grads(model: Jasper, variables: dict, x: np.ndarray, paddings: np.ndarray):
    def loss(params):
        (logits, _), _ = model.apply(
            {**variables, "params": params},
            jnp.asarray(x),
            jnp.asarray(paddings),
            train=True,
            mutable=["batch_stats"],
        )
        return jnp.sum(jax.nn.log_softmax(logits)[..., 0]), logits

    return jax.value_and_grad(loss, has_aux=True)(variables["params"])


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_weights_and_logits() -> None:
    # Mixed precision: bfloat16 convs and output layer, float32 parameters, gradients,
    # batch norm and logits. Measured here over 5 batches x block/dense residuals: the logits'
    # worst difference from float32 was 0.058 on logits up to 3.8 in size (bfloat16 keeps 8
    # mantissa bits), the gradients' cosine to float32's at least 0.972. Asserted: 0.15, 0.95.
    x, paddings, _ = _padded_batch(seed=2)
    wide = Jasper(num_outputs=6, residual="dense")
    mixed = Jasper(num_outputs=6, residual="dense", dtype="bfloat16")
    variables = wide.init(KEY, jnp.asarray(x), jnp.asarray(paddings), train=False)
    assert jax.tree.structure(mixed.init(KEY, jnp.asarray(x), train=False)) == jax.tree.structure(
        variables
    )
    (_, wide_logits), wide_grads = _loss_and_grads(wide, variables, x, paddings)
    (_, mixed_logits), mixed_grads = _loss_and_grads(mixed, variables, x, paddings)
    assert mixed_logits.dtype == jnp.float32
    assert {g.dtype for g in jax.tree.leaves(mixed_grads)} == {jnp.dtype(jnp.float32)}
    np.testing.assert_allclose(mixed_logits, wide_logits, atol=0.15)
    flat = [
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(t)]) for t in (wide_grads, mixed_grads)
    ]
    cosine = jnp.dot(*flat) / (jnp.linalg.norm(flat[0]) * jnp.linalg.norm(flat[1]))
    assert cosine > 0.95
    compiled = jax.jit(lambda v: mixed.apply(v, jnp.asarray(x), train=False)).lower(variables)
    text = compiled.as_text()
    products = [
        line for line in text.splitlines() if "dot_general" in line or "convolution" in line
    ]
    assert products and all("bf16" in line for line in products)


def test_output_shapes_and_paddings() -> None:
    model = Jasper(num_outputs=7, stride=3)
    x, paddings, lengths = _padded_batch(frames=23)
    variables = model.init(KEY, jnp.asarray(x), train=False)
    logits, out_pad, _ = _run(model, variables, x, paddings, False)
    assert logits.shape == (3, 8, 7)  # ceil(23 / 3) frames
    np.testing.assert_array_equal(out_pad, paddings[:, ::3])
    np.testing.assert_array_equal((out_pad == 0).sum(1), np.ceil(lengths / 3))


def test_masked_batch_norm_statistics_exclude_padding() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 9, 3)).astype(np.float32) * 2 + 1
    valid = (rng.random((4, 9)) < 0.6).astype(np.float32)
    x_garbage = np.where(valid[..., None] > 0, x, 100.0).astype(np.float32)
    bn = MaskedBatchNorm(momentum=0.8, epsilon=1e-3)
    variables = bn.init(KEY, jnp.asarray(x), jnp.asarray(valid), train=False)
    y, state = bn.apply(variables, x_garbage, valid, train=True, mutable=["batch_stats"])
    kept = x[valid > 0]  # [n, 3]
    mean, var = kept.mean(0), kept.var(0)
    np.testing.assert_allclose(state["batch_stats"]["mean"], 0.2 * mean, rtol=1e-5)
    np.testing.assert_allclose(state["batch_stats"]["var"], 0.8 + 0.2 * var, rtol=1e-5)
    want = (x - mean) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(np.asarray(y)[valid > 0], want[valid > 0], atol=ATOL)
    # Evaluation uses the running averages.
    y_eval = bn.apply({**variables, **state}, x, valid, train=False)
    run_mean, run_var = 0.2 * mean, 0.8 + 0.2 * var
    np.testing.assert_allclose(y_eval, (x - run_mean) / np.sqrt(run_var + 1e-3), atol=ATOL)


@pytest.mark.parametrize(
    ("stride", "dilation", "depthwise"), [(1, 1, False), (2, 1, False), (1, 2, False), (2, 1, True)]
)
def test_matmul_conv_equals_xla_conv(stride: int, dilation: int, depthwise: bool) -> None:
    h = jax.random.normal(jax.random.key(1), (2, 13, 6))
    kernel = jax.random.normal(jax.random.key(2), (5, 1 if depthwise else 6, 6 if depthwise else 4))
    kwargs = dict(stride=stride, dilation=dilation, depthwise=depthwise)
    got = conv1d(h, kernel, impl="matmul", **kwargs)
    want = conv1d(h, kernel, impl="xla", **kwargs)
    assert got.shape == want.shape == (2, math.ceil(13 / stride), kernel.shape[2])
    np.testing.assert_allclose(got, want, atol=ATOL)


def test_engine_passes_declared_inputs_and_tuple_outputs() -> None:
    model = Jasper(num_outputs=6)
    x, paddings, _ = _padded_batch(seed=2)
    variables = model.init(KEY, jnp.asarray(x), train=False)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    program = ReplicaModel(model, get_task("ctc"), rule=None, examples_per_step=3)
    batch = {"x": jnp.asarray(x), "x_paddings": jnp.asarray(paddings), "y": jnp.ones((3, 2))}
    (logits, out_pad), _ = program.apply(params, state, batch, train=False)
    want_logits, want_pad = model.apply(variables, x, paddings, train=False)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(out_pad, want_pad)
    (_, no_pad), _ = program.apply(params, state, {"x": jnp.asarray(x)}, train=False)
    assert not np.asarray(no_pad).any()  # a batch without paddings means no padding
    _, new_state = program.apply(params, state, batch, train=True, rngs={"dropout": KEY})
    assert set(new_state) == {"batch_stats"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_sizes": (7, 8)}, r"kernel_sizes must be odd integers"),
        ({"filters": (8, 8, 8)}, r"filters must have a length dividing blocks=2"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"residual": "skip"}, r"residual must be one of \['none', 'block', 'dense'\]"),
        ({"conv_impl": "fft"}, r"conv_impl must be one of \['auto', 'matmul', 'xla'\]"),
        ({"dtype": "float16"}, r"dtype must be one of \['float32', 'bfloat16'\]"),
        ({"blocks": 0}, r"blocks must be an integer >= 1, got 0"),
        ({"epilogue_kernels": (11,)}, r"epilogue_filters, epilogue_kernels and epilogue_dila"),
        ({"num_outputs": 1}, r"num_outputs must be an integer >= 2, got 1"),
    ],
)
def test_bad_arguments_raise_one_line_value_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Jasper(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_input_shapes() -> None:
    model = Jasper(num_outputs=4)
    with pytest.raises(ValueError, match=r"Jasper expects features \[B, T, F\]"):
        model.init(KEY, jnp.zeros((2, 10)), train=False)
    with pytest.raises(ValueError, match=r"x_paddings must have shape"):
        model.init(KEY, jnp.zeros((2, 10, 3)), jnp.zeros((2, 9)), train=False)
