"""Jasper (Li et al. 2019, arXiv 1904.03288): a 1-D convolutional CTC acoustic model.

Architecture ``BxR``: a prologue conv (stride ``stride``), B blocks of R sub-blocks, three
epilogue convs, all ``conv1d -> batch norm -> ReLU -> dropout``, then a 1x1 conv (with bias)
to ``num_outputs = vocab + 1`` logits (the CTC blank included). In block b with input ``h_in``:

    h      = h_in
    h      = dropout(relu(BN(conv(h))))                    sub-blocks 1 .. R-1
    h      = dropout(relu(BN(conv(h)) + residual))         sub-block R
    residual = sum_{j in S_b} BN_j(conv1x1_j(o_j))

where ``o_j`` are earlier outputs: ``S_b = {h_in}`` for ``residual="block"`` (Jasper),
all earlier block outputs and the prologue output for ``residual="dense"`` (Jasper "DR"), and
no residual for ``residual="none"``. Convs followed by batch norm have no bias.

Per-block lists (``filters``, ``kernel_sizes``, ``dropout``) have a length L dividing B; entry
i is used by the B/L consecutive blocks ``i*B/L .. (i+1)*B/L - 1`` -- Jasper 10x5 lists the 5
distinct blocks B1..B5, each repeated twice (conf/model/jasper_10x5.yaml). With 64 input
features and 29 outputs that config has 332,632,349 parameters with dense residuals
(the paper: 333M; 322,286,877 with block residuals; see tests/models/test_jasper.py).
``separable=True`` replaces every k > 1 conv by a depthwise conv (k * C_in weights) followed
by a pointwise one (C_in * C_out), as in QuartzNet.

Padding (``x_paddings[b, t] = 1`` marks padding; padding must be trailing). Every conv input
is multiplied by the validity mask ``1 - paddings`` first, so a conv sees zeros past the end
of each sequence -- exactly what "SAME" zero padding shows it on the unpadded sequence.
Batch norm in training uses masked statistics over the valid frames of the whole batch,

    mu = sum_{b,t} v_bt h_bt / sum v,   sigma^2 = sum_{b,t} v_bt (h_bt - mu)^2 / sum v,

and updates its running averages with them (``ra <- m ra + (1 - m) stat``; evaluation uses
the running averages). Together: outputs at valid frames do not depend on the content of the
padded frames, and a batch holding one padded sequence gives the same valid outputs as the
unpadded sequence alone (train and eval). Convolutions use symmetric explicit padding
``d (k - 1) / 2`` (odd k), so output frame j of the strided prologue is centred on input frame
``stride * j``: ``T' = ceil(T / stride)`` and the output paddings are ``x_paddings[:, ::stride]``.

SpecAugment (Park et al. 2019; ``repro.data.speech.features.spec_augment``): with
``spec_augment = (freq_masks, freq_width, time_masks, time_width)`` not all zero, training
calls mask the input features first (fresh masks every step from the ``dropout`` rng stream);
evaluation never masks.

Call: ``model.apply(variables, x [B, T, F], x_paddings [B, T] (optional: none = no padding),
train=bool, rngs={"dropout": key}, mutable=["batch_stats"] when training)`` returns
``(logits [B, T', num_outputs], output_paddings [B, T'])``. The class attribute
``input_keys = ("x", "x_paddings")`` tells the engine which batch entries to pass.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from repro.data.speech.features import spec_augment
from repro.models._checks import as_int_tuple, check_choice, check_int_at_least, check_rate
from repro.models.conv import CONV_IMPLS, conv
from repro.models.initializers import KERNEL_INIT_NAMES, get_kernel_init

RESIDUALS: tuple[str, ...] = ("none", "block", "dense")
# Compute dtypes. Parameters, batch-norm statistics and the logits stay float32 either way.
# float16 is left out: it needs loss scaling, which the engine does not do.
COMPUTE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


class MaskedBatchNorm(nn.Module):
    """Batch norm over [B, T, C] whose statistics exclude padded frames (module docstring).

    Parameters ``scale``/``bias`` [C]; running ``mean``/``var`` [C] in ``batch_stats``.
    """

    momentum: float = 0.9
    epsilon: float = 1e-3

    @nn.compact
    def __call__(self, x: jax.Array, valid: jax.Array, *, train: bool) -> jax.Array:
        """``valid`` [B, T] is 1 at real frames, 0 at padding."""
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (channels,), jnp.float32)
        xf = x.astype(jnp.float32)
        if train:
            weights = valid.astype(jnp.float32)[..., None]
            # max(., 1): an all-padding batch keeps finite statistics (0 mean, 0 variance).
            count = jnp.maximum(jnp.sum(weights), 1.0)
            mean = jnp.sum(weights * xf, axis=(0, 1)) / count
            # Two-pass variance: no cancellation of E[x^2] - E[x]^2 at large means.
            var = jnp.sum(weights * (xf - mean) ** 2, axis=(0, 1)) / count
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        else:
            mean, var = ra_mean.value, ra_var.value
        y = (xf - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(x.dtype)


def conv1d(
    h: jax.Array,
    kernel: jax.Array,
    *,
    stride: int = 1,
    dilation: int = 1,
    depthwise: bool = False,
    impl: str = "auto",
) -> jax.Array:
    """1-D convolution with symmetric zero padding ``d (k - 1) / 2`` (odd k).

    ``out[b, j, o] = sum_{i, c} pad(h)[b, stride j + d i, c] kernel[i, c, o]``; depthwise,
    with a kernel ``[k, 1, C]``: ``out[b, j, c] = sum_i pad(h)[b, stride j + d i, c]
    kernel[i, 0, c]``. ``impl`` "matmul" (im2col; the choice on CPU because XLA:CPU runs
    conv gradients inside ``while_loop`` bodies through its slow generic emitter -- measured
    80 ms vs 2 ms per step of a 4-conv stack), "xla", or "auto" (default: "matmul" on CPU,
    "xla" on GPU/TPU, where im2col would multiply activation memory by the kernel size); see
    ``repro.models.conv``.
    """
    half = dilation * (kernel.shape[0] - 1) // 2
    return conv(
        h,
        kernel,
        strides=stride,
        padding=[(half, half)],
        dilation=dilation,
        feature_group_count=h.shape[-1] if depthwise else 1,
        impl=impl,
    )


class _Conv1D(nn.Module):
    """Bias-free 1-D conv with a flax-Conv-shaped ``kernel`` [k, C_in (1 if depthwise), C_out]."""

    features: int
    kernel_size: int
    stride: int
    dilation: int
    depthwise: bool
    kernel_init: Any
    impl: str

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        shape = (self.kernel_size, 1 if self.depthwise else h.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        return conv1d(
            h,
            kernel.astype(h.dtype),  # float32 master weights, convolved in h's dtype
            stride=self.stride,
            dilation=self.dilation,
            depthwise=self.depthwise,
            impl=self.impl,
        )


class _MaskedConvBN(nn.Module):
    """``BN(conv(valid * h))``: (optionally separable) 1-D conv, then masked batch norm."""

    features: int
    kernel_size: int
    stride: int
    dilation: int
    separable: bool
    kernel_init: Any
    bn_momentum: float
    bn_epsilon: float
    impl: str

    @nn.compact
    def __call__(
        self, h: jax.Array, valid_in: jax.Array, valid_out: jax.Array, *, train: bool
    ) -> jax.Array:
        h = h * valid_in[..., None].astype(h.dtype)
        conv = functools.partial(_Conv1D, kernel_init=self.kernel_init, impl=self.impl)
        if self.separable and self.kernel_size > 1:
            h = conv(
                h.shape[-1], self.kernel_size, self.stride, self.dilation, True, name="depthwise"
            )(h)
            h = conv(self.features, 1, 1, 1, False, name="pointwise")(h)
        else:
            h = conv(
                self.features, self.kernel_size, self.stride, self.dilation, False, name="conv"
            )(h)
        return MaskedBatchNorm(self.bn_momentum, self.bn_epsilon, name="norm")(
            h, valid_out, train=train
        )


def _per_block(name: str, values: tuple[Any, ...], blocks: int) -> tuple[Any, ...]:
    """Expand a per-block list of length L (L divides `blocks`) to one entry per block."""
    if not values or blocks % len(values):
        raise ValueError(
            f"{name} must have a length dividing blocks={blocks} (e.g. 1 or {blocks}), "
            f"got {list(values)}"
        )
    repeat = blocks // len(values)
    return tuple(v for v in values for _ in range(repeat))


def _as_rates(name: str, value: Any) -> tuple[float, ...]:
    items = (value,) if isinstance(value, numbers.Real) else tuple(value)
    for item in items:
        check_rate(name, item)
    return tuple(float(item) for item in items)


def _check_odd(name: str, sizes: tuple[int, ...]) -> None:
    if any(k % 2 == 0 for k in sizes):
        raise ValueError(f"{name} must be odd integers (centred convs), got {list(sizes)}")


class Jasper(nn.Module):
    """Jasper BxR acoustic model (module docstring). Defaults: a tiny 2x2 for CPU tests.

    Attributes:
      num_outputs: logits per frame, vocabulary + 1 (blank).
      blocks, repeats: B blocks of R sub-blocks.
      filters, kernel_sizes, dropout: per-block lists (length dividing B; dropout may be a
        number).
      prologue_filters, prologue_kernel, stride, prologue_dropout: the first conv (Jasper:
        256, 11, 2, 0.2).
      epilogue_filters, epilogue_kernels, epilogue_dilations, epilogue_dropout: convs after
        the blocks (Jasper: (896, 1024), (29, 1), (2, 1), 0.4), before the output 1x1 conv.
      separable: depthwise-separable convs for k > 1.
      residual: "none", "block" or "dense".
      kernel_init_name: conv kernel initializer (Jasper/OpenSeq2Seq: Xavier = "glorot").
      bn_momentum, bn_epsilon: batch norm running-average momentum and epsilon (0.9, 1e-3 as
        in OpenSeq2Seq's Jasper configs).
      spec_augment: (freq_masks, freq_width, time_masks, time_width) of SpecAugment in
        training (module docstring); all zero (default) = off.
      conv_impl: "auto" (default: "matmul" on the CPU backend, "xla" on GPU/TPU), "matmul"
        (im2col einsum; fast in CPU training loops) or "xla" (``lax.conv_general_dilated``);
        see ``conv1d``.
      dtype: compute dtype, "float32" (default) or "bfloat16" (mixed precision: features,
        activations, convolutions and the output layer in bfloat16; parameters, their
        gradients, batch-norm statistics and normalization in float32; logits returned as
        float32, so CTC's log-sum-exps run in float32).
    """

    input_keys: ClassVar[tuple[str, ...]] = ("x", "x_paddings")

    num_outputs: int = 29
    blocks: int = 2
    repeats: int = 2
    filters: Sequence[int] = (32, 48)
    kernel_sizes: Sequence[int] = (7, 9)
    dropout: float | Sequence[float] = 0.0
    prologue_filters: int = 32
    prologue_kernel: int = 11
    stride: int = 2
    prologue_dropout: float = 0.0
    epilogue_filters: Sequence[int] = (64, 64)
    epilogue_kernels: Sequence[int] = (11, 1)
    epilogue_dilations: Sequence[int] = (2, 1)
    epilogue_dropout: float = 0.0
    separable: bool = False
    residual: str = "block"
    kernel_init_name: str = "glorot"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    spec_augment: Sequence[int] = (0, 0, 0, 0)
    conv_impl: str = "auto"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        # Hydra hands lists as ListConfig: store hashable tuples, expanded per block.
        check_int_at_least("num_outputs", self.num_outputs, 2)
        check_int_at_least("blocks", self.blocks, 1)
        check_int_at_least("repeats", self.repeats, 1)
        check_int_at_least("prologue_filters", self.prologue_filters, 1)
        check_int_at_least("prologue_kernel", self.prologue_kernel, 1)
        check_int_at_least("stride", self.stride, 1)
        _check_odd("prologue_kernel", (self.prologue_kernel,))
        filters = as_int_tuple("filters", self.filters)
        kernels = as_int_tuple("kernel_sizes", self.kernel_sizes)
        _check_odd("kernel_sizes", kernels)
        object.__setattr__(self, "filters", _per_block("filters", filters, self.blocks))
        object.__setattr__(self, "kernel_sizes", _per_block("kernel_sizes", kernels, self.blocks))
        rates = _as_rates("dropout", self.dropout)
        object.__setattr__(self, "dropout", _per_block("dropout", rates, self.blocks))
        check_rate("prologue_dropout", self.prologue_dropout)
        check_rate("epilogue_dropout", self.epilogue_dropout)
        epi = {
            key: as_int_tuple(key, getattr(self, key))
            for key in ("epilogue_filters", "epilogue_kernels", "epilogue_dilations")
        }
        if (
            not len(epi["epilogue_filters"])
            == len(epi["epilogue_kernels"])
            == len(epi["epilogue_dilations"])
        ):
            raise ValueError(
                "epilogue_filters, epilogue_kernels and epilogue_dilations must have equal "
                f"lengths, got {[list(v) for v in epi.values()]}"
            )
        _check_odd("epilogue_kernels", epi["epilogue_kernels"])
        for key, value in epi.items():
            object.__setattr__(self, key, value)
        masks = as_int_tuple("spec_augment", self.spec_augment, low=0)
        if len(masks) != 4:
            raise ValueError(
                "spec_augment must be 4 integers >= 0 (freq_masks, freq_width, time_masks, "
                f"time_width), got {list(masks)}"
            )
        object.__setattr__(self, "spec_augment", masks)
        check_choice("residual", self.residual, RESIDUALS)
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        check_choice("dtype", self.dtype, COMPUTE_DTYPES)
        check_choice("kernel_init_name", self.kernel_init_name, KERNEL_INIT_NAMES)
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1), got {self.bn_momentum!r}")
        if not self.bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        super().__post_init__()

    def output_paddings(self, x_paddings: jax.Array) -> jax.Array:
        """Paddings of the output frames: frame j is centred on input frame ``stride * j``."""
        return x_paddings[:, :: self.stride]

    @nn.compact
    def __call__(
        self, x: jax.Array, x_paddings: jax.Array | None = None, *, train: bool
    ) -> tuple[jax.Array, jax.Array]:
        """(logits [B, T', num_outputs], output paddings [B, T']) for features [B, T, F]."""
        if x.ndim != 3:
            raise ValueError(f"Jasper expects features [B, T, F], got shape {x.shape}")
        if x_paddings is None:
            x_paddings = jnp.zeros(x.shape[:2], jnp.float32)
        if x_paddings.shape != x.shape[:2]:
            raise ValueError(
                f"x_paddings must have shape {x.shape[:2]} ([B, T] of x), got {x_paddings.shape}"
            )
        out_paddings = self.output_paddings(x_paddings).astype(jnp.float32)
        valid_in = 1.0 - x_paddings.astype(jnp.float32)
        valid = 1.0 - out_paddings
        kernel_init = get_kernel_init(self.kernel_init_name)

        def conv_bn(
            features: int, kernel: int, name: str, *, stride: int = 1, dilation: int = 1
        ) -> _MaskedConvBN:
            return _MaskedConvBN(
                features,
                kernel,
                stride,
                dilation,
                self.separable,
                kernel_init,
                self.bn_momentum,
                self.bn_epsilon,
                self.conv_impl,
                name=name,
            )

        def activate(h: jax.Array, rate: float) -> jax.Array:
            h = nn.relu(h)
            return nn.Dropout(rate, deterministic=not train)(h) if rate > 0 else h

        if train and any(self.spec_augment):
            freq_masks, freq_width, time_masks, time_width = self.spec_augment
            x = spec_augment(
                x,
                x_paddings,
                self.make_rng("dropout"),
                freq_masks=freq_masks,
                freq_width=freq_width,
                time_masks=time_masks,
                time_width=time_width,
            )
        compute = jnp.dtype(self.dtype)
        h = conv_bn(self.prologue_filters, self.prologue_kernel, "prologue", stride=self.stride)(
            x.astype(compute), valid_in, valid, train=train
        )
        h = activate(h, self.prologue_dropout)
        h = self._blocks(h, valid, conv_bn, activate, train=train)
        for i, (features, kernel, dilation) in enumerate(
            zip(self.epilogue_filters, self.epilogue_kernels, self.epilogue_dilations, strict=True)
        ):
            h = conv_bn(features, kernel, f"epilogue{i}", dilation=dilation)(
                h, valid, valid, train=train
            )
            h = activate(h, self.epilogue_dropout)
        h = h * valid[..., None].astype(h.dtype)
        logits = nn.Dense(self.num_outputs, kernel_init=kernel_init, dtype=compute, name="output")(
            h
        )
        return logits.astype(jnp.float32), out_paddings

    def _blocks(
        self,
        h: jax.Array,
        valid: jax.Array,
        conv_bn: Callable[..., nn.Module],
        activate: Callable[[jax.Array, float], jax.Array],
        *,
        train: bool,
    ) -> jax.Array:
        """The B blocks of R sub-blocks with their residuals (module docstring), called from
        ``__call__``'s compact scope with its conv + batch norm and activation factories."""
        earlier = [h]  # outputs a dense residual adds (prologue, then every block)
        for b in range(self.blocks):
            features, kernel, rate = self.filters[b], self.kernel_sizes[b], self.dropout[b]
            sources = {"none": [], "block": [h], "dense": earlier}[self.residual]
            residual = sum(
                (
                    conv_bn(features, 1, f"block{b}_residual{j}")(o, valid, valid, train=train)
                    for j, o in enumerate(sources)
                ),
                start=jnp.zeros((), h.dtype),
            )
            for r in range(self.repeats):
                h = conv_bn(features, kernel, f"block{b}_sub{r}")(h, valid, valid, train=train)
                if r == self.repeats - 1:
                    h = h + residual
                h = activate(h, rate)
            earlier.append(h)
        return h
