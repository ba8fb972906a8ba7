"""Residual networks (He et al. 2016), CIFAR-style (depth 6n+2) and ImageNet-style (18..152).

Residual unit: ``out = relu(F(x) + shortcut(x))`` (v1) or, with ``preactivation=True``,
``out = F(relu(BN(x))) + shortcut(x)`` (v2, He et al. 2016b "Identity mappings in deep residual
networks"; NovoGrad's ImageNet runs used ResNet-50 v2).

- ``style="cifar"``: 3x3 stem conv of ``base_width`` (16) channels, three stages of n basic
  blocks (two 3x3 convs) with 16/32/64 channels, n = (depth - 2) / 6 (depth 20: n = 3), global
  average pooling, linear readout. Shortcuts are identities; where the shape changes they
  subsample by 2 and zero-pad the channels (the paper's option A), so ResNet-20 has 269,722
  parameters (0.27M, BatchNorm scales and offsets included).
- ``style="imagenet"``: 7x7/2 stem conv of 64 channels, 3x3/2 max pool, four stages
  (64/128/256/512 channels, x4 at the output of bottleneck blocks), projection shortcuts (1x1
  conv + BN) where the shape changes, stride on the 3x3 conv of a bottleneck ("v1.5").
  ResNet-50 (bottleneck, 3/4/6/3 blocks) has 25,557,032 parameters with 1000 classes.

BatchNorm statistics live in the ``batch_stats`` collection: ``train=True`` normalises with the
batch statistics and needs ``mutable=["batch_stats"]``; ``train=False`` uses the running
averages. Convolutions have no bias (BN follows).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from repro.models._checks import check_choice, check_int_at_least
from repro.models.conv import CONV_IMPLS, Conv
from repro.models.initializers import KERNEL_INIT_NAMES, get_kernel_init

STYLES: tuple[str, ...] = ("cifar", "imagenet")

# ImageNet-style depths: (block type, blocks per stage).
IMAGENET_STAGES: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

ModuleDef = Any


class _ResidualBlock(nn.Module):
    """One basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1 x4) residual unit."""

    features: int
    strides: int
    bottleneck: bool
    preactivation: bool
    pad_shortcut: bool
    conv: ModuleDef
    norm: ModuleDef
    zero_init_residual: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out_features = self.features * 4 if self.bottleneck else self.features
        s = (self.strides, self.strides)
        if self.bottleneck:
            layers = [(self.features, (1, 1), (1, 1)), (self.features, (3, 3), s)]
            layers.append((out_features, (1, 1), (1, 1)))
        else:
            layers = [(self.features, (3, 3), s), (self.features, (3, 3), (1, 1))]
        last_norm_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones

        needs_projection = x.shape[-1] != out_features or self.strides != 1
        if self.preactivation:
            h = nn.relu(self.norm(name="preact_norm")(x))
            source = h  # v2 projects the pre-activated input
        else:
            h = x
            source = x

        if not needs_projection:
            shortcut = x
        elif self.pad_shortcut:
            # Option A: subsample, then zero-pad the new channels (no parameters).
            shortcut = x[:, :: self.strides, :: self.strides, :]
            extra = out_features - x.shape[-1]
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, extra)))
        else:
            shortcut = self.conv(out_features, (1, 1), s, name="proj_conv")(source)
            if not self.preactivation:
                shortcut = self.norm(name="proj_norm")(shortcut)

        for i, (features, kernel, strides) in enumerate(layers):
            is_last = i == len(layers) - 1
            if self.preactivation and i > 0:
                h = nn.relu(self.norm(name=f"norm_{i - 1}")(h))
            h = self.conv(features, kernel, strides, name=f"conv_{i}")(h)
            if not self.preactivation:
                h = self.norm(name=f"norm_{i}", scale_init=last_norm_init if is_last else None)(h)
                if not is_last:
                    h = nn.relu(h)
        out = h + shortcut
        return out if self.preactivation else nn.relu(out)


def _norm(*args: Any, scale_init: Callable | None = None, **kwargs: Any) -> nn.BatchNorm:
    if scale_init is not None:
        kwargs["scale_init"] = scale_init
    return nn.BatchNorm(*args, **kwargs)


class ResNet(nn.Module):
    """ResNet by depth and style; see the module docstring.

    Attributes:
      depth: CIFAR style: 6n + 2 (20, 32, 44, 56, 110, ...); ImageNet style: 18/34/50/101/152.
      style: "cifar" or "imagenet".
      num_outputs: readout size (classes).
      base_width: channels of the first stage (default 16 for CIFAR, 64 for ImageNet).
      preactivation: v2 (pre-activation) residual units.
      kernel_init_name, init_scale: as in ``DeepMLP``, for every conv and the readout
        ("he" = N(0, 2 / fan_in) is He et al.'s choice).
      bn_momentum, bn_epsilon: BatchNorm running-average momentum and epsilon.
      zero_init_residual: start every residual branch at zero (last BN scale 0; v1 only).
      conv_impl: "auto" (default: "matmul" on the CPU backend, "xla" on GPU/TPU), "matmul"
        (im2col + one dot; the fast choice for CPU training loops) or "xla"
        (``lax.conv_general_dilated``; for accelerators); see ``repro.models.conv``.
    """

    depth: int = 20
    style: str = "cifar"
    num_outputs: int = 10
    base_width: int | None = None
    preactivation: bool = False
    kernel_init_name: str = "he"
    init_scale: float = 0.1
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    zero_init_residual: bool = False
    conv_impl: str = "auto"

    def __post_init__(self) -> None:
        check_choice("style", self.style, STYLES)
        check_int_at_least("num_outputs", self.num_outputs, 1)
        check_choice("kernel_init_name", self.kernel_init_name, KERNEL_INIT_NAMES)
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        get_kernel_init(self.kernel_init_name, init_scale=self.init_scale)
        if self.base_width is not None:
            check_int_at_least("base_width", self.base_width, 1)
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1), got {self.bn_momentum!r}")
        if not self.bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        self.stages()
        super().__post_init__()

    def stages(self) -> tuple[bool, tuple[int, ...]]:
        """(bottleneck?, blocks per stage) for this depth and style."""
        if self.style == "cifar":
            if (
                isinstance(self.depth, bool)
                or not isinstance(self.depth, int)
                or (self.depth < 8 or (self.depth - 2) % 6)
            ):
                raise ValueError(
                    "depth must be 6n + 2 with n >= 1 (e.g. 20, 32, 44, 56, 110) for "
                    f"style='cifar', got {self.depth!r}"
                )
            n = (self.depth - 2) // 6
            return False, (n, n, n)
        if self.depth not in IMAGENET_STAGES:
            raise ValueError(
                f"depth must be one of {sorted(IMAGENET_STAGES)} for style='imagenet', "
                f"got {self.depth!r}"
            )
        block, sizes = IMAGENET_STAGES[self.depth]
        return block == "bottleneck", sizes

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits ``[N, num_outputs]`` for images ``[N, H, W, C]``."""
        if x.ndim != 4:
            raise ValueError(f"ResNet expects NHWC images [N, H, W, C], got shape {x.shape}")
        bottleneck, stage_sizes = self.stages()
        cifar = self.style == "cifar"
        width = self.base_width or (16 if cifar else 64)
        kernel_init = get_kernel_init(self.kernel_init_name, init_scale=self.init_scale)
        conv = functools.partial(
            Conv, use_bias=False, kernel_init=kernel_init, padding="SAME", impl=self.conv_impl
        )
        norm = functools.partial(
            _norm,
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
        )

        if cifar:
            h = conv(width, (3, 3), name="stem_conv")(x)
        else:
            h = conv(width, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="stem_conv")(x)
        if not self.preactivation:
            h = nn.relu(norm(name="stem_norm")(h))
        if not cifar:
            h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

        for stage, num_blocks in enumerate(stage_sizes):
            for block in range(num_blocks):
                h = _ResidualBlock(
                    features=width * 2**stage,
                    strides=2 if stage > 0 and block == 0 else 1,
                    bottleneck=bottleneck,
                    preactivation=self.preactivation,
                    pad_shortcut=cifar,
                    conv=conv,
                    norm=norm,
                    zero_init_residual=self.zero_init_residual and not self.preactivation,
                    name=f"stage{stage}_block{block}",
                )(h)
        if self.preactivation:
            h = nn.relu(norm(name="final_norm")(h))
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_outputs, kernel_init=kernel_init, name="readout")(h)
