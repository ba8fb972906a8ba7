"""Channels-last N-D convolution with two implementations: XLA's conv, or im2col + one matmul.

For input ``x [N, *S, C_in]`` (S: n spatial sizes), kernel ``w [*k, C_in / G, C_out]`` (flax's
layout), strides s, kernel dilation d, zero padding ``(lo_j, hi_j)`` per spatial axis and G
feature groups, output position ``p`` (a multi-index over the output's spatial axes) is

    y[b, p, o] = sum_{i in K} sum_{c < C_in / G} pad(x)[b, s * p + d * i, g(o) C_in / G + c]
                                                   * w[i, c, o],     g(o) = o // (C_out / G),

with K the multi-indices of the kernel window; each spatial output size is
``floor((S_j + lo_j + hi_j - d_j (k_j - 1) - 1) / s_j) + 1``. Depthwise convs are G = C_in.

- ``impl="xla"``: ``lax.conv_general_dilated``.
- ``impl="matmul"`` (im2col): stack the |K| strided views ``pad(x)[:, d * i :: s]`` into patches
  ``[N, *S_out, |K|, C_in]`` and contract them with the kernel reshaped to
  ``[|K| * C_in, C_out]`` in one dot (per group for G > 1). Its gradient is a dot and a sum
  of |K| padded slices -- no convolution anywhere.

Why both: XLA:CPU runs a convolution fast (Eigen / XNNPACK) only when its dimension numbers
are canonical (input NHWC, kernel HWIO). The backward pass of a conv produces non-canonical
convs (the kernel gradient contracts over the batch: ``f01b_i01o->01bf``; the input gradient
takes a reversed ``01oi`` kernel); the CPU pass that rewrites them to transposes + a canonical
conv (``ConvCanonicalization``) only visits the entry computation, so inside a
``lax.while_loop`` / ``lax.scan`` body -- the engine's compiled chunks -- they run through
XLA's generic loop emitter (profiled: those 3 convs take 25 of 28 ms of a SmallCNN step).
No XLA flag changes this (tried xnnpack, onednn, ynn fusion types, thunk runtime). Dots and
slices have no such restriction. Measured with scripts/benchmark_conv.py (2 shared cores,
jax 0.10.2, batch 128, ms per step, medians of 5 interleaved rounds):

    model / impl          top-level jit   while_loop   4 replicas vmapped in while_loop
    SmallCNN 28x28x1 xla        19.8          70.2          462.7
                  matmul        36.6          20.3           98.7
    SmallCNN 32x32x3 xla        51.0         126.2          734.2
                  matmul        82.7          41.4          155.7
    ResNet-20 32x32x3 xla        536         17851           (not run: > 1 min per step)
                  matmul        1334           675           3571 (another run: 762 alone)

(ResNet: 2 steps per call, 3 rounds.) In the engine's loop "matmul" is 3-3.5x faster for
SmallCNN (4.6-5x with 4 replicas) and 26x for ResNet-20, and as fast as or faster than XLA's
conv at top level. At top level (a jit called from Python per step, where XLA canonicalizes)
XLA's conv is 1.6-2.5x faster; use "xla" there and on accelerators, whose conv backward passes
are unaffected. The default ``impl="auto"`` picks "matmul" on the CPU backend and "xla" on
any other (:func:`resolve_conv_impl`). Both give the same numbers up to float32 summation
order (tests/models/test_conv.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

CONV_IMPLS: tuple[str, ...] = ("auto", "matmul", "xla")
"""``impl`` values: ``"auto"`` (default) is :func:`resolve_conv_impl` of the backend."""


def resolve_conv_impl(impl: str) -> str:
    """``"matmul"`` or ``"xla"``: ``impl`` itself, or for ``"auto"`` the choice for the backend.

    ``jax.default_backend()`` ``"cpu"`` -> ``"matmul"`` (the convs of a loop body's backward
    pass run through XLA:CPU's generic emitter, above); anything else (GPU, TPU) ->
    ``"xla"``: accelerators run those convs natively, and im2col materializes every patch,
    multiplying the activation memory by the kernel's tap count (11-29x for Jasper 10x5).
    """
    if impl not in CONV_IMPLS:
        raise ValueError(f"impl must be one of {list(CONV_IMPLS)}, got {impl!r}")
    if impl != "auto":
        return impl
    return "matmul" if jax.default_backend() == "cpu" else "xla"


Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]


def _as_tuple(name: str, value: int | Sequence[int] | None, n: int, default: int) -> tuple:
    if value is None:
        return (default,) * n
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} must have {n} entries (one per spatial axis), got {value}")
    return value


def explicit_padding(
    spatial: Sequence[int],
    kernel_spatial: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
    padding: Padding,
) -> list[tuple[int, int]]:
    """``(lo, hi)`` zero padding per spatial axis for "SAME", "VALID", an int p (``(p, p)``
    on every axis) or explicit pairs; "SAME" gives ``ceil(S / s)`` outputs (XLA's rule)."""
    n = len(spatial)
    if isinstance(padding, str):
        if padding not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}")
        effective = [(k - 1) * d + 1 for k, d in zip(kernel_spatial, dilation, strict=True)]
        return [tuple(p) for p in lax.padtype_to_pads(spatial, effective, strides, padding)]
    if isinstance(padding, int):
        return [(padding, padding)] * n
    pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    if len(pairs) != n or any(len(p) != 2 for p in pairs):
        raise ValueError(f"padding must have {n} (lo, hi) pairs, got {padding!r}")
    return [(int(lo), int(hi)) for lo, hi in pairs]


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "VALID",
    dilation: int | Sequence[int] | None = None,
    feature_group_count: int = 1,
    impl: str = "auto",
) -> jax.Array:
    """The convolution of the module docstring: ``x [N, *S, C_in]``, ``kernel [*k, C_in / G,
    C_out]`` -> ``[N, *S_out, C_out]``; ``impl`` "matmul" (im2col), "xla" or "auto" (by
    backend, :func:`resolve_conv_impl`)."""
    impl = resolve_conv_impl(impl)
    n = kernel.ndim - 2
    if x.ndim != n + 2:
        raise ValueError(f"x must have {n + 2} axes for a {n}-D kernel, got shape {x.shape}")
    groups = feature_group_count
    if x.shape[-1] != kernel.shape[-2] * groups or kernel.shape[-1] % groups:
        raise ValueError(
            f"channels do not fit: x {x.shape}, kernel {kernel.shape}, feature_group_count "
            f"{groups} (need C_in = kernel.shape[-2] * G and G | C_out)"
        )
    strides = _as_tuple("strides", strides, n, 1)
    dilation = _as_tuple("dilation", dilation, n, 1)
    pads = explicit_padding(x.shape[1:-1], kernel.shape[:n], strides, dilation, padding)
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if impl == "xla":
        lhs_spec = (0, n + 1, *range(1, n + 1))  # N, C, spatial...
        numbers = lax.ConvDimensionNumbers(lhs_spec, (n + 1, n, *range(n)), lhs_spec)
        return lax.conv_general_dilated(
            x,
            kernel,
            strides,
            pads,
            rhs_dilation=dilation,
            dimension_numbers=numbers,
            feature_group_count=groups,
        )
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    out_sizes = [
        (size - (k - 1) * d - 1) // s + 1
        for size, k, d, s in zip(
            padded.shape[1:-1], kernel.shape[:n], dilation, strides, strict=True
        )
    ]
    if min(out_sizes) < 1:
        raise ValueError(f"the kernel window exceeds the padded input: output sizes {out_sizes}")
    views = []
    for offset in itertools.product(*(range(k) for k in kernel.shape[:n])):
        start = (0, *(i * d for i, d in zip(offset, dilation, strict=True)), 0)
        limit = (
            padded.shape[0],
            *(b + s * (o - 1) + 1 for b, s, o in zip(start[1:], strides, out_sizes, strict=False)),
            padded.shape[-1],
        )
        views.append(lax.slice(padded, start, limit, (1, *strides, 1)))
    patches = jnp.stack(views, axis=-2)  # [N, *S_out, |K|, C_in], K in row-major order
    taps = len(views)
    c_out = kernel.shape[-1]
    if groups == 1:
        flat = patches.reshape(*patches.shape[:-2], taps * x.shape[-1])
        return flat @ kernel.reshape(taps * kernel.shape[-2], c_out)
    # Group g contracts input channels g*C_g..(g+1)*C_g-1 with output channels g*O_g...
    per_group = patches.reshape(*patches.shape[:-1], groups, kernel.shape[-2])
    w = kernel.reshape(taps, kernel.shape[-2], groups, c_out // groups)
    out = jnp.einsum("...kgc,kcgo->...go", per_group, w)
    return out.reshape(*out.shape[:-2], c_out)


class Conv(nn.Module):
    """``flax.linen.Conv`` (channels last) computed by ``conv`` with a selectable ``impl``.

    Parameters ``kernel [*kernel_size, C_in / G, features]`` and, with ``use_bias``,
    ``bias [features]``: the names, shapes and order of ``nn.Conv``, so a model switching
    to this module keeps its parameter tree and, for the same rng, its initial values.
    """

    features: int
    kernel_size: Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    kernel_dilation: int | Sequence[int] | None = None
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[N, *S, C_in]`` -> ``[N, *S_out, features]``."""
        kernel_shape = (
            *self.kernel_size,
            x.shape[-1] // self.feature_group_count,
            self.features,
        )
        kernel = self.param("kernel", self.kernel_init, kernel_shape, jnp.float32)
        y = conv(
            x,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count,
            impl=self.impl,
        )
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
            y = y + bias.astype(y.dtype)
        return y
