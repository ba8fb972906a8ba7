"""Flax linen models of the reproductions, free of training logic.

Every model is called as ``model.apply(variables, x, train=bool, rngs=...) -> outputs`` with
``outputs`` of shape ``[N, num_outputs]``, except sequence models (Jasper), which declare the
batch entries they take in ``input_keys`` (``("x", "x_paddings")``) and return
``(logits [N, T', num_outputs], output_paddings [N, T'])``. Dropout (DeepMLP, SmallCNN,
Jasper) draws from the 'dropout' rng and is active only with ``train=True``; ResNet and
Jasper keep batch-norm statistics in the 'batch_stats' collection
(``mutable=["batch_stats"]`` when ``train=True``).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import linen as nn

from repro.models.deep_mlp import DeepMLP, Linear, flatten_features
from repro.models.initializers import (
    ACTIVATIONS,
    BIAS_INIT_NAMES,
    KERNEL_INIT_NAMES,
    get_activation,
    get_bias_init,
    get_kernel_init,
    sussillo_abbott_gain,
    sussillo_abbott_normal,
)
from repro.models.jasper import Jasper, MaskedBatchNorm
from repro.models.resnet import IMAGENET_STAGES, ResNet
from repro.models.small_cnn import SmallCNN
from repro.models.vgg import VGG

MODELS: dict[str, type[nn.Module]] = {
    "deep_mlp": DeepMLP,
    "small_cnn": SmallCNN,
    "resnet": ResNet,
    "linear": Linear,
    "jasper": Jasper,
    "vgg": VGG,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """The model class registered as ``name`` (one of ``MODELS``) built with ``kwargs``."""
    if name not in MODELS:
        raise ValueError(f"model name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree (e.g. ``variables["params"]``)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(params)))


__all__ = [
    "ACTIVATIONS",
    "BIAS_INIT_NAMES",
    "IMAGENET_STAGES",
    "KERNEL_INIT_NAMES",
    "MODELS",
    "VGG",
    "DeepMLP",
    "Jasper",
    "Linear",
    "MaskedBatchNorm",
    "ResNet",
    "SmallCNN",
    "build_model",
    "count_params",
    "flatten_features",
    "get_activation",
    "get_bias_init",
    "get_kernel_init",
    "sussillo_abbott_gain",
    "sussillo_abbott_normal",
]
