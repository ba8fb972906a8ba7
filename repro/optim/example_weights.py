r"""Per-example loss weights: sampling noise, multiplicative noise and noise enhancement.

Wu et al. (ICML 2020) write the stochastic gradient of a batch of :math:`k` examples with
per-example gradients :math:`\nabla\ell_1, \dots, \nabla\ell_k` as

.. math::

   g = \frac1k \sum_{i=1}^k w_i \nabla \ell_i = \nabla_\theta\,
       \underbrace{\frac1k \sum_i w_i\, \ell_i(\theta)}_{\texttt{mean(w * per\_example\_loss)}},
   \qquad \mathbb{E}[w_i] = 1,

so SGD's sampling noise, multiplicative Gaussian noise and Mori & Ueda's noise enhancement
are all a random weight vector :math:`w` drawn independently of the data. The gradient of
the weighted mean loss *is* the method's gradient estimate, computed in one ordinary
backward pass without per-example gradients. Every sampler here is an object with

* ``num_examples(batch_size) -> int``: examples the step consumes (``batch_size``, or
  ``2 * batch_size`` for noise enhancement); raises ``ValueError`` if the sampler cannot
  work on that many (e.g. an SGD batch larger than the data it samples from);
* ``__call__(key, num_examples) -> float32[num_examples]``: the weights;
* ``weight_covariance(num_examples)``: :math:`\mathrm{Cov}(w)` in closed form (NumPy);
* ``effective_batch_size(batch_size)``: :math:`B_{\mathrm{eff}}` (below).

**Covariances.** Write :math:`G = [\nabla\ell_1 \cdots \nabla\ell_k]`,
:math:`M_b = \frac1k G G^\top` (second moment of the batch) and
:math:`\Sigma_b = \frac1k G (I - \frac1k \mathbf 1\mathbf 1^\top) G^\top` (its covariance).
Conditional on the batch,

.. math:: \mathrm{Cov}(g \mid \text{batch}) = \frac{1}{k^2}\, G\, \mathrm{Cov}(w)\, G^\top .

If the batch holds :math:`k` i.i.d. examples whose gradients have mean :math:`\mu` and
covariance :math:`\Sigma`, the total covariance is

.. math::

   \mathrm{Cov}(g) = \frac{1}{k^2}\Big[\sum_i \mathbb{E}[w_i^2]\,\Sigma
                      + (\mathbf 1^\top \mathrm{Cov}(w) \mathbf 1)\,\mu\mu^\top\Big]
                   = \frac{\Sigma}{B_{\mathrm{eff}}} + c_\mu\, \mu\mu^\top,

which defines the **effective batch size** :math:`B_{\mathrm{eff}}`: plain SGD with
:math:`B_{\mathrm{eff}}` i.i.d. examples has covariance :math:`\Sigma / B_{\mathrm{eff}}`.
Samplers whose weights sum to a constant have :math:`c_\mu = 0`; the others add
:math:`c_\mu \mu\mu^\top`, negligible near a minimum (:math:`\mu \approx 0`), which is where
Wu et al. compare them. :func:`noise_scale_for_effective_batch_size` inverts
:math:`B_{\mathrm{eff}}` for every sampler.

Random bits come from the same fused Threefry generator as :func:`repro.optim.add_noise`
(:mod:`repro.optim.normals`), so drawing the weights is a single small kernel; constructors
validate their arguments (``ValueError`` naming the parameter), skipping traced values so
that a sampler can be built inside ``jax.vmap`` over a grid of scales or alphas.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from repro.optim.keys import key_words
from repro.optim.normals import leaf_normal
from repro.optim.threefry import threefry2x32
from repro.validation import (
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    is_checkable,
)

__all__ = [
    "BernoulliSampling",
    "GaussianFisher",
    "GaussianGradientCovariance",
    "GhostBatchGaussian",
    "NoiseEnhancement",
    "SGDSampling",
    "SparseGaussian",
    "bernoulli_sampling",
    "gaussian_fisher",
    "gaussian_gradient_covariance",
    "ghost_batch_gaussian",
    "noise_enhancement",
    "noise_enhancement_effective_batch_size",
    "noise_scale_for_effective_batch_size",
    "sgd_sampling",
    "sparse_gaussian",
]


# ----------------------------------------------------------------------------- random bits


def _bits(key: Any, num: int) -> tuple[jax.Array, jax.Array]:
    """Two independent ``uint32[num]`` words per position from one Threefry block each."""
    k0, k1 = key_words(key)
    return threefry2x32(k0, k1, 0, jax.lax.iota(jnp.uint32, num))


def _normals(key: Any, num: int) -> jax.Array:
    k0, k1 = key_words(key)
    return leaf_normal(k0, k1, (num,))


def _uniform(word: jax.Array) -> jax.Array:
    """``[0, 1)`` with 24-bit resolution."""
    return (word >> jnp.uint32(8)).astype(jnp.int32).astype(jnp.float32) * jnp.float32(2.0**-24)


def _random_subset_mask(key: Any, num: int, size: int) -> jax.Array:
    """Bool mask with exactly ``size`` True entries at uniformly random positions."""
    if size >= num:
        return jnp.ones((num,), bool)
    a, b = _bits(key, num)
    # Stable argsort of 32 random bits: the first `size` positions form a uniform subset
    # (ties, probability ~num^2 / 2^33, are broken by position, which is harmless).
    order = jnp.argsort(a ^ b, stable=True)
    return jnp.zeros((num,), bool).at[order[:size]].set(True)


def _check_num_examples(num_examples: Any) -> int:
    return check_int("num_examples", num_examples, low=1)


def _scalar(value: Any) -> jax.Array:
    return jnp.asarray(value, jnp.float32)


def _float_or_nan(value: Any) -> float:
    return float(value) if is_checkable(value) else math.nan


# ----------------------------------------------------------------------------- samplers


@dataclasses.dataclass(frozen=True)
class SGDSampling:
    r"""SGD as loss weights: a uniform subset of ``batch_size`` of the ``k`` examples.

    .. math:: w_i = \frac{k}{b}\,\mathbb 1[i \in S],\qquad S \subset \{1..k\},\ |S| = b
              \text{ uniform (without replacement)}.

    :math:`\mathrm{Cov}(w) = \frac{k/b - 1}{k-1}\,(kI - \mathbf 1\mathbf 1^\top)`;
    :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{k-b}{b(k-1)}\,\Sigma_b` (SGD without
    replacement from the batch); :math:`B_{\mathrm{eff}} = b`, :math:`c_\mu = 0`. With the
    whole training set as the batch (``k = n``) this is exactly minibatch SGD.
    """

    batch_size: int

    def num_examples(self, batch_size: int) -> int:
        batch_size = check_int("batch_size", batch_size, low=1)
        if self.batch_size > batch_size:
            raise ValueError(
                f"sgd_sampling batch_size must be <= the number of examples sampled from "
                f"({batch_size}), got {self.batch_size}"
            )
        return batch_size

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = self.num_examples(_check_num_examples(num_examples))
        mask = _random_subset_mask(key, num, self.batch_size)
        return jnp.where(mask, jnp.float32(num / self.batch_size), jnp.float32(0.0))

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        k, b = num_examples, self.batch_size
        if k == 1:
            return np.zeros((1, 1))
        return (k / b - 1) / (k - 1) * (k * np.eye(k) - np.ones((k, k)))

    def effective_batch_size(self, batch_size: int) -> float:
        return float(self.batch_size)


@dataclasses.dataclass(frozen=True)
class BernoulliSampling:
    r"""Each example kept independently with probability ``p`` and weighted ``1/p``.

    .. math:: w_i = \xi_i / p,\qquad \xi_i \sim \mathrm{Bernoulli}(p)\ \text{i.i.d.}

    :math:`\mathrm{Cov}(w) = \frac{1-p}{p} I`;
    :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{1-p}{pk} M_b`;
    :math:`B_{\mathrm{eff}} = pk` (the expected number of kept examples),
    :math:`c_\mu = \frac{1-p}{pk}`. Wu et al.'s "MSGD-Bernoulli".
    """

    p: Any

    def num_examples(self, batch_size: int) -> int:
        return check_int("batch_size", batch_size, low=1)

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = _check_num_examples(num_examples)
        a, _ = _bits(key, num)
        p = _scalar(self.p)
        return jnp.where(_uniform(a) < p, 1.0 / p, jnp.float32(0.0))

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        p = float(self.p)
        return (1 - p) / p * np.eye(num_examples)

    def effective_batch_size(self, batch_size: int) -> float:
        return _float_or_nan(self.p) * batch_size


@dataclasses.dataclass(frozen=True)
class GaussianFisher:
    r"""Multiplicative Gaussian noise with the (uncentered) Fisher covariance.

    .. math:: w = \mathbf 1 + s\,\varepsilon,\qquad \varepsilon \sim N(0, I_k).

    :math:`\mathrm{Cov}(w) = s^2 I`; :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{s^2}{k}
    M_b`; :math:`B_{\mathrm{eff}} = k / (1 + s^2)`, :math:`c_\mu = s^2/k`. To imitate SGD
    at batch :math:`b` from :math:`k` examples, :math:`s^2 = k/b - 1` (Wu et al.'s
    "MSGD-Fisher").
    """

    scale: Any

    def num_examples(self, batch_size: int) -> int:
        return check_int("batch_size", batch_size, low=1)

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = _check_num_examples(num_examples)
        return 1.0 + _scalar(self.scale) * _normals(key, num)

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        return float(self.scale) ** 2 * np.eye(num_examples)

    def effective_batch_size(self, batch_size: int) -> float:
        return batch_size / (1 + _float_or_nan(self.scale) ** 2)


@dataclasses.dataclass(frozen=True)
class GaussianGradientCovariance:
    r"""Multiplicative Gaussian noise centered so that it has the gradient covariance.

    .. math:: w = \mathbf 1 + s\,(\varepsilon - \bar\varepsilon\,\mathbf 1),
              \qquad \varepsilon \sim N(0, I_k),\ \bar\varepsilon = \tfrac1k\textstyle\sum_i
              \varepsilon_i.

    :math:`\mathrm{Cov}(w) = s^2 (I - \frac1k \mathbf 1\mathbf 1^\top)`;
    :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{s^2}{k}\Sigma_b` exactly;
    :math:`B_{\mathrm{eff}} = k / (1 + s^2 (1 - 1/k))`, :math:`c_\mu = 0`
    (Wu et al.'s "MSGD-Cov").
    """

    scale: Any

    def num_examples(self, batch_size: int) -> int:
        return check_int("batch_size", batch_size, low=1)

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = _check_num_examples(num_examples)
        eps = _normals(key, num)
        return 1.0 + _scalar(self.scale) * (eps - jnp.mean(eps))

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        k = num_examples
        return float(self.scale) ** 2 * (np.eye(k) - np.ones((k, k)) / k)

    def effective_batch_size(self, batch_size: int) -> float:
        k = batch_size
        return k / (1 + _float_or_nan(self.scale) ** 2 * (1 - 1 / k))


@dataclasses.dataclass(frozen=True)
class SparseGaussian:
    r"""Gaussian multipliers on a random subset of ``num_noisy`` examples, 1 elsewhere.

    .. math:: w_i = 1 + s\,\varepsilon_i\,\mathbb 1[i \in S],\qquad |S| = m \text{ uniform},
              \ \varepsilon \sim N(0, I).

    :math:`\mathrm{Cov}(w) = s^2 \frac{m}{k} I`;
    :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{s^2 m}{k^2} M_b`;
    :math:`B_{\mathrm{eff}} = k / (1 + s^2 m / k)`, :math:`c_\mu = s^2 m / k^2`
    (Wu et al.'s "MSGD-[Fisher-B]": noise on ``noisesize`` random examples).
    """

    scale: Any
    num_noisy: int

    def num_examples(self, batch_size: int) -> int:
        batch_size = check_int("batch_size", batch_size, low=1)
        if self.num_noisy > batch_size:
            raise ValueError(
                f"sparse_gaussian num_noisy must be <= the batch size ({batch_size}), "
                f"got {self.num_noisy}"
            )
        return batch_size

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = self.num_examples(_check_num_examples(num_examples))
        subset_key, noise_key = _split_words(key)
        mask = _random_subset_mask(subset_key, num, self.num_noisy)
        eps = _normals(noise_key, num)
        return 1.0 + _scalar(self.scale) * jnp.where(mask, eps, jnp.float32(0.0))

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        return float(self.scale) ** 2 * self.num_noisy / num_examples * np.eye(num_examples)

    def effective_batch_size(self, batch_size: int) -> float:
        k = batch_size
        return k / (1 + _float_or_nan(self.scale) ** 2 * self.num_noisy / k)


@dataclasses.dataclass(frozen=True)
class GhostBatchGaussian:
    r"""Gaussian multipliers for a large batch split into ghost batches of ``ghost_size``.

    .. math:: w_i = 1 + s\,(\varepsilon_i - \bar\varepsilon_{g(i)}),
              \qquad \varepsilon \sim N(0, I_k),

    where :math:`\bar\varepsilon_{g}` is the mean over ghost batch :math:`g` (consecutive
    blocks of ``ghost_size`` examples); with ``centered=False`` there is no centering and
    this equals :class:`GaussianFisher`. Each ghost batch's weights then sum to its size,
    so a model with ghost batch normalization sees every ghost batch at unit total weight.
    :math:`\mathrm{Cov}(w) = s^2\,\mathrm{blockdiag}(I_h - \frac1h \mathbf 1\mathbf
    1^\top)`; :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{s^2 h}{k^2}\sum_g \Sigma_g`
    (:math:`\Sigma_g`: covariance within ghost batch :math:`g`);
    :math:`B_{\mathrm{eff}} = k / (1 + s^2 (1 - 1/h))`, :math:`c_\mu = 0`. Wu et al.'s
    large-batch variant (batch 2000, ghost batches of 500, :math:`s^2 = k/b - 1` to imitate
    SGD at batch :math:`b`).
    """

    scale: Any
    ghost_size: int
    centered: bool = True

    def num_examples(self, batch_size: int) -> int:
        batch_size = check_int("batch_size", batch_size, low=1)
        if batch_size % self.ghost_size:
            raise ValueError(
                f"ghost_batch_gaussian ghost_size must divide the batch size ({batch_size}), "
                f"got {self.ghost_size}"
            )
        return batch_size

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = self.num_examples(_check_num_examples(num_examples))
        eps = _normals(key, num)
        if self.centered:
            ghosts = eps.reshape(num // self.ghost_size, self.ghost_size)
            eps = (ghosts - jnp.mean(ghosts, axis=1, keepdims=True)).reshape(num)
        return 1.0 + _scalar(self.scale) * eps

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        h = self.ghost_size
        block = np.eye(h) - (np.ones((h, h)) / h if self.centered else 0.0)
        return float(self.scale) ** 2 * np.kron(np.eye(num_examples // h), block)

    def effective_batch_size(self, batch_size: int) -> float:
        shrink = (1 - 1 / self.ghost_size) if self.centered else 1.0
        return batch_size / (1 + _float_or_nan(self.scale) ** 2 * shrink)


@dataclasses.dataclass(frozen=True)
class NoiseEnhancement:
    r"""Mori & Ueda's noise enhancement: two minibatches, :math:`(1+\alpha) g_1 - \alpha g_2`.

    The step consumes ``2B`` examples; a uniformly random half :math:`S` (the first
    minibatch) gets weight :math:`2(1+\alpha)`, the other half :math:`-2\alpha`:

    .. math:: \frac{1}{2B}\sum_i w_i \nabla\ell_i
              = (1+\alpha)\,\frac1B\sum_{i\in S}\nabla\ell_i
                - \alpha\,\frac1B\sum_{i\notin S}\nabla\ell_i .

    :math:`\mathbb E[w_i] = 1`, :math:`\mathrm{Var}(w_i) = (1+2\alpha)^2`,
    :math:`\mathrm{Cov}(w) = \frac{(1+2\alpha)^2}{2B-1}(2B\,I - \mathbf 1\mathbf 1^\top)`;
    :math:`\mathrm{Cov}(g\mid\text{batch}) = \frac{(1+2\alpha)^2}{2B-1}\Sigma_b`; over i.i.d.
    examples :math:`\mathrm{Cov}(g) = ((1+\alpha)^2 + \alpha^2)\,\Sigma / B`, i.e.
    :math:`B_{\mathrm{eff}} = B / (1 + 2\alpha(1+\alpha))`, :math:`c_\mu = 0`. One backward
    pass over the 2B examples; compare its cost with a plain step on 2B examples.
    """

    alpha: Any

    def num_examples(self, batch_size: int) -> int:
        return 2 * check_int("batch_size", batch_size, low=1)

    def __call__(self, key: Any, num_examples: int) -> jax.Array:
        num = _check_num_examples(num_examples)
        if num % 2:
            raise ValueError(f"noise_enhancement needs an even num_examples, got {num}")
        alpha = _scalar(self.alpha)
        first = _random_subset_mask(key, num, num // 2)
        return jnp.where(first, 2.0 * (1.0 + alpha), -2.0 * alpha)

    def weight_covariance(self, num_examples: int) -> np.ndarray:
        k = num_examples
        variance = (1 + 2 * float(self.alpha)) ** 2
        return variance / (k - 1) * (k * np.eye(k) - np.ones((k, k)))

    def effective_batch_size(self, batch_size: int) -> float:
        return noise_enhancement_effective_batch_size(batch_size, self.alpha)


def _split_words(key: Any) -> tuple[jax.Array, jax.Array]:
    k0, k1 = key_words(key)
    a0, a1 = threefry2x32(k0, k1, 0, 0)
    b0, b1 = threefry2x32(k0, k1, 0, 1)
    return jnp.stack([a0, a1]), jnp.stack([b0, b1])


# ----------------------------------------------------------------------------- factories


def sgd_sampling(batch_size: int, num_data: int | None = None) -> SGDSampling:
    """:class:`SGDSampling`: minibatch SGD at ``batch_size`` as per-example weights.

    ``num_data`` (optional) is the number of examples it will sample from; given, a larger
    ``batch_size`` raises ``ValueError`` here rather than at ``num_examples``.
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    if num_data is not None:
        num_data = check_int("num_data", num_data, low=1)
        if batch_size > num_data:
            raise ValueError(f"batch_size must be <= num_data ({num_data}), got {batch_size}")
    return SGDSampling(batch_size)


def bernoulli_sampling(p: Any) -> BernoulliSampling:
    """:class:`BernoulliSampling` with keep probability ``p`` in ``(0, 1]``."""
    check_probability("p", p)
    return BernoulliSampling(p)


def gaussian_fisher(scale: Any) -> GaussianFisher:
    """:class:`GaussianFisher`: ``w = 1 + scale * N(0, I)``, ``scale >= 0``."""
    check_nonnegative("scale", scale)
    return GaussianFisher(scale)


def gaussian_gradient_covariance(scale: Any) -> GaussianGradientCovariance:
    """:class:`GaussianGradientCovariance`: centered Gaussian weights, ``scale >= 0``."""
    check_nonnegative("scale", scale)
    return GaussianGradientCovariance(scale)


def sparse_gaussian(scale: Any, num_noisy: int) -> SparseGaussian:
    """:class:`SparseGaussian`: Gaussian weights on ``num_noisy`` random examples."""
    check_nonnegative("scale", scale)
    num_noisy = check_int("num_noisy", num_noisy, low=1)
    return SparseGaussian(scale, num_noisy)


def ghost_batch_gaussian(
    scale: Any, ghost_size: int, *, centered: bool = True
) -> GhostBatchGaussian:
    """:class:`GhostBatchGaussian`: Gaussian weights centered per ghost batch."""
    check_nonnegative("scale", scale)
    ghost_size = check_int("ghost_size", ghost_size, low=1)
    return GhostBatchGaussian(scale, ghost_size, bool(centered))


def noise_enhancement(alpha: Any) -> NoiseEnhancement:
    """:class:`NoiseEnhancement` with ``alpha >= 0`` (``alpha = 0`` is plain SGD on 2B)."""
    check_nonnegative("alpha", alpha)
    return NoiseEnhancement(alpha)


# ----------------------------------------------------------------------------- helpers


def noise_enhancement_effective_batch_size(batch_size: float, alpha: Any) -> float:
    r""":math:`B_{\mathrm{eff}} = B / (1 + 2\alpha(1+\alpha))` (Mori & Ueda)."""
    alpha = _float_or_nan(alpha)
    return batch_size / (1 + 2 * alpha * (1 + alpha))


_METHODS = (
    "bernoulli_sampling",
    "gaussian_fisher",
    "gaussian_gradient_covariance",
    "ghost_batch_gaussian",
    "noise_enhancement",
    "sparse_gaussian",
)


def noise_scale_for_effective_batch_size(
    method: str,
    effective_batch_size: float,
    batch_size: int,
    *,
    num_noisy: int | None = None,
    ghost_size: int | None = None,
    centered: bool = True,
) -> float:
    r"""The noise parameter that gives a sampler the target effective batch size.

    Inverts :math:`B_{\mathrm{eff}}` (module docstring) for ``batch_size`` examples per step
    (for noise enhancement: ``B``, the size of each of its two minibatches):

    ================================  ========================================================
    ``bernoulli_sampling``            :math:`p = B_{\mathrm{eff}} / k`
    ``gaussian_fisher``               :math:`s = \sqrt{k / B_{\mathrm{eff}} - 1}`
    ``gaussian_gradient_covariance``  :math:`s = \sqrt{(k / B_{\mathrm{eff}} - 1) / (1 - 1/k)}`
    ``ghost_batch_gaussian``          :math:`s = \sqrt{(k / B_{\mathrm{eff}} - 1) / (1 - 1/h)}`
    ``sparse_gaussian``               :math:`s = \sqrt{(k / B_{\mathrm{eff}} - 1)\, k / m}`
    ``noise_enhancement``             :math:`\alpha = (\sqrt{2B / B_{\mathrm{eff}} - 1} - 1)/2`
    ================================  ========================================================

    Raises ``ValueError`` for an unknown method or a target the method cannot reach
    (``B_eff`` must be in ``(0, k]``; Bernoulli needs ``B_eff <= k``).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    check_positive("effective_batch_size", effective_batch_size)
    k = check_int("batch_size", batch_size, low=1)
    target = float(effective_batch_size)
    if target > k:
        raise ValueError(f"effective_batch_size must be <= batch_size ({k}), got {target:g}")
    ratio = k / target - 1.0
    if method == "bernoulli_sampling":
        return target / k
    if method == "gaussian_fisher":
        return math.sqrt(ratio)
    if method == "gaussian_gradient_covariance":
        return math.sqrt(ratio / (1 - 1 / k)) if k > 1 else 0.0
    if method == "ghost_batch_gaussian":
        if ghost_size is None:
            raise ValueError("ghost_batch_gaussian needs ghost_size")
        h = check_int("ghost_size", ghost_size, low=1)
        shrink = (1 - 1 / h) if centered else 1.0
        if shrink == 0:
            raise ValueError("ghost_size must be >= 2 for a centered ghost batch, got 1")
        return math.sqrt(ratio / shrink)
    if method == "sparse_gaussian":
        if num_noisy is None:
            raise ValueError("sparse_gaussian needs num_noisy")
        m = check_int("num_noisy", num_noisy, low=1, high=k)
        return math.sqrt(ratio * k / m)
    # noise_enhancement
    return (math.sqrt(2.0 * k / target - 1.0) - 1.0) / 2.0
