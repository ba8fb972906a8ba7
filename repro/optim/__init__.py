"""Optimizers and gradient-noise methods, as small composable optax transformations.

* Additive annealed gradient noise (Neelakantan et al., 2015): :func:`add_noise`,
  :func:`noisy_sgd`.
* Key handling and the fast Gaussian generator: :mod:`repro.optim.prng`.
"""

from repro.optim.additive_noise import AddNoiseState, add_noise, noise_variance, noisy_sgd
from repro.optim.prng import as_key, tree_normal_like
from repro.optim.transforms import keep_update_dtype, scale_by_learning_rate

__all__ = [
    "AddNoiseState",
    "add_noise",
    "as_key",
    "keep_update_dtype",
    "noise_variance",
    "noisy_sgd",
    "scale_by_learning_rate",
    "tree_normal_like",
]
