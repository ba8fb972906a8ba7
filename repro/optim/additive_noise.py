r"""Additive annealed Gaussian gradient noise (Neelakantan et al., 2015).

Neelakantan et al. add :math:`N(0, \sigma_t^2)` to every gradient coordinate with

.. math::

   \sigma_t^2 = \frac{\eta}{(1 + t)^{\gamma}},\qquad t = 0, 1, 2, \dots

**Step convention (fixed here, tested).** Updates are numbered :math:`t = 1, 2, \dots` and
:math:`\sigma_t^2 = \eta / t^{\gamma}`: the first update gets variance :math:`\eta` exactly.
This is optax's convention and the paper's :math:`(1 + t)` with :math:`t` counted from 0.
(The tutorial in the project's sources increments its step before drawing, which gives
:math:`\eta / 2^{\gamma}` at the first update; that is not what the paper or optax do.)
Schedules for ``eta``/``gamma`` are called, like every optax schedule, with the number of
updates already made (0 at the first update).

**Semantics shared with optax 0.2.8** (tested against it): ``eta`` is a *variance*; the noise
is added to the gradient *before* the learning rate (``noisy_sgd`` returns
:math:`-\alpha_t (g_t + \sigma_t \xi_t)`); the state carries the key and a saturating step
counter; ``key``/``seed`` behave the same (``seed`` is deprecated). With
``generator="optax"`` the noise is optax's, bit for bit, for float32 leaves.

**Differences from optax** (each fixes a defect of optax 0.2.8):

* the update keeps the gradient's dtype whatever the hyperparameters' types (optax promotes
  bf16 updates to float32 when ``eta`` is a float32 array); the noise is drawn in float32
  and added in float32 before one rounding (optax draws bf16 normals from 8-bit uniforms);
* a legacy ``jax.random.PRNGKey`` (``uint32[2]``) is accepted (optax: ``TypeError``);
* each leaf's noise comes from a key derived from the leaf's *path*, so adding or removing
  parameters does not change any other leaf's noise (optax: key by leaf position);
* ``eta`` and ``gamma`` may be schedules, or traced values (a vmapped hyperparameter grid);
* ``anneal=False`` gives the paper's fixed-variance ablation: :math:`\sigma_t^2 = \eta_t`;
* a fast generator (:mod:`repro.optim.normals`): drawing the noise costs 3-7x less than in
  optax on CPU, and a noisy SGD step of the paper's MNIST network about 1.3-1.4x a plain
  step instead of optax's 3-5x (``scripts/benchmark_optim.py``);
* negative ``eta``/``gamma``/``learning_rate`` raise ``ValueError`` at construction.

**Composition.** :func:`add_noise` is an ordinary ``GradientTransformation``: put it after
gradient clipping (the paper adds noise to the clipped gradient) and before any optimizer,
e.g. ``optax.chain(optax.clip_by_global_norm(10.), add_noise(0.01, 0.55, key),
optax.adam(1e-3))`` -- Adam with annealed noise, as Neelakantan et al. used for the Neural
Programmer. Inside the optimizer the noise is then rescaled like any gradient.

**Data parallelism.** Add the noise *after* the cross-device gradient mean
(``jax.lax.pmean`` / the all-reduce that GSPMD inserts for a replicated update), with the
*same* key on every device (a replicated optimizer state, as ``init`` produces): every
device then adds the same noise to the same mean gradient and the parameter replicas stay
identical. Adding it before the mean with per-device keys would shrink its variance by the
number of devices; adding it after the mean with per-device keys would make the replicas
diverge. Under ``jit`` with sharded arrays (one program, global arrays) this placement is
automatic: the noise is a function of the replicated key and the element index, so each
shard computes its own slice of the same global noise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from repro.optim.keys import as_key, split_key
from repro.optim.noise_tree import GENERATORS, LAYOUTS, tree_normal_like
from repro.optim.transforms import scale_by_learning_rate
from repro.validation import check_nonnegative

__all__ = ["AddNoiseState", "add_noise", "noise_variance", "noisy_sgd"]


class AddNoiseState(NamedTuple):
    """State of :func:`add_noise`: updates made so far (saturating) and the next key."""

    count: jax.Array  # int32, shape ()
    rng_key: jax.Array  # typed Threefry key, shape ()


def _value_at(hyperparameter: Any, count: jax.Array) -> Any:
    return hyperparameter(count) if callable(hyperparameter) else hyperparameter


def noise_variance(
    count: jax.Array | int, eta: ScalarOrSchedule, gamma: ScalarOrSchedule, anneal: bool = True
) -> jax.Array:
    r"""Variance of the noise added by the update made after ``count`` earlier updates.

    :math:`\sigma^2 = \eta(c) / (c + 1)^{\gamma(c)}` with ``anneal`` (so the first update,
    ``count = 0``, gets :math:`\eta(0)`), else :math:`\eta(c)`.
    """
    count = jnp.asarray(count, jnp.int32)
    eta_now = _value_at(eta, count)
    if not anneal:
        return jnp.asarray(eta_now)
    # In floating point before the power: optax's int32 ``step ** gamma`` overflows for an
    # integer gamma >= 2 after ~46k steps (negative variance, NaN noise). For a float gamma
    # this is the same conversion jax applies implicitly (bit-identical to optax).
    step = optax.safe_increment(count).astype(jnp.result_type(float))
    return jnp.asarray(eta_now / step ** _value_at(gamma, count))


def _add_scaled(grad: Any, std: jax.Array, noise: jax.Array) -> Any:
    grad = jnp.asarray(grad)
    if jnp.issubdtype(grad.dtype, jnp.complexfloating):
        raise TypeError(f"add_noise supports real gradients, got dtype {grad.dtype}")
    if not jnp.issubdtype(grad.dtype, jnp.floating):
        return grad  # integer/bool leaves carry no gradient
    compute = jnp.promote_types(grad.dtype, jnp.float32)
    noisy = grad.astype(compute) + std.astype(compute) * noise.astype(compute)
    return noisy.astype(grad.dtype)


def add_noise(
    eta: ScalarOrSchedule,
    gamma: ScalarOrSchedule,
    key: Any = None,
    *,
    seed: int | None = None,
    anneal: bool = True,
    generator: str = "threefry_boxmuller",
    layout: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    r"""Add annealed Gaussian noise to the updates (Neelakantan et al., 2015).

    .. math::

       g_t \leftarrow g_t + \sigma_t\,\xi_t,\qquad
       \sigma_t^2 = \frac{\eta_t}{t^{\gamma_t}}\ (\text{or } \eta_t \text{ if not anneal}),
       \qquad \xi_t \sim N(0, I),

    with :math:`t = 1, 2, \dots` the number of this update (the first update has variance
    :math:`\eta`), :math:`\eta_t = \eta(t - 1)` and :math:`\gamma_t = \gamma(t - 1)` when
    they are schedules. :math:`\xi_t` is independent across steps, leaves and elements; a
    leaf's :math:`\xi_t` depends only on the key, :math:`t` and the leaf's path and shape.

    Place it after gradient clipping and before the optimizer (any optax optimizer, e.g.
    Adam), and after any cross-device gradient mean (``lax.pmean``), with the same key on
    every device (a replicated state): all replicas then add the same noise to the same
    mean gradient and stay identical. See the module docstring for the step convention
    and the differences from optax.

    Args:
      eta: noise variance at the first update (``>= 0``); float, array (may be traced) or
        schedule ``count -> eta``.
      gamma: annealing exponent (``>= 0``; the paper uses 0.55); float, array or schedule.
      key: an int seed, a typed key (``jax.random.key``) or a legacy ``jax.random.PRNGKey``;
        may be traced (a different key per vmapped replica). ``None`` warns and uses 0.
      seed: deprecated alias of ``key`` (as in optax).
      anneal: ``False`` keeps the variance fixed at :math:`\eta_t` (the paper's ablation).
      generator: ``"threefry_boxmuller"`` (default, fast), ``"jax"`` (``jax.random.normal``
        with the same per-path keys) or ``"optax"`` (optax's exact stream, positional keys).
      layout: ``"auto"`` (default: ``"chunked"`` on CPU, ``"per_leaf"`` on GPU/TPU),
        ``"chunked"`` or ``"per_leaf"``: how ``threefry_boxmuller`` is computed (same
        numbers; see :data:`repro.optim.noise_tree.LAYOUTS`).

    Returns:
      An ``optax.GradientTransformationExtraArgs``; ``params`` and extra arguments are
      ignored. Each output leaf has its input leaf's dtype; integer leaves pass through.
    """
    check_nonnegative("eta", eta)
    check_nonnegative("gamma", gamma)
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {list(GENERATORS)}, got {generator!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if not isinstance(anneal, bool):
        raise TypeError(f"anneal must be a bool, got {anneal!r}")
    base_key = as_key(key, seed)

    def init_fn(params: Any) -> AddNoiseState:
        del params
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=base_key)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        std = jnp.sqrt(noise_variance(state.count, eta, gamma, anneal))
        if generator == "optax":
            next_key, step_key = jax.random.split(state.rng_key)
        else:
            next_key, step_key = split_key(state.rng_key)
        float_updates = jax.tree.map(
            lambda g: g if _is_real_float(g) else None, updates, is_leaf=lambda x: x is None
        )
        noise = tree_normal_like(step_key, float_updates, generator=generator, layout=layout)
        noisy = jax.tree.map(
            lambda g, z: g if z is None else _add_scaled(g, std, z),
            updates,
            noise,
            is_leaf=lambda x: x is None,
        )
        return noisy, AddNoiseState(optax.safe_increment(state.count), next_key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_real_float(leaf: Any) -> bool:
    if leaf is None:
        return False
    dtype = jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"add_noise supports real gradients, got dtype {dtype}")
    return bool(jnp.issubdtype(dtype, jnp.floating))


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: ScalarOrSchedule = 0.01,
    gamma: ScalarOrSchedule = 0.55,
    key: Any = None,
    *,
    seed: int | None = None,
    anneal: bool = True,
    generator: str = "threefry_boxmuller",
    layout: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    r"""SGD with annealed Gaussian gradient noise (Neelakantan et al., 2015).

    .. math::

       u_t = -\alpha_t\,(g_t + \sigma_t \xi_t),\qquad
       \sigma_t^2 = \eta_t / t^{\gamma_t},\ t = 1, 2, \dots,\qquad \xi_t \sim N(0, I)

    ``chain(add_noise(eta, gamma, key, ...), scale_by_learning_rate(learning_rate))``: the
    noise is added before the learning rate, as in optax >= 0.2.3. ``learning_rate`` may be
    a float, a (traced) array or a schedule; updates keep the gradients' dtype. See
    :func:`add_noise` for the other arguments.
    """
    check_nonnegative("learning_rate", learning_rate)
    return optax.chain(
        add_noise(eta, gamma, key, seed=seed, anneal=anneal, generator=generator, layout=layout),
        scale_by_learning_rate(learning_rate),
    )
