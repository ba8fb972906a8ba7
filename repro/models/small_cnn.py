"""Small convolutional network for MNIST / Fashion-MNIST / CIFAR-10 (NHWC inputs).

Per conv block: ``h = pool_2x2(phi(conv_kxk(h)))``; then flatten, dense layers with ``phi``
(and dropout), and a linear readout.

The defaults are Wu et al. (2020)'s small CNN: two 5x5 convolutions with 10 channels, each
followed by 2x2 max pooling, one dense layer of 50 units, weights N(0, 0.02^2). With "VALID"
padding on 28x28x1 inputs: 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4, so the parameters
are (5*5*1*10+10) + (5*5*10*10+10) + (4*4*10*50+50) + (50*10+10) = 11,330 ("~11k").
A wider variant for CIFAR-10 is e.g. ``conv_features=(32, 64), hidden_units=(256,),
kernel_init_name="he"`` (32x32x3 -> 28 -> 14 -> 10 -> 5, flatten 1600).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import linen as nn

from repro.models._checks import (
    as_int_tuple,
    check_choice,
    check_int_at_least,
    check_rate,
)
from repro.models.conv import CONV_IMPLS, Conv
from repro.models.initializers import (
    ACTIVATIONS,
    KERNEL_INIT_NAMES,
    get_activation,
    get_bias_init,
    get_kernel_init,
    sussillo_abbott_nonlinearity,
)

PADDINGS: tuple[str, ...] = ("VALID", "SAME")
POOLS: tuple[str, ...] = ("max", "avg")


class SmallCNN(nn.Module):
    """Conv blocks (conv -> activation -> 2x2 pool), dense layers, linear readout.

    Attributes:
      num_outputs: readout size.
      conv_features: channels of each conv layer (each followed by a 2x2 stride-2 pool).
      kernel_size: square conv kernel size.
      hidden_units: sizes of the dense layers after flattening (may be empty).
      padding: "VALID" or "SAME".
      pool: "max" or "avg".
      activation, kernel_init_name, init_scale, bias_init, dropout_rate: as in ``DeepMLP``;
        dropout follows every dense hidden layer, active only when ``train=True``.
      conv_impl: "auto" (default: "matmul" on the CPU backend, "xla" on GPU/TPU), "matmul"
        (im2col + one dot; the fast choice for CPU training loops) or "xla"
        (``lax.conv_general_dilated``; for accelerators); see ``repro.models.conv``.
    """

    num_outputs: int = 10
    conv_features: Sequence[int] = (10, 10)
    kernel_size: int = 5
    hidden_units: Sequence[int] = (50,)
    padding: str = "VALID"
    pool: str = "max"
    activation: str = "relu"
    kernel_init_name: str = "simple"
    init_scale: float = 0.02
    bias_init: float | str = 0.0
    dropout_rate: float = 0.0
    conv_impl: str = "auto"

    def __post_init__(self) -> None:
        # Hydra hands lists as ListConfig: store hashable tuples.
        object.__setattr__(self, "conv_features", as_int_tuple("conv_features", self.conv_features))
        object.__setattr__(self, "hidden_units", as_int_tuple("hidden_units", self.hidden_units))
        check_int_at_least("num_outputs", self.num_outputs, 1)
        check_int_at_least("kernel_size", self.kernel_size, 1)
        check_choice("padding", self.padding, PADDINGS)
        check_choice("pool", self.pool, POOLS)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("kernel_init_name", self.kernel_init_name, KERNEL_INIT_NAMES)
        check_rate("dropout_rate", self.dropout_rate)
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        self._kernel_inits()
        get_bias_init(self.bias_init, init_scale=self.init_scale)
        super().__post_init__()

    def _kernel_inits(self) -> tuple[nn.initializers.Initializer, nn.initializers.Initializer]:
        hidden = readout = "relu"
        if self.kernel_init_name == "sussillo_abbott":
            hidden, readout = sussillo_abbott_nonlinearity(self.activation), "linear"
        return (
            get_kernel_init(self.kernel_init_name, init_scale=self.init_scale, nonlinearity=hidden),
            get_kernel_init(
                self.kernel_init_name, init_scale=self.init_scale, nonlinearity=readout
            ),
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits ``[N, num_outputs]`` for images ``[N, H, W, C]``."""
        if x.ndim != 4:
            raise ValueError(
                f"SmallCNN expects NHWC images [N, H, W, C], got shape {x.shape} "
                "(load the data with flatten=False)"
            )
        hidden_init, readout_init = self._kernel_inits()
        bias_init = get_bias_init(self.bias_init, init_scale=self.init_scale)
        phi = get_activation(self.activation)
        pool = nn.max_pool if self.pool == "max" else nn.avg_pool
        h = x
        for i, features in enumerate(self.conv_features):
            h = Conv(
                features,
                (self.kernel_size, self.kernel_size),
                padding=self.padding,
                kernel_init=hidden_init,
                bias_init=bias_init,
                impl=self.conv_impl,
                name=f"conv_{i}",
            )(h)
            h = pool(phi(h), (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        for i, units in enumerate(self.hidden_units):
            h = nn.Dense(units, kernel_init=hidden_init, bias_init=bias_init, name=f"dense_{i}")(h)
            h = phi(h)
            if self.dropout_rate > 0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(
            self.num_outputs, kernel_init=readout_init, bias_init=bias_init, name="readout"
        )(h)
