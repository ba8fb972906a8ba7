"""VGG networks (Simonyan & Zisserman 2015) in the CIFAR form (32x32 inputs, NHWC).

Feature layers by depth (numbers: 3x3 "SAME" convolutions of that many channels, each followed
by BatchNorm (``batch_norm=True``) and ReLU; "M": 2x2 stride-2 max pooling):

- 11: 64 M 128 M 256 256 M 512 512 M 512 512 M
- 13, 16, 19: the deeper configurations of the paper (Table 1, columns B, D, E).

then flatten (1x1x512 on 32x32 inputs) and one linear readout, as in the CIFAR VGGs Wu et al.
(2020) train (the `kuangliu/pytorch-cifar` form, which their code uuujf/MultiNoise follows):
convolutions keep their bias even before BatchNorm, so VGG-11 on 32x32x3 with 10 classes has
9,231,114 parameters (BatchNorm scales and offsets included). BatchNorm statistics live in
the ``batch_stats`` collection (``mutable=["batch_stats"]`` when ``train=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import linen as nn

from repro.models._checks import check_choice, check_int_at_least
from repro.models.conv import CONV_IMPLS, Conv
from repro.models.initializers import KERNEL_INIT_NAMES, get_kernel_init

POOL = "M"
VGG_LAYERS: dict[int, tuple[int | str, ...]] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (
        *(64, 64, POOL, 128, 128, POOL),
        *(256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    ),
    19: (
        *(64, 64, POOL, 128, 128, POOL),
        *(256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
    ),
}


class VGG(nn.Module):
    """VGG-``depth`` feature layers and a linear readout; see the module docstring.

    Attributes:
      depth: 11, 13, 16 or 19.
      num_outputs: readout size (classes).
      batch_norm: BatchNorm after every convolution (the CIFAR form; False: plain VGG).
      width: channels of the first conv (64 in VGG); every layer's channels scale with it
        (``channels * width // 64``), for tiny test or CPU variants.
      kernel_init_name, init_scale: as in ``DeepMLP``, for every conv and the readout
        ("he" = N(0, 2 / fan_in)).
      bn_momentum, bn_epsilon: BatchNorm running-average momentum and epsilon.
      conv_impl: "auto" (matmul on CPU, xla on GPU/TPU) | "matmul" | "xla" (repro.models.conv).
    """

    depth: int = 11
    num_outputs: int = 10
    batch_norm: bool = True
    width: int = 64
    kernel_init_name: str = "he"
    init_scale: float = 0.1
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    conv_impl: str = "auto"

    def __post_init__(self) -> None:
        if self.depth not in VGG_LAYERS:
            raise ValueError(f"depth must be one of {sorted(VGG_LAYERS)}, got {self.depth!r}")
        check_int_at_least("num_outputs", self.num_outputs, 1)
        check_int_at_least("width", self.width, 1)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be true or false, got {self.batch_norm!r}")
        check_choice("kernel_init_name", self.kernel_init_name, KERNEL_INIT_NAMES)
        check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
        get_kernel_init(self.kernel_init_name, init_scale=self.init_scale)
        if not 0 <= self.bn_momentum < 1:
            raise ValueError(f"bn_momentum must be in [0, 1), got {self.bn_momentum!r}")
        if not self.bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        super().__post_init__()

    @property
    def layers(self) -> Sequence[int | str]:
        return VGG_LAYERS[self.depth]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Logits ``[N, num_outputs]`` for images ``[N, H, W, C]`` (H, W divisible by 32)."""
        if x.ndim != 4:
            raise ValueError(f"VGG expects NHWC images [N, H, W, C], got shape {x.shape}")
        kernel_init = get_kernel_init(self.kernel_init_name, init_scale=self.init_scale)
        h = x
        for index, layer in enumerate(self.layers):
            if layer == POOL:
                h = nn.max_pool(h, (2, 2), strides=(2, 2))
                continue
            channels = max(1, int(layer) * self.width // 64)
            h = Conv(
                channels, (3, 3), padding="SAME", kernel_init=kernel_init,
                impl=self.conv_impl, name=f"conv_{index}",
            )(h)  # fmt: skip
            if self.batch_norm:
                h = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon,
                    name=f"norm_{index}",
                )(h)
            h = nn.relu(h)
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(self.num_outputs, kernel_init=kernel_init, name="readout")(h)
