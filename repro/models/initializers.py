"""Weight initializers of the reproduced papers, selected by name.

Every initializer has flax's signature ``init(key, shape, dtype) -> array`` and is a pure
function of ``key``, so ``jax.vmap(model.init)(keys, x)`` gives independent replicas.

Fan convention (jax's): for a kernel of shape ``(..., fan_in_dims, out)`` the fan-in is the
product of every axis but the last (Dense ``(in, out)``: ``in``; Conv ``(kh, kw, cin, cout)``:
``kh * kw * cin``) and the fan-out is the last axis times the receptive field.

Names (``KERNEL_INIT_NAMES``):

- ``"zero"``: ``W = 0``. With ReLU every hidden gradient is zero, so only the readout bias can
  learn (Neelakantan et al. 2015, Table 1 row 6: chance accuracy without gradient noise).
- ``"simple"``: ``W_ij ~ N(0, s^2)`` with ``s = init_scale`` (Neelakantan et al.'s "simple init",
  s = 0.1; Wu et al. 2020's small CNN uses s = 0.02).
- ``"he"``: ``W_ij ~ N(0, 2 / fan_in)`` (He et al. 2015, "Delving deep into rectifiers"), an
  untruncated normal as in the paper (jax's ``he_normal`` truncates).
- ``"sussillo_abbott"``: ``W_ij ~ N(0, g^2 / fan_in)`` (Sussillo & Abbott 2014, "Random walk
  initialization for training very deep feedforward networks", arXiv:1412.6558). The gain g
  makes the random walk of ``log ||h_d||`` across layers unbiased; it depends on the layer
  size N and the nonlinearity that follows the layer:

  - ReLU: ``g = sqrt(2) * exp(1.2 / (max(N, 6) - 2.4))`` (the paper's fitted formula);
  - linear: ``g = exp(1 / (2 N))``;
  - tanh: ``g = 1.13`` (no closed form; the empirical value of TensorFlow's reference
    implementation of this init, ``init_ops._random_walk``).

  The paper uses square N x N layers. For non-square layers we take N = fan_in, as the
  TensorFlow reference implementation does (it is also the N in the variance g^2 / N); for
  the square hidden layers of a deep MLP fan_in = fan_out = width, so the choice only
  matters for the first layer (e.g. 784 inputs: g = 1.4164 instead of 1.4503 for N = 50).
- ``"glorot"``: ``W_ij ~ U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, variance
  ``2 / (fan_in + fan_out)`` (Glorot & Bengio 2010's "normalized initialization").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from repro.models._checks import check_choice, check_positive_float

Initializer = Callable[..., jax.Array]

KERNEL_INIT_NAMES: tuple[str, ...] = ("zero", "simple", "he", "sussillo_abbott", "glorot")
BIAS_INIT_NAMES: tuple[str, ...] = ("zero", "simple")
SUSSILLO_ABBOTT_NONLINEARITIES: tuple[str, ...] = ("relu", "linear", "tanh")

# Activation functions by name; "identity" is the linear (no) nonlinearity.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    check_choice("activation", name, tuple(ACTIVATIONS))
    return ACTIVATIONS[name]


def fan_in_of(shape: Sequence[int]) -> int:
    """Fan-in of a kernel: the product of all axes but the last (jax's convention)."""
    if len(shape) < 2:
        raise ValueError(f"kernel shape must have at least 2 axes, got {tuple(shape)}")
    return math.prod(shape[:-1])


def sussillo_abbott_gain(n: int, nonlinearity: str = "relu") -> float:
    """Sussillo & Abbott (2014) gain g for a layer of size ``n`` followed by ``nonlinearity``.

    ReLU: ``sqrt(2) * exp(1.2 / (max(n, 6) - 2.4))``; linear: ``exp(1 / (2 n))``; tanh: 1.13.
    """
    check_choice("nonlinearity", nonlinearity, SUSSILLO_ABBOTT_NONLINEARITIES)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if nonlinearity == "relu":
        return math.sqrt(2.0) * math.exp(1.2 / (max(n, 6) - 2.4))
    if nonlinearity == "linear":
        return math.exp(1.0 / (2.0 * n))
    return 1.13


def sussillo_abbott_normal(nonlinearity: str = "relu") -> Initializer:
    """``W_ij ~ N(0, g^2 / fan_in)`` with g = ``sussillo_abbott_gain(fan_in, nonlinearity)``."""
    check_choice("nonlinearity", nonlinearity, SUSSILLO_ABBOTT_NONLINEARITIES)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in = fan_in_of(shape)
        std = sussillo_abbott_gain(fan_in, nonlinearity) / math.sqrt(fan_in)
        return std * jax.random.normal(key, shape, dtype)

    return init


def get_kernel_init(
    name: str, *, init_scale: float = 0.1, nonlinearity: str = "relu"
) -> Initializer:
    """The kernel initializer called ``name`` (one of ``KERNEL_INIT_NAMES``).

    ``init_scale`` is the standard deviation of ``"simple"``; ``nonlinearity`` (the activation
    after the layer: "relu", "linear" or "tanh") selects the ``"sussillo_abbott"`` gain.
    """
    check_choice("kernel_init_name", name, KERNEL_INIT_NAMES)
    if name == "zero":
        return nn.initializers.zeros
    if name == "simple":
        check_positive_float("init_scale", init_scale)
        return nn.initializers.normal(stddev=float(init_scale))
    if name == "he":
        return nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    if name == "glorot":
        return nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")
    return sussillo_abbott_normal(nonlinearity)


def get_bias_init(bias_init: float | str, *, init_scale: float = 0.1) -> Initializer:
    """Bias initializer: a number c gives ``b = c``; ``"zero"`` gives 0; ``"simple"`` gives
    ``b_i ~ N(0, init_scale^2)``."""
    if isinstance(bias_init, bool) or not isinstance(bias_init, numbers.Real | str):
        raise ValueError(
            f"bias_init must be a number or one of {list(BIAS_INIT_NAMES)}, got {bias_init!r}"
        )
    if isinstance(bias_init, str):
        check_choice("bias_init", bias_init, BIAS_INIT_NAMES)
        if bias_init == "zero":
            return nn.initializers.zeros
        check_positive_float("init_scale", init_scale)
        return nn.initializers.normal(stddev=float(init_scale))
    if not math.isfinite(bias_init):
        raise ValueError(f"bias_init must be finite, got {bias_init!r}")
    if bias_init == 0:
        return nn.initializers.zeros
    return nn.initializers.constant(float(bias_init))


def sussillo_abbott_nonlinearity(activation: str) -> str:
    """The Sussillo & Abbott gain family for ``activation`` ("identity" -> "linear")."""
    mapping = {"relu": "relu", "identity": "linear", "tanh": "tanh"}
    if activation not in mapping:
        raise ValueError(
            "kernel_init_name='sussillo_abbott' needs activation in "
            f"{list(mapping)}, got {activation!r}"
        )
    return mapping[activation]
