"""Optimizers and gradient-noise methods, as small composable optax transformations.

* Additive annealed gradient noise (Neelakantan et al., 2015): :func:`add_noise`,
  :func:`noisy_sgd` (:mod:`repro.optim.additive_noise`).
* NovoGrad (Ginsburg et al., 2019): :func:`scale_by_novograd`, :func:`novograd`,
  :func:`novograd_openseq2seq` (:mod:`repro.optim.novograd`).
* Per-example loss-weight samplers (Wu et al., 2020; Mori & Ueda, 2020): SGD and Bernoulli
  sampling, Gaussian multipliers (Fisher, gradient covariance, sparse, ghost batch) and
  noise enhancement (:mod:`repro.optim.example_weights`).
* Keys and the fast fused Gaussian generator: :mod:`repro.optim.prng` (an index of
  :mod:`~repro.optim.threefry`, :mod:`~repro.optim.keys`, :mod:`~repro.optim.elementary`,
  :mod:`~repro.optim.normals` and :mod:`~repro.optim.noise_tree`).

Every transformation's docstring states its math; every constructor validates its
arguments with a one-line ``ValueError`` (:mod:`repro.validation`), skipping traced values
and schedules so optimizers can be built inside ``jax.vmap`` over hyperparameter grids.
"""

from repro.optim.additive_noise import AddNoiseState, add_noise, noise_variance, noisy_sgd
from repro.optim.example_weights import (
    BernoulliSampling,
    GaussianFisher,
    GaussianGradientCovariance,
    GhostBatchGaussian,
    NoiseEnhancement,
    SGDSampling,
    SparseGaussian,
    bernoulli_sampling,
    gaussian_fisher,
    gaussian_gradient_covariance,
    ghost_batch_gaussian,
    noise_enhancement,
    noise_enhancement_effective_batch_size,
    noise_scale_for_effective_batch_size,
    sgd_sampling,
    sparse_gaussian,
)
from repro.optim.keys import as_key, fold_in
from repro.optim.noise_tree import tree_normal_like
from repro.optim.novograd import (
    OPENSEQ2SEQ_BETAS,
    novograd,
    novograd_openseq2seq,
    scale_by_novograd,
)
from repro.optim.transforms import keep_update_dtype, scale_by_learning_rate

__all__ = [
    "OPENSEQ2SEQ_BETAS",
    "AddNoiseState",
    "BernoulliSampling",
    "GaussianFisher",
    "GaussianGradientCovariance",
    "GhostBatchGaussian",
    "NoiseEnhancement",
    "SGDSampling",
    "SparseGaussian",
    "add_noise",
    "as_key",
    "bernoulli_sampling",
    "fold_in",
    "gaussian_fisher",
    "gaussian_gradient_covariance",
    "ghost_batch_gaussian",
    "keep_update_dtype",
    "noise_enhancement",
    "noise_enhancement_effective_batch_size",
    "noise_scale_for_effective_batch_size",
    "noise_variance",
    "noisy_sgd",
    "novograd",
    "novograd_openseq2seq",
    "scale_by_learning_rate",
    "scale_by_novograd",
    "sgd_sampling",
    "sparse_gaussian",
    "tree_normal_like",
]
