"""Deep fully connected networks (Neelakantan et al. 2015, Section 4.1) and a linear model.

``DeepMLP`` computes, for an input flattened to ``h_0 = x in R^{d}``,

    h_l = dropout(phi(W_l h_{l-1} + b_l)),  l = 1..depth   (W_l: width x fan_in)
    logits = W_out h_depth + b_out

Neelakantan et al.'s MNIST network is ``DeepMLP(depth=20, width=50, num_outputs=10)``:
784*50+50 + 19*(50*50+50) + 50*10+10 = 88,210 parameters.
"""

from __future__ import annotations

import jax
from flax import linen as nn

from repro.models._checks import check_choice, check_int_at_least, check_rate
from repro.models.initializers import (
    ACTIVATIONS,
    KERNEL_INIT_NAMES,
    get_activation,
    get_bias_init,
    get_kernel_init,
    sussillo_abbott_nonlinearity,
)


def flatten_features(x: jax.Array) -> jax.Array:
    """``[N, ...] -> [N, prod(...)]``; a no-op (no reshape op) for inputs already 2-D."""
    if x.ndim == 2:
        return x
    if x.ndim < 2:
        raise ValueError(f"input must have a batch axis and features, got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, then a linear readout of ``num_outputs``.

    Attributes:
      depth: number of hidden layers (>= 1).
      width: units per hidden layer (>= 1).
      num_outputs: readout size (classes, or 1 for a scalar regression target).
      activation: one of ``initializers.ACTIVATIONS``.
      kernel_init_name: one of ``initializers.KERNEL_INIT_NAMES``, used for every kernel
        (hidden and readout). For "sussillo_abbott" the gain follows the activation after the
        layer: the activation's gain for hidden layers, the linear gain for the readout.
      init_scale: standard deviation of the "simple" init (and of a "simple" bias init).
      bias_init: a number (constant bias) or "zero" / "simple" (N(0, init_scale^2)).
      dropout_rate: dropout after every hidden activation, active only when ``train=True``
        (needs the 'dropout' rng then); 0 disables it.
    """

    depth: int = 20
    width: int = 50
    num_outputs: int = 10
    activation: str = "relu"
    kernel_init_name: str = "simple"
    init_scale: float = 0.1
    bias_init: float | str = 0.0
    dropout_rate: float = 0.0

    def __post_init__(self) -> None:
        check_int_at_least("depth", self.depth, 1)
        check_int_at_least("width", self.width, 1)
        check_int_at_least("num_outputs", self.num_outputs, 1)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("kernel_init_name", self.kernel_init_name, KERNEL_INIT_NAMES)
        check_rate("dropout_rate", self.dropout_rate)
        # Build once so bad init arguments fail at construction, not at init time.
        self._kernel_inits()
        get_bias_init(self.bias_init, init_scale=self.init_scale)
        super().__post_init__()

    def _kernel_inits(self) -> tuple[nn.initializers.Initializer, nn.initializers.Initializer]:
        if self.kernel_init_name == "sussillo_abbott":
            hidden = sussillo_abbott_nonlinearity(self.activation)
            readout = "linear"
        else:
            hidden = readout = "relu"
        kw = {"init_scale": self.init_scale}
        return (
            get_kernel_init(self.kernel_init_name, nonlinearity=hidden, **kw),
            get_kernel_init(self.kernel_init_name, nonlinearity=readout, **kw),
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits ``[N, num_outputs]`` for inputs ``[N, ...]`` (flattened if not 2-D)."""
        hidden_init, readout_init = self._kernel_inits()
        bias_init = get_bias_init(self.bias_init, init_scale=self.init_scale)
        phi = get_activation(self.activation)
        h = flatten_features(x)
        for layer in range(self.depth):
            h = nn.Dense(
                self.width, kernel_init=hidden_init, bias_init=bias_init, name=f"hidden_{layer}"
            )(h)
            h = phi(h)
            if self.dropout_rate > 0:
                h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
        return nn.Dense(
            self.num_outputs, kernel_init=readout_init, bias_init=bias_init, name="readout"
        )(h)


class Linear(nn.Module):
    """Linear model ``y = W x (+ b)`` on flattened inputs (Mori et al. 2022's linear regression).

    Attributes:
      num_outputs: output size.
      use_bias: add a bias ``b`` (initialised by ``bias_init``).
      kernel_init_name / init_scale / bias_init: as in ``DeepMLP`` ("sussillo_abbott" uses the
        linear gain).
    """

    num_outputs: int = 1
    use_bias: bool = True
    kernel_init_name: str = "zero"
    init_scale: float = 0.1
    bias_init: float | str = 0.0

    def __post_init__(self) -> None:
        check_int_at_least("num_outputs", self.num_outputs, 1)
        get_kernel_init(self.kernel_init_name, init_scale=self.init_scale, nonlinearity="linear")
        get_bias_init(self.bias_init, init_scale=self.init_scale)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Outputs ``[N, num_outputs]``; ``train`` is accepted for a uniform interface."""
        del train
        return nn.Dense(
            self.num_outputs,
            use_bias=self.use_bias,
            kernel_init=get_kernel_init(
                self.kernel_init_name, init_scale=self.init_scale, nonlinearity="linear"
            ),
            bias_init=get_bias_init(self.bias_init, init_scale=self.init_scale),
            name="dense",
        )(flatten_features(x))
